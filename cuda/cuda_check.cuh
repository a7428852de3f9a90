// The one CUDA error check of the core, and an owning device array.
// Runtime failures (no memory, a failed launch, a lost device) are not argument
// errors, so they throw CudaError, a std::runtime_error (RuntimeError in Python),
// rather than CoreError (ValueError).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "fennec/common.h"

namespace fennec {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                  ") in " + expr + " [" + file + ":" + std::to_string(line) + "]");
}

}  // namespace fennec

#define FENNEC_CUDA_CHECK(expr)                                                     \
  do {                                                                              \
    const cudaError_t fennec_cuda_err_ = (expr);                                    \
    if (fennec_cuda_err_ != cudaSuccess)                                            \
      ::fennec::throw_cuda_error(fennec_cuda_err_, #expr, FENNEC_SOURCE_FILE, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations at once.
#define FENNEC_CUDA_CHECK_LAUNCH() FENNEC_CUDA_CHECK(cudaGetLastError())

namespace fennec {

// cudaMalloc'd array of `count` T, freed on scope exit (errors on free are dropped:
// a destructor must not throw, and a sticky error resurfaces at the next check).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t count) : count_(count) {
    if (count > 0) FENNEC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

  void upload(const T* host) {
    if (count_ > 0) FENNEC_CUDA_CHECK(cudaMemcpy(ptr_, host, count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host) const {
    if (count_ > 0) FENNEC_CUDA_CHECK(cudaMemcpy(host, ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace fennec
