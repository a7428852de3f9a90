// The GPU memory-bandwidth floor for benchmarks: read every byte of a resident
// matrix once (16-byte loads, grid-stride) and fold it into one number.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "fennec/cuda_buffer.h"

namespace fennec {
namespace {

__global__ void xor_fold_kernel(const uint4* __restrict__ data, int64_t count, unsigned int* out) {
  unsigned int acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint4 v = data[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  for (int offset = 16; offset > 0; offset /= 2) acc ^= __shfl_xor_sync(0xffffffffu, acc, offset);
  if ((threadIdx.x & 31) == 0) atomicXor(out, acc);
}

}  // namespace

unsigned int cuda_stream_read(const DeviceBuffer& buffer) {
  FENNEC_CHECK(buffer.bytes % 16 == 0, "the streamed buffer must be a whole number of 16-byte words");
  int sms = 0;
  FENNEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, buffer.device));
  unsigned int* out = nullptr;
  FENNEC_CUDA_CHECK(cudaMalloc(&out, sizeof(unsigned int)));
  FENNEC_CUDA_CHECK(cudaMemset(out, 0, sizeof(unsigned int)));
  xor_fold_kernel<<<sms * 8, 256>>>(static_cast<const uint4*>(buffer.ptr),
                                    static_cast<int64_t>(buffer.bytes / 16), out);
  FENNEC_CUDA_CHECK_LAUNCH();
  unsigned int result = 0;
  const cudaError_t copied = cudaMemcpy(&result, out, sizeof result, cudaMemcpyDeviceToHost);
  cudaFree(out);
  FENNEC_CUDA_CHECK(copied);
  return result;
}

}  // namespace fennec
