// Bindings for the fused top-k kernel.
#include <optional>

#include <pybind11/stl.h>

#include "array_checks.h"
#include <mutex>

#include "dispatch.h"
#include "fennec/cuda_buffer.h"
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

#ifdef FENNEC_WITH_CUDA
// A model matrix kept in GPU memory between calls, so a service pays the copy once.
// Small per-call buffers (queries, mask, results) are kept and grown as needed.
class DeviceMatrix {
 public:
  explicit DeviceMatrix(const py::array& model_vectors) {
    storage_ = float_matrix_storage(model_vectors, "model_vectors");
    n_ = model_vectors.shape(0);
    d_ = model_vectors.shape(1);
    const size_t bytes = static_cast<size_t>(model_vectors.nbytes());
    py::gil_scoped_release release;
    matrix_ = fennec::cuda_alloc_copy(model_vectors.data(), bytes);
  }
  ~DeviceMatrix() {
    for (fennec::DeviceBuffer* b : {&matrix_, &queries_, &skip_, &scores_, &indices_}) fennec::cuda_free(*b);
  }
  DeviceMatrix(const DeviceMatrix&) = delete;
  DeviceMatrix& operator=(const DeviceMatrix&) = delete;

  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  bool fp16() const { return storage_ == fennec::Storage::F16; }

  py::tuple topk(const py::array& queries, int64_t k, int metric, const std::optional<py::array>& skip) {
    fennec::TopKArgs args;
    args.storage = storage_;
    args.n = n_;
    args.d = d_;
    args.model_vectors = matrix_.ptr;
    const float* host_queries = checked_data<float>(queries, "queries", 2);
    args.nq = queries.shape(0);
    if (queries.shape(1) != d_) throw py::value_error("queries and model_vectors differ in dimension");
    const uint8_t* host_skip = nullptr;
    if (skip) {
      host_skip = checked_data<uint8_t>(*skip, "mask", 1);
      if (skip->shape(0) != n_) throw py::value_error("mask must have one entry per model");
    }
    if (metric != 0 && metric != 1) throw py::value_error("metric must be 0 (ip) or 1 (l2)");
    args.metric = static_cast<fennec::Metric>(metric);
    args.k = k;
    py::array_t<float> scores({args.nq, k});
    py::array_t<int64_t> indices({args.nq, k});
    fennec::TopKStatus status;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      args.queries = static_cast<const float*>(upload(queries_, host_queries, args.nq * d_ * sizeof(float)));
      if (host_skip != nullptr) args.skip = static_cast<const uint8_t*>(upload(skip_, host_skip, n_));
      args.out_scores = static_cast<float*>(reserve(scores_, args.nq * k * sizeof(float)));
      args.out_indices = static_cast<int64_t*>(reserve(indices_, args.nq * k * sizeof(int64_t)));
      status = fennec::topk_cuda_device(args);
      fennec::cuda_copy_to_host(scores.mutable_data(), args.out_scores, args.nq * k * sizeof(float));
      fennec::cuda_copy_to_host(indices.mutable_data(), args.out_indices, args.nq * k * sizeof(int64_t));
    }
    return py::make_tuple(scores, indices, status.bad_row);
  }

  unsigned int stream_read() {
    py::gil_scoped_release release;
    return fennec::cuda_stream_read(matrix_);
  }

 private:
  static void* reserve(fennec::DeviceBuffer& buffer, size_t bytes) {
    if (buffer.bytes < bytes) {
      fennec::cuda_free(buffer);
      buffer = fennec::cuda_alloc(bytes);
    }
    return buffer.ptr;
  }
  static void* upload(fennec::DeviceBuffer& buffer, const void* host, size_t bytes) {
    void* dev = reserve(buffer, bytes);
    fennec::cuda_copy_to_device(dev, host, bytes);
    return dev;
  }

  fennec::Storage storage_;
  int64_t n_ = 0, d_ = 0;
  fennec::DeviceBuffer matrix_, queries_, skip_, scores_, indices_;
  std::mutex mutex_;
};
#endif

}  // namespace

void bind_score(py::module_& m) {
  m.def("topk", &topk, py::arg("model_vectors"), py::arg("queries"), py::arg("k"),
        py::arg("metric"), py::arg("skip"), py::arg("threads"), py::arg("device"),
        "Fused scoring + top-k; see fennec.kernels.topk for the validated interface.");
  m.def("stream_read", &stream_read, py::arg("model_vectors"), py::arg("threads"),
        "Sums every element once: the memory-bandwidth floor benchmarks compare topk with.");
  m.attr("CUDA_MAX_K") = fennec::kCudaMaxK;
#ifdef FENNEC_WITH_CUDA
  py::class_<DeviceMatrix>(m, "DeviceMatrix", "A model matrix resident in GPU memory.")
      .def(py::init<const py::array&>(), py::arg("model_vectors"))
      .def_property_readonly("n", &DeviceMatrix::n)
      .def_property_readonly("d", &DeviceMatrix::d)
      .def_property_readonly("fp16", &DeviceMatrix::fp16)
      .def("topk", &DeviceMatrix::topk, py::arg("queries"), py::arg("k"), py::arg("metric"), py::arg("skip"))
      .def("stream_read", &DeviceMatrix::stream_read,
           "Reads the whole matrix once on the GPU: the bandwidth floor benchmarks compare with.");
#endif
}
