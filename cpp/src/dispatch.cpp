#include "dispatch.h"

#include <atomic>
#include <cstdlib>

namespace fennec {

#define FENNEC_DECLARE_ISA(ns)                         \
  namespace cpu {                                      \
  namespace ns {                                       \
  TopKStatus topk(const TopKArgs&);                    \
  int64_t pool(const PoolArgs&);                       \
  double stream_sum(const TopKArgs&);                  \
  }                                                    \
  }
FENNEC_DECLARE_ISA(generic)
#ifdef FENNEC_X86
FENNEC_DECLARE_ISA(avx2)
FENNEC_DECLARE_ISA(avx2w16)
FENNEC_DECLARE_ISA(avx512)
#endif
#undef FENNEC_DECLARE_ISA

namespace {

struct Entry {
  CpuKernels kernels;
  bool (*supported)();
};

bool always() { return true; }
#ifdef FENNEC_X86
bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

// Narrowest first; the default is the last supported entry that is not test-only.
const Entry kEntries[] = {
    {{"generic", cpu::generic::topk, cpu::generic::pool, cpu::generic::stream_sum}, always},
#ifdef FENNEC_X86
    {{"avx2w16", cpu::avx2w16::topk, cpu::avx2w16::pool, cpu::avx2w16::stream_sum}, has_avx2},
    {{"avx2", cpu::avx2::topk, cpu::avx2::pool, cpu::avx2::stream_sum}, has_avx2},
    {{"avx512", cpu::avx512::topk, cpu::avx512::pool, cpu::avx512::stream_sum}, has_avx512},
#endif
};

const CpuKernels* find(const std::string& name) {
  for (const Entry& e : kEntries)
    if (name == e.kernels.name) return e.supported() ? &e.kernels : nullptr;
  return nullptr;
}

const CpuKernels* best() {
  const CpuKernels* pick = &kEntries[0].kernels;
  for (const Entry& e : kEntries)
    if (e.supported() && std::string(e.kernels.name) != "avx2w16") pick = &e.kernels;
  return pick;
}

const CpuKernels* initial() {
  const char* env = std::getenv("FENNEC_SIMD");
  if (env != nullptr && *env != '\0') {
    const CpuKernels* k = find(env);
    FENNEC_CHECK(k != nullptr, std::string("FENNEC_SIMD=") + env +
                                   " is not a SIMD level this CPU and build support");
    return k;
  }
  return best();
}

std::atomic<const CpuKernels*> g_current{nullptr};

}  // namespace

const CpuKernels& cpu_kernels() {
  const CpuKernels* k = g_current.load(std::memory_order_acquire);
  if (k == nullptr) {
    k = initial();
    g_current.store(k, std::memory_order_release);
  }
  return *k;
}

void set_simd_level(const std::string& name) {
  const CpuKernels* k = name == "auto" ? best() : find(name);
  FENNEC_CHECK(k != nullptr, "SIMD level '" + name + "' is not supported by this CPU and build");
  g_current.store(k, std::memory_order_release);
}

std::vector<std::string> supported_simd_levels() {
  std::vector<std::string> out;
  for (const Entry& e : kEntries)
    if (e.supported()) out.emplace_back(e.kernels.name);
  return out;
}

}  // namespace fennec
