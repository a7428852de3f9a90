// Run-time choice of the CPU kernel build (SIMD level). Internal to the core.
#pragma once
#include <string>
#include <vector>

#include "fennec/pool.h"
#include "fennec/score.h"

namespace fennec {

struct CpuKernels {
  const char* name;
  TopKStatus (*topk)(const TopKArgs&);
  int64_t (*pool)(const PoolArgs&);
  double (*stream_sum)(const TopKArgs&);  // memory-bandwidth probe for benchmarks
};

// The kernels in use: the widest build this CPU supports, unless FENNEC_SIMD
// names another (generic, avx2, avx2w16, avx512) or set_simd_level() chose one.
const CpuKernels& cpu_kernels();

// Switches the kernels in use; throws CoreError if this CPU or build lacks `name`.
void set_simd_level(const std::string& name);

// Builds in this module that this CPU can run, narrowest first.
std::vector<std::string> supported_simd_levels();

}  // namespace fennec
