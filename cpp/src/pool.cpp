// Dispatcher for per-class pooling: checks the core's invariants, then runs the
// CPU build chosen at run time or the CUDA twin.
#include "fennec/pool.h"

#include "dispatch.h"

namespace fennec {

void check_pool_args(const PoolArgs& a) {
  FENNEC_CHECK(a.n >= 0 && a.d >= 1, "features must be n x d with d >= 1");
  FENNEC_CHECK(a.n_classes >= 1, "n_classes must be >= 1");
  FENNEC_CHECK(a.ddof >= 0, "ddof must be >= 0");
  FENNEC_CHECK(a.n == 0 || (a.features != nullptr && a.labels != nullptr), "null input buffer");
  FENNEC_CHECK(a.out_counts != nullptr && a.out_mean != nullptr && a.out_var != nullptr,
               "null output buffer");
  for (int64_t i = 0; i < a.n; ++i)
    FENNEC_CHECK(a.labels[i] >= 0 && a.labels[i] < a.n_classes,
                 "labels[" + std::to_string(i) + "] = " + std::to_string(a.labels[i]) +
                     " is outside [0, n_classes)");
}

int64_t pool_cpu(const PoolArgs& args) {
  check_pool_args(args);
  return cpu_kernels().pool(args);
}

int64_t pool(const PoolArgs& args, Device device) {
  if (device == Device::Cpu) return pool_cpu(args);
#ifdef FENNEC_WITH_CUDA
  return pool_cuda(args);
#else
  throw_without_cuda("device 'cuda'");
#endif
}

}  // namespace fennec
