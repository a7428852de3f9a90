// The GPU side of DeviceMatrix (score.h): the model matrix stays in device memory;
// each call uploads its queries and mask and downloads its results, through
// buffers kept and grown as needed, all on the matrix's device.
#include <memory>
#include <mutex>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "fennec/score.h"

namespace fennec {
namespace {

class ResidentCuda final : public DeviceMatrix::Resident {
 public:
  ResidentCuda(const void* host, Storage storage, int64_t n, int64_t d)
      : matrix_(host, static_cast<size_t>(n * d) * (storage == Storage::F16 ? 2 : 4)) {
    shape_.storage = storage;
    shape_.n = n;
    shape_.d = d;
    shape_.model_vectors = matrix_.get();
  }

  TopKStatus topk(const TopKArgs& host) override {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard on_device(matrix_.device());
    const size_t query_bytes = static_cast<size_t>(host.nq * host.d) * sizeof(float);
    const size_t result_count = static_cast<size_t>(host.nq * host.k);
    TopKArgs a = host;
    a.model_vectors = matrix_.get();
    queries_.reserve(query_bytes);
    queries_.upload(host.queries, query_bytes);
    a.queries = queries_.get<const float>();
    if (host.skip != nullptr) {
      skip_.reserve(static_cast<size_t>(host.n));
      skip_.upload(host.skip, static_cast<size_t>(host.n));
      a.skip = skip_.get<const uint8_t>();
    }
    scores_.reserve(result_count * sizeof(float));
    indices_.reserve(result_count * sizeof(int64_t));
    a.out_scores = scores_.get<float>();
    a.out_indices = indices_.get<int64_t>();
    const TopKStatus status = topk_cuda_device(a);
    scores_.download(host.out_scores, result_count * sizeof(float));
    indices_.download(host.out_indices, result_count * sizeof(int64_t));
    return status;
  }

  unsigned int stream_read() override {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard on_device(matrix_.device());
    return stream_read_cuda(shape_);
  }

 private:
  DeviceMemory matrix_;
  TopKArgs shape_;  // the resident matrix: model_vectors (device), storage, n, d
  DeviceMemory queries_, skip_, scores_, indices_;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<DeviceMatrix::Resident> device_matrix_cuda(const void* host, Storage storage, int64_t n,
                                                           int64_t d) {
  return std::make_unique<ResidentCuda>(host, storage, n, d);
}

}  // namespace fennec
