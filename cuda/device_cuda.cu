// What the CUDA side can see, and the plain device-buffer API of cuda_buffer.h.
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "fennec/cuda_buffer.h"
#include "fennec/device.h"

namespace fennec {

int cuda_device_count() {
  int count = 0;
  // No driver (cudaErrorInsufficientDriver) or no GPU (cudaErrorNoDevice) mean
  // "no device", not an error; clear the error so later calls do not see it.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::vector<std::string> cuda_device_names() {
  std::vector<std::string> names;
  const int count = cuda_device_count();
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

int cuda_runtime_version() { return CUDART_VERSION; }

DeviceBuffer cuda_alloc(size_t bytes) {
  DeviceBuffer buffer;
  FENNEC_CUDA_CHECK(cudaGetDevice(&buffer.device));
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMalloc(&buffer.ptr, bytes));
  buffer.bytes = bytes;
  return buffer;
}

DeviceBuffer cuda_alloc_copy(const void* host, size_t bytes) {
  DeviceBuffer buffer = cuda_alloc(bytes);
  if (bytes == 0) return buffer;
  const cudaError_t err = cudaMemcpy(buffer.ptr, host, bytes, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    cuda_free(buffer);
    throw_cuda_error(err, "cudaMemcpy(host to device)", FENNEC_SOURCE_FILE, __LINE__);
  }
  return buffer;
}

void cuda_free(DeviceBuffer& buffer) {
  if (buffer.ptr != nullptr) {
    // Free on the owning device, then put the caller's device back; errors are
    // dropped (this runs in destructors) and a sticky one resurfaces at the next check.
    int current = -1;
    const bool switched = cudaGetDevice(&current) == cudaSuccess && buffer.device >= 0 &&
                          buffer.device != current && cudaSetDevice(buffer.device) == cudaSuccess;
    cudaFree(buffer.ptr);
    if (switched) cudaSetDevice(current);
  }
  buffer.ptr = nullptr;
  buffer.bytes = 0;
}

void cuda_copy_to_host(void* host, const void* dev, size_t bytes) {
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
}

void cuda_copy_to_device(void* dev, const void* host, size_t bytes) {
  if (bytes > 0) FENNEC_CUDA_CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
}

void cuda_synchronize() { FENNEC_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace fennec
