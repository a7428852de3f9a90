// Bindings for the fused top-k kernel.
#include <optional>

#include <pybind11/stl.h>

#include "array_checks.h"
#include "dispatch.h"
#include "fennec/score.h"

namespace py = pybind11;
using namespace fennec_bind;

namespace {

// Returns (scores, indices, bad_row); bad_row >= 0 names a kept model row whose
// score was not finite, and the Python layer turns it into a ValueError.
py::tuple topk(const py::array& model_vectors, const py::array& queries, int64_t k, int metric,
               const std::optional<py::array>& skip, int threads, const std::string& device) {
  fennec::TopKArgs args;
  args.storage = float_matrix_storage(model_vectors, "model_vectors");
  args.model_vectors = model_vectors.data();
  args.n = model_vectors.shape(0);
  args.d = model_vectors.shape(1);
  args.queries = checked_data<float>(queries, "queries", 2);
  args.nq = queries.shape(0);
  if (queries.shape(1) != args.d) throw py::value_error("queries and model_vectors differ in dimension");
  if (skip) {
    args.skip = checked_data<uint8_t>(*skip, "mask", 1);
    if (skip->shape(0) != args.n) throw py::value_error("mask must have one entry per model");
  }
  if (metric != 0 && metric != 1) throw py::value_error("metric must be 0 (ip) or 1 (l2)");
  args.metric = static_cast<fennec::Metric>(metric);
  args.k = k;
  args.threads = threads;

  py::array_t<float> scores({args.nq, args.k});
  py::array_t<int64_t> indices({args.nq, args.k});
  args.out_scores = scores.mutable_data();
  args.out_indices = indices.mutable_data();
  fennec::check_topk_args(args);
  fennec::TopKStatus status;
  if (device == "cpu") {
    py::gil_scoped_release release;
    status = fennec::topk_cpu(args);
  } else if (device == "cuda") {
#ifdef FENNEC_WITH_CUDA
    if (args.k > fennec::kCudaMaxK)
      throw py::value_error("the CUDA top-k handles k <= " + std::to_string(fennec::kCudaMaxK));
    py::gil_scoped_release release;
    status = fennec::topk_cuda(args);
#else
    throw py::value_error("fennec was built without CUDA");
#endif
  } else {
    throw py::value_error("device must be 'cpu' or 'cuda'");
  }
  return py::make_tuple(scores, indices, status.bad_row);
}

double stream_read(const py::array& model_vectors, int threads) {
  fennec::TopKArgs args;
  args.storage = float_matrix_storage(model_vectors, "model_vectors");
  args.model_vectors = model_vectors.data();
  args.n = model_vectors.shape(0);
  args.d = model_vectors.shape(1);
  args.threads = threads;
  py::gil_scoped_release release;
  return fennec::cpu_kernels().stream_sum(args);
}

}  // namespace

void bind_score(py::module_& m) {
  m.def("topk", &topk, py::arg("model_vectors"), py::arg("queries"), py::arg("k"),
        py::arg("metric"), py::arg("skip"), py::arg("threads"), py::arg("device"),
        "Fused scoring + top-k; see fennec.kernels.topk for the validated interface.");
  m.def("stream_read", &stream_read, py::arg("model_vectors"), py::arg("threads"),
        "Sums every element once: the memory-bandwidth floor benchmarks compare topk with.");
  m.attr("CUDA_MAX_K") = fennec::kCudaMaxK;
}
