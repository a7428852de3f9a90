// Per-class count, mean and variance of feature rows. Work is split over
// column ranges rather than rows: every worker streams all rows but owns its
// columns of the per-class accumulators, so nothing is duplicated or merged and
// the result does not depend on the thread count. Welford updates in float64
// keep the variance exact for constant columns and robust for large means.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fennec/pool.h"
#include "parallel.h"
#include "cpu/simd.h"

namespace fennec {
namespace cpu {
namespace FENNEC_ISA_NS {
namespace {

constexpr int64_t kColumnBlock = 64;  // 256 bytes of float32 per row per task

template <typename T>
bool row_is_finite(const T* row, int64_t d) {
  for (int64_t j = 0; j < d; ++j)
    if (!std::isfinite(to_float(row[j]))) return false;
  return true;
}

template <typename T>
int64_t pool_impl(const PoolArgs& a) {
  const T* features = static_cast<const T*>(a.features);
  const int64_t n = a.n, d = a.d, n_classes = a.n_classes;
  const int threads = resolve_threads(a.threads);

  std::vector<float> row_scale;
  if (a.normalize) {
    row_scale.resize(static_cast<size_t>(n));
    const int64_t rows_per_task = 4096;
    parallel_for((n + rows_per_task - 1) / rows_per_task, threads, [&](int64_t task, int) {
      const int64_t end = std::min(n, (task + 1) * rows_per_task);
      for (int64_t i = task * rows_per_task; i < end; ++i) {
        const T* row = features + i * d;
        double sq = 0.0;
        for (int64_t j = 0; j < d; ++j) {
          const double x = to_float(row[j]);
          sq += x * x;
        }
        row_scale[i] = sq > 0.0 ? static_cast<float>(1.0 / std::sqrt(sq)) : 0.0f;
      }
    });
  }

  std::vector<double> mean(static_cast<size_t>(n_classes * d), 0.0);
  std::vector<double> m2(static_cast<size_t>(n_classes * d), 0.0);
  const int64_t n_tasks = (d + kColumnBlock - 1) / kColumnBlock;
  parallel_for(n_tasks, threads, [&](int64_t task, int) {
    const int64_t c0 = task * kColumnBlock;
    const int64_t width = std::min(kColumnBlock, d - c0);
    std::vector<int64_t> seen(static_cast<size_t>(n_classes), 0);
    alignas(64) float x[kColumnBlock];
    for (int64_t i = 0; i < n; ++i) {
      const T* src = features + i * d + c0;
      int64_t j = 0;
      for (; j + W <= width; j += W) {
        const vf v = vload(src + j);
        std::memcpy(x + j, &v, sizeof v);
      }
      for (; j < width; ++j) x[j] = to_float(src[j]);
      if (a.normalize) {
        const float s = row_scale[i];
        for (j = 0; j < width; ++j) x[j] *= s;
      }
      const int64_t c = a.labels[i];
      const double inv = 1.0 / static_cast<double>(++seen[c]);
      double* __restrict mu = mean.data() + c * d + c0;
      double* __restrict acc = m2.data() + c * d + c0;
      for (j = 0; j < width; ++j) {
        const double xj = x[j];
        const double delta = xj - mu[j];
        mu[j] += delta * inv;
        acc[j] += delta * (xj - mu[j]);
      }
    }
  });

  std::fill(a.out_counts, a.out_counts + n_classes, 0);
  for (int64_t i = 0; i < n; ++i) ++a.out_counts[a.labels[i]];
  const double nan = std::numeric_limits<double>::quiet_NaN();
  bool finite = true;
  for (int64_t c = 0; c < n_classes; ++c) {
    const int64_t count = a.out_counts[c];
    for (int64_t j = 0; j < d; ++j) {
      const size_t at = static_cast<size_t>(c * d + j);
      a.out_mean[at] = count > 0 ? mean[at] : nan;
      a.out_var[at] = count > a.ddof ? m2[at] / static_cast<double>(count - a.ddof) : nan;
      if (count > 0 && !(std::isfinite(mean[at]) && std::isfinite(m2[at]))) finite = false;
    }
  }
  if (finite) return -1;
  // Slow path, only on bad input: name the first offending row.
  for (int64_t i = 0; i < n; ++i)
    if (!row_is_finite(features + i * d, d)) return i;
  return -1;  // finite rows whose squares overflowed float64: cannot happen for float32 input
}

}  // namespace

int64_t pool(const PoolArgs& args) {
  if (args.storage == Storage::F16) return pool_impl<half_t>(args);
  return pool_impl<float>(args);
}

}  // namespace FENNEC_ISA_NS
}  // namespace cpu
}  // namespace fennec
