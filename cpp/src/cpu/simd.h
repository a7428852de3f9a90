// Width-generic SIMD helpers for the CPU kernels. Each kernel source is compiled
// once per instruction set (see CMakeLists.txt): FENNEC_SIMD_WIDTH floats per
// vector, FENNEC_ISA_NS names the namespace of that build. GCC/Clang vector
// extensions keep one source for every width; only half-precision conversion
// needs ISA-specific intrinsics.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX512F__) || defined(__FMA__) || defined(__AVX2__)
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

typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

// True when any lane of a comparison result is set.
inline bool any_lane(vi m) {
#if FENNEC_SIMD_WIDTH == 8 && defined(__AVX2__)
  __m256i x;
  std::memcpy(&x, &m, sizeof x);
  return !_mm256_testz_si256(x, x);
#else
  vi folded = m;
  int32_t any = 0;
  for (int i = 0; i < W; ++i) any |= folded[i];
  return any != 0;
#endif
}

inline vf vzero() { return vf{} ; }

inline vf vset1(float x) {
  vf v;
#if FENNEC_SIMD_WIDTH == 16 && defined(__AVX512F__)
  const __m512 b = _mm512_set1_ps(x);
  std::memcpy(&v, &b, sizeof v);
#elif (FENNEC_SIMD_WIDTH == 8 || FENNEC_SIMD_WIDTH == 16) && defined(__AVX__)
  const __m256 b = _mm256_set1_ps(x);
  for (int half = 0; half < W / 8; ++half)
    std::memcpy(reinterpret_cast<char*>(&v) + half * sizeof b, &b, sizeof b);
#else
  for (int i = 0; i < W; ++i) v[i] = x;
#endif
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

// Float rows: a masked load, which neither touches nor faults on the lanes past
// n, instead of a copy through the stack (a store-forwarding stall per row).
inline vf vload_partial(const float* p, int n) {
#if FENNEC_SIMD_WIDTH == 16 && defined(__AVX512F__)
  const __m512 r = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  vf v;
  std::memcpy(&v, &r, sizeof v);
  return v;
#elif (FENNEC_SIMD_WIDTH == 8 || FENNEC_SIMD_WIDTH == 16) && defined(__AVX2__)
  vf v = vzero();
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int half = 0; half < W / 8 && n - 8 * half > 0; ++half) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * half), lanes);
    const __m256 r = _mm256_maskload_ps(p + 8 * half, mask);
    std::memcpy(reinterpret_cast<char*>(&v) + half * sizeof r, &r, sizeof r);
  }
  return v;
#else
  float tmp[W] = {};
  for (int i = 0; i < n; ++i) tmp[i] = p[i];
  return vload(tmp);
#endif
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

// Horizontal sum in a fixed order, independent of where the row sits, so equal
// rows always get bit-identical scores.
inline float hsum(vf v) {
#if FENNEC_SIMD_WIDTH == 8 && defined(__AVX2__)
  __m256 x;
  std::memcpy(&x, &v, sizeof x);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
#elif FENNEC_SIMD_WIDTH == 16 && defined(__AVX2__)
  __m256 lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  __m256 x = _mm256_add_ps(lo, hi);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
#else
  float buf[W];
  std::memcpy(buf, &v, sizeof buf);
  for (int width = W / 2; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) buf[i] += buf[i + width];
  return buf[0];
#endif
}

#if FENNEC_SIMD_WIDTH == 8 && defined(__AVX2__)
#define FENNEC_HAS_HSUM_ROWS 1
// Horizontal sums of W vectors at once (lane i of the result sums acc[i]).
// Cheaper than W separate hsum calls, but a different order of additions, so
// a kernel must use one or the other for all of its rows.
inline vf hsum_rows(const vf* acc) {
  __m256 a[8];
  std::memcpy(a, acc, sizeof a);
  const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                                   _mm256_permute2f128_ps(h0123, h4567, 0x31));
  vf v;
  std::memcpy(&v, &sum, sizeof v);
  return v;
}
#endif

}  // namespace FENNEC_ISA_NS
}  // namespace cpu
}  // namespace fennec
