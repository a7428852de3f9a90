// Per-class pooling of proxy features: count, mean and variance.
#pragma once
#include <cstdint>

#include "fennec/common.h"

namespace fennec {

struct PoolArgs {
  const void* features = nullptr;  // n x d, row-major, `storage` elements
  Storage storage = Storage::F32;
  int64_t n = 0;
  int64_t d = 0;
  const int64_t* labels = nullptr;  // n entries in [0, n_classes), checked by the caller
  int64_t n_classes = 0;
  bool normalize = false;  // L2-normalise each row before pooling (zero rows stay zero)
  int64_t ddof = 0;        // variance divisor is count - ddof
  int threads = 0;
  // Outputs: counts[n_classes], mean[n_classes x d], var[n_classes x d] (float64).
  // Classes with count <= ddof get NaN variance; empty classes get NaN mean.
  int64_t* out_counts = nullptr;
  double* out_mean = nullptr;
  double* out_var = nullptr;
};

// Throws CoreError when the arguments break the core's invariants (labels included).
void check_pool_args(const PoolArgs& args);

// The dispatcher: host pointers, run on `device`. Returns the first row holding
// NaN or inf, or -1 when all rows are finite. Throws CoreError for Device::Cuda
// in a build without CUDA.
int64_t pool(const PoolArgs& args, Device device);

// The twins behind the dispatcher, with the same signature.
int64_t pool_cpu(const PoolArgs& args);
#ifdef FENNEC_WITH_CUDA
int64_t pool_cuda(const PoolArgs& args);  // pointers are host pointers
#endif

}  // namespace fennec
