// Bindings for the fused top-k kernel and the GPU-resident model matrix.
#include <memory>
#include <optional>

#include <pybind11/stl.h>

#include "array_checks.h"
#include "fennec/score.h"

namespace py = pybind11;
using namespace fennec_bind;

namespace {

// One top-k call's arrays, checked against an n x d model matrix: the queries
// and mask as host pointers in `args`, the outputs allocated here.
struct TopKCall {
  fennec::TopKArgs args;
  py::array_t<float> scores;
  py::array_t<int64_t> indices;

  TopKCall(fennec::TopKArgs matrix, const py::array& queries, int64_t k, int metric,
           const std::optional<py::array>& skip)
      : args(matrix) {
    args.queries = checked_data<float>(queries, "queries", 2);
    args.nq = queries.shape(0);
    if (queries.shape(1) != args.d) throw py::value_error("queries and model_vectors differ in dimension");
    if (skip) {
      args.skip = checked_data<uint8_t>(*skip, "mask", 1);
      if (skip->shape(0) != args.n) throw py::value_error("mask must have one entry per model");
    }
    if (metric != 0 && metric != 1) throw py::value_error("metric must be 0 (ip) or 1 (l2)");
    if (k < 1 || k > args.n) throw py::value_error("k must be in [1, number of models]");
    args.metric = static_cast<fennec::Metric>(metric);
    args.k = k;
    scores = py::array_t<float>({args.nq, k});
    indices = py::array_t<int64_t>({args.nq, k});
    args.out_scores = scores.mutable_data();
    args.out_indices = indices.mutable_data();
  }

  // (scores, indices, bad_row); bad_row >= 0 names a kept model row whose score
  // was not finite, and the Python layer turns it into a ValueError.
  py::tuple result(const fennec::TopKStatus& status) const {
    return py::make_tuple(scores, indices, status.bad_row);
  }
};

fennec::TopKArgs host_matrix(const py::array& model_vectors, int threads) {
  fennec::TopKArgs args;
  args.storage = float_matrix_storage(model_vectors, "model_vectors");
  args.model_vectors = model_vectors.data();
  args.n = model_vectors.shape(0);
  args.d = model_vectors.shape(1);
  args.threads = threads;
  return args;
}

py::tuple topk(const py::array& model_vectors, const py::array& queries, int64_t k, int metric,
               const std::optional<py::array>& skip, int threads, const std::string& device) {
  const fennec::Device run_on = device_from(device);
  TopKCall call(host_matrix(model_vectors, threads), queries, k, metric, skip);
  fennec::TopKStatus status;
  {
    py::gil_scoped_release release;
    status = fennec::topk(call.args, run_on);
  }
  return call.result(status);
}

double stream_read(const py::array& model_vectors, int threads) {
  const fennec::TopKArgs args = host_matrix(model_vectors, threads);
  py::gil_scoped_release release;
  return fennec::stream_read_cpu(args);
}

std::unique_ptr<fennec::DeviceMatrix> make_device_matrix(const py::array& model_vectors) {
  const fennec::TopKArgs host = host_matrix(model_vectors, 0);
  py::gil_scoped_release release;
  return std::make_unique<fennec::DeviceMatrix>(host.model_vectors, host.storage, host.n, host.d);
}

py::tuple device_matrix_topk(fennec::DeviceMatrix& matrix, const py::array& queries, int64_t k, int metric,
                             const std::optional<py::array>& skip) {
  fennec::TopKArgs shape;
  shape.n = matrix.n();
  shape.d = matrix.d();
  TopKCall call(shape, queries, k, metric, skip);
  fennec::TopKStatus status;
  {
    py::gil_scoped_release release;
    status = matrix.topk(call.args);
  }
  return call.result(status);
}

unsigned int device_matrix_stream_read(fennec::DeviceMatrix& matrix) {
  py::gil_scoped_release release;
  return matrix.stream_read();
}

}  // namespace

void bind_score(py::module_& m) {
  m.def("topk", &topk, py::arg("model_vectors"), py::arg("queries"), py::arg("k"),
        py::arg("metric"), py::arg("skip"), py::arg("threads"), py::arg("device"),
        "Fused scoring + top-k; see fennec.kernels.topk for the validated interface.");
  m.def("stream_read", &stream_read, py::arg("model_vectors"), py::arg("threads"),
        "Sums every element once: the memory-bandwidth floor benchmarks compare topk with.");
  m.attr("CUDA_MAX_K") = fennec::kCudaMaxK;
  // Bound in every build, so the module has the same names with or without CUDA;
  // without it the constructor raises ValueError.
  py::class_<fennec::DeviceMatrix>(m, "DeviceMatrix", "A model matrix resident in GPU memory.")
      .def(py::init(&make_device_matrix), py::arg("model_vectors"))
      .def_property_readonly("n", &fennec::DeviceMatrix::n)
      .def_property_readonly("d", &fennec::DeviceMatrix::d)
      .def_property_readonly("fp16", [](const fennec::DeviceMatrix& matrix) {
        return matrix.storage() == fennec::Storage::F16;
      })
      .def("topk", &device_matrix_topk, py::arg("queries"), py::arg("k"), py::arg("metric"), py::arg("skip"))
      .def("stream_read", &device_matrix_stream_read,
           "Reads the whole matrix once on the GPU: the bandwidth floor benchmarks compare with.");
}
