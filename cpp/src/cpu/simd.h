// Width-generic SIMD helpers for the CPU kernels. Each kernel source is compiled
// once per instruction set (see CMakeLists.txt): FENNEC_SIMD_WIDTH floats per
// vector, FENNEC_ISA_NS names the namespace of that build. GCC/Clang vector
// extensions keep one source for every width; only half-precision conversion
// needs ISA-specific intrinsics.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#ifndef FENNEC_SIMD_WIDTH
#define FENNEC_SIMD_WIDTH 4
#endif
#ifndef FENNEC_ISA_NS
#define FENNEC_ISA_NS generic
#endif

namespace fennec {
namespace cpu {
namespace FENNEC_ISA_NS {

constexpr int W = FENNEC_SIMD_WIDTH;
typedef float vf __attribute__((vector_size(W * sizeof(float))));

using half_t = uint16_t;  // IEEE binary16 bits

inline float half_to_float_soft(half_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: renormalise
    int shift = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shift;
    }
    mant &= 0x3ffu;
    bits = sign | ((113u - shift) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float to_float(float x) { return x; }
inline float to_float(half_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return half_to_float_soft(h);
#endif
}

inline vf vzero() { return vf{} ; }

inline vf vset1(float x) {
  vf v;
  for (int i = 0; i < W; ++i) v[i] = x;
  return v;
}

inline vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline vf vload(const half_t* p) {
#if FENNEC_SIMD_WIDTH == 16 && defined(__AVX512F__)
  __m512 r = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  vf v;
  std::memcpy(&v, &r, sizeof v);
  return v;
#elif FENNEC_SIMD_WIDTH == 16 && defined(__F16C__)
  __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  vf v;
  std::memcpy(&v, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof lo, &hi, sizeof hi);
  return v;
#elif FENNEC_SIMD_WIDTH == 8 && defined(__F16C__)
  __m256 r = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  vf v;
  std::memcpy(&v, &r, sizeof v);
  return v;
#else
  vf v;
  for (int i = 0; i < W; ++i) v[i] = to_float(p[i]);
  return v;
#endif
}

// Loads the first n < W elements and zero-fills the rest.
template <typename T>
inline vf vload_partial(const T* p, int n) {
  T tmp[W] = {};
  for (int i = 0; i < n; ++i) tmp[i] = p[i];
  return vload(tmp);
}

// Fused multiply-add where the ISA has it; the same instruction is used for
// every row, so equal rows always get bit-identical scores.
inline vf vfma(vf a, vf b, vf c) {
#if FENNEC_SIMD_WIDTH == 16 && defined(__AVX512F__)
  __m512 x, y, z;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  std::memcpy(&z, &c, sizeof z);
  z = _mm512_fmadd_ps(x, y, z);
  std::memcpy(&c, &z, sizeof z);
  return c;
#elif (FENNEC_SIMD_WIDTH == 8 || FENNEC_SIMD_WIDTH == 16) && defined(__FMA__)
  for (int half = 0; half < W / 8; ++half) {
    __m256 x, y, z;
    std::memcpy(&x, reinterpret_cast<const float*>(&a) + 8 * half, sizeof x);
    std::memcpy(&y, reinterpret_cast<const float*>(&b) + 8 * half, sizeof y);
    std::memcpy(&z, reinterpret_cast<const float*>(&c) + 8 * half, sizeof z);
    z = _mm256_fmadd_ps(x, y, z);
    std::memcpy(reinterpret_cast<float*>(&c) + 8 * half, &z, sizeof z);
  }
  return c;
#else
  return a * b + c;  // built with -ffp-contract=off: never fused behind our back
#endif
}

inline float hsum(vf v) {
  // Pairwise halving: a fixed order, independent of where the row sits.
  float buf[W];
  std::memcpy(buf, &v, sizeof buf);
  for (int width = W / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) buf[i] += buf[i + width];
  return buf[0];
}

}  // namespace FENNEC_ISA_NS
}  // namespace cpu
}  // namespace fennec
