// Bindings for Weisfeiler-Lehman graph features.
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "array_checks.h"
#include "fennec/wl.h"

namespace py = pybind11;
using namespace fennec_bind;

namespace {

// The Python layer has already normalised the arrays; here they are taken as they
// are (int64 / uint64, C order, never copied) and the core checks the offsets.
py::array_t<float> wl_features(const py::array& graph_offsets, const py::array& node_labels,
                               const py::array& edge_offsets, const py::array& edges_src,
                               const py::array& edges_dst, int iterations, int64_t dim, int direction,
                               int threads) {
  fennec::WLArgs args;
  args.graph_offsets = checked_data<int64_t>(graph_offsets, "graph_offsets", 1);
  args.node_labels = checked_data<uint64_t>(node_labels, "node_labels", 1);
  args.edge_offsets = checked_data<int64_t>(edge_offsets, "edge_offsets", 1);
  args.edges_src = checked_data<int64_t>(edges_src, "edges_src", 1);
  args.edges_dst = checked_data<int64_t>(edges_dst, "edges_dst", 1);
  if (graph_offsets.shape(0) < 1) throw py::value_error("graph_offsets must have n_graphs + 1 >= 1 entries");
  if (edge_offsets.shape(0) != graph_offsets.shape(0))
    throw py::value_error("edge_offsets must have as many entries as graph_offsets (n_graphs + 1), got " +
                          std::to_string(edge_offsets.shape(0)) + " and " + std::to_string(graph_offsets.shape(0)));
  if (edges_src.shape(0) != edges_dst.shape(0))
    throw py::value_error("edges_src and edges_dst must have the same length");
  if (direction < 0 || direction > 2)
    throw py::value_error("direction must be 0 (undirected), 1 (out) or 2 (both), got " + std::to_string(direction));
  if (iterations < 0) throw py::value_error("iterations must be >= 0");
  if (dim < 1) throw py::value_error("dim must be >= 1");
  args.n_graphs = graph_offsets.shape(0) - 1;
  args.n_nodes = node_labels.shape(0);
  args.n_edges = edges_src.shape(0);
  args.direction = static_cast<fennec::WLDirection>(direction);
  args.iterations = iterations;
  args.dim = dim;
  args.threads = threads;
  py::array_t<float> out({args.n_graphs, dim});
  args.out = out.mutable_data();
  {
    py::gil_scoped_release release;
    std::fill(args.out, args.out + args.n_graphs * dim, 0.0f);
    fennec::wl_features_cpu(args);
  }
  return out;
}

py::array_t<uint64_t> wl_hash_labels(const std::vector<std::string>& labels) {
  py::array_t<uint64_t> out(static_cast<py::ssize_t>(labels.size()));
  uint64_t* data = out.mutable_data();
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < labels.size(); ++i) data[i] = fennec::wl_label_hash(labels[i]);
  }
  return out;
}

}  // namespace

void bind_wl(py::module_& m) {
  m.def("wl_features", &wl_features, py::arg("graph_offsets"), py::arg("node_labels"),
        py::arg("edge_offsets"), py::arg("edges_src"), py::arg("edges_dst"), py::arg("iterations"),
        py::arg("dim"), py::arg("direction"), py::arg("threads"),
        "WL subtree-pattern counts per graph; see fennec.kernels.wl_features.");
  m.def("wl_hash_labels", &wl_hash_labels, py::arg("labels"),
        "The fixed 64-bit hash of each label string (UTF-8).");
}
