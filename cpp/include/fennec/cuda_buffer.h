// Plain handles to GPU memory, so the bindings can keep a matrix resident on the
// GPU between calls (see topk_cuda_device). Only declared when CUDA is compiled in.
#pragma once
#include <cstddef>

namespace fennec {

#ifdef FENNEC_WITH_CUDA
// `device` is the CUDA device that was current when the buffer was made.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  int device = -1;
};

// All of these act on the current device and throw CudaError (a std::runtime_error)
// on failure, except cuda_free, which never throws.
DeviceBuffer cuda_alloc(size_t bytes);                         // uninitialised
DeviceBuffer cuda_alloc_copy(const void* host, size_t bytes);  // copies `bytes` from host
void cuda_free(DeviceBuffer& buffer);                          // then ptr = nullptr, bytes = 0
void cuda_copy_to_host(void* host, const void* dev, size_t bytes);
void cuda_copy_to_device(void* dev, const void* host, size_t bytes);
void cuda_synchronize();
// Reads every byte of `buffer` once on its device (a bandwidth probe for benchmarks).
unsigned int cuda_stream_read(const DeviceBuffer& buffer);
#endif

}  // namespace fennec
