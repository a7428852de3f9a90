// The GPU memory-bandwidth floor for benchmarks: read every byte of a resident
// matrix once (16-byte loads, grid-stride) and fold it into one number.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "fennec/score.h"

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

unsigned int stream_read_cuda(const TopKArgs& a) {
  const size_t bytes = static_cast<size_t>(a.n * a.d) * (a.storage == Storage::F16 ? 2 : 4);
  FENNEC_CHECK(bytes % 16 == 0, "the streamed matrix must be a whole number of 16-byte words");
  int device = 0, sms = 0;
  FENNEC_CUDA_CHECK(cudaGetDevice(&device));
  FENNEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Owned, so a failed memset or launch check below cannot leak it.
  DeviceMemory out(sizeof(unsigned int));
  FENNEC_CUDA_CHECK(cudaMemset(out.get(), 0, sizeof(unsigned int)));
  xor_fold_kernel<<<sms * 8, 256>>>(static_cast<const uint4*>(a.model_vectors), static_cast<int64_t>(bytes / 16),
                                    out.get<unsigned int>());
  FENNEC_CUDA_CHECK_LAUNCH();
  unsigned int result = 0;
  out.download(&result, sizeof result);  // waits for the kernel
  return result;
}

}  // namespace fennec
