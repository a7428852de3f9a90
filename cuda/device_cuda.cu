// What the CUDA side can see, and the one owner of GPU memory (device_memory.cuh).
#include <string>
#include <utility>
#include <vector>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "fennec/device.h"

namespace fennec {

int device_count_cuda() {
  int count = 0;
  // No driver (cudaErrorInsufficientDriver) or no GPU (cudaErrorNoDevice) mean
  // "no device", not an error; clear the error so later calls do not see it.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::vector<std::string> device_names_cuda() {
  std::vector<std::string> names;
  const int count = device_count_cuda();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      names.push_back("unknown device " + std::to_string(i));
      continue;
    }
    names.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                    std::to_string(prop.minor) + ", " +
                    std::to_string(prop.totalGlobalMem >> 20) + " MiB)");
  }
  return names;
}

DeviceMemory::DeviceMemory(size_t bytes) {
  FENNEC_CUDA_CHECK(cudaGetDevice(&device_));
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  bytes_ = bytes;
}

// Delegating: once DeviceMemory(bytes) has returned, a failed copy runs the destructor.
DeviceMemory::DeviceMemory(const void* host, size_t bytes) : DeviceMemory(bytes) { upload(host, bytes); }

DeviceMemory::DeviceMemory(DeviceMemory&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  if (this != &other) {
    release();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

void DeviceMemory::reserve(size_t bytes) {
  int current = -1;
  FENNEC_CUDA_CHECK(cudaGetDevice(&current));
  if (bytes_ >= bytes && device_ == current) return;
  release();  // before the new allocation, so the peak is not old + new
  *this = DeviceMemory(bytes);
}

void DeviceMemory::release() noexcept {
  if (ptr_ != nullptr) {
    // Free on the owning device, then put the caller's device back.
    int current = -1;
    const bool switched = cudaGetDevice(&current) == cudaSuccess && device_ >= 0 && device_ != current &&
                          cudaSetDevice(device_) == cudaSuccess;
    cudaFree(ptr_);
    if (switched) cudaSetDevice(current);
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

void DeviceMemory::upload(const void* host, size_t bytes) {
  FENNEC_CHECK(bytes <= bytes_, "upload of more bytes than the device memory holds");
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceMemory::download(void* host, size_t bytes) const {
  FENNEC_CHECK(bytes <= bytes_, "download of more bytes than the device memory holds");
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost));
}

DeviceGuard::DeviceGuard(int device) {
  FENNEC_CUDA_CHECK(cudaGetDevice(&previous_));
  if (device >= 0 && device != previous_) {
    FENNEC_CUDA_CHECK(cudaSetDevice(device));
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_) cudaSetDevice(previous_);
}

}  // namespace fennec
