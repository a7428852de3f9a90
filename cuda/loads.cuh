// Loads of float32 / float16 matrix data as float32, for the CUDA kernels.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

namespace fennec {
namespace cuda_detail {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

__device__ __forceinline__ float half_bits_to_float(unsigned int bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
}

// W consecutive elements of a model row. The raw load and the widening to
// float32 are split so a thread can issue the loads of several rows before it
// waits on any. Loads are evict-first (__ldcs): each element is read once a call.
// VEC: one 16-byte load (the caller checked 16-byte alignment); else one element.
template <typename T, bool VEC>
struct RowChunk;

template <typename T>
struct RowChunk<T, true> {
  static constexpr int W = 16 / static_cast<int>(sizeof(T));
  using Raw = uint4;
  static __device__ __forceinline__ Raw zero() { return make_uint4(0u, 0u, 0u, 0u); }
  static __device__ __forceinline__ Raw load(const T* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }
  static __device__ __forceinline__ void widen(const Raw& r, float (&x)[W]) {
    const unsigned int words[4] = {r.x, r.y, r.z, r.w};
    if constexpr (std::is_same_v<T, float>) {
#pragma unroll
      for (int i = 0; i < 4; ++i) x[i] = __uint_as_float(words[i]);
    } else {
      // Little endian: the low half of each word is the earlier element.
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        x[2 * i] = half_bits_to_float(words[i]);
        x[2 * i + 1] = half_bits_to_float(words[i] >> 16);
      }
    }
  }
};

template <typename T>
struct RowChunk<T, false> {
  static constexpr int W = 1;
  using Raw = unsigned int;
  static __device__ __forceinline__ Raw zero() { return 0u; }
  static __device__ __forceinline__ Raw load(const T* p) {
    if constexpr (std::is_same_v<T, float>) {
      return __float_as_uint(__ldcs(p));
    } else {
      return __ldcs(reinterpret_cast<const unsigned short*>(p));
    }
  }
  static __device__ __forceinline__ void widen(const Raw& r, float (&x)[1]) {
    if constexpr (std::is_same_v<T, float>) {
      x[0] = __uint_as_float(r);
    } else {
      x[0] = half_bits_to_float(r);
    }
  }
};

// W consecutive query values (float32, small and reused: read through the cache).
// W % 4 == 0 needs a 16-byte aligned `q`.
template <int W>
__device__ __forceinline__ void load_query(const float* q, float (&x)[W]) {
  if constexpr (W % 4 == 0) {
#pragma unroll
    for (int i = 0; i < W / 4; ++i) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(q) + i);
      x[4 * i] = v.x;
      x[4 * i + 1] = v.y;
      x[4 * i + 2] = v.z;
      x[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < W; ++i) x[i] = __ldg(q + i);
  }
}

}  // namespace cuda_detail
}  // namespace fennec
