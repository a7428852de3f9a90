// Per-class count, mean and variance of feature rows. Rows are grouped by class
// first (a counting sort of row ids), then each task owns one class and one
// column range: its accumulators stay in L1, nothing is merged, and the result
// does not depend on the thread count. Sums run in float64 over
// values shifted by the first row of their class (the shifted-data algorithm):
// constant columns get exactly zero variance and a large mean costs no digits.
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

constexpr int64_t kColumnBlock = 256;  // 1 KB of float32 per row per task; 4 KB of sums
constexpr int64_t kPrefetchRows = 4;

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

  // The shift of each class is its first row (after normalisation).
  std::vector<int64_t> first_row(static_cast<size_t>(n_classes), -1);
  for (int64_t i = 0; i < n; ++i)
    if (first_row[a.labels[i]] < 0) first_row[a.labels[i]] = i;

  std::vector<double> shift(static_cast<size_t>(n_classes * d), 0.0);
  std::vector<double> sum(static_cast<size_t>(n_classes * d), 0.0);
  std::vector<double> sum_sq(static_cast<size_t>(n_classes * d), 0.0);
  for (int64_t c = 0; c < n_classes; ++c) {
    const int64_t i = first_row[c];
    if (i < 0) continue;
    const double scale = a.normalize ? row_scale[i] : 1.0;
    for (int64_t j = 0; j < d; ++j)
      shift[c * d + j] = static_cast<double>(static_cast<float>(to_float(features[i * d + j]) * scale));
  }

  // Row ids grouped by class, in row order within a class.
  std::vector<int64_t> class_start(static_cast<size_t>(n_classes + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++class_start[a.labels[i] + 1];
  for (int64_t c = 0; c < n_classes; ++c) class_start[c + 1] += class_start[c];
  std::vector<int64_t> rows_by_class(static_cast<size_t>(n));
  {
    std::vector<int64_t> fill(class_start.begin(), class_start.end() - 1);
    for (int64_t i = 0; i < n; ++i) rows_by_class[fill[a.labels[i]]++] = i;
  }

  const int64_t n_column_blocks = (d + kColumnBlock - 1) / kColumnBlock;
  parallel_for(n_classes * n_column_blocks, threads, [&](int64_t task, int) {
    const int64_t c = task / n_column_blocks;
    const int64_t c0 = (task % n_column_blocks) * kColumnBlock;
    const int64_t width = std::min(kColumnBlock, d - c0);
    const int64_t* rows = rows_by_class.data() + class_start[c];
    const int64_t count = class_start[c + 1] - class_start[c];
    const double* __restrict k = shift.data() + c * d + c0;
    double* __restrict s1 = sum.data() + c * d + c0;
    double* __restrict s2 = sum_sq.data() + c * d + c0;
    alignas(64) float x[kColumnBlock];
    for (int64_t r = 0; r < count; ++r) {
      const int64_t i = rows[r];
      const T* src = features + i * d + c0;
      // Rows of a class are scattered: fetch a few rows ahead.
      if (r + kPrefetchRows < count) {
        const char* ahead = reinterpret_cast<const char*>(features + rows[r + kPrefetchRows] * d + c0);
        for (int64_t byte = 0; byte < width * static_cast<int64_t>(sizeof(T)); byte += 64)
          __builtin_prefetch(ahead + byte);
      }
      int64_t j = 0;
      for (; j + W <= width; j += W) {
        const vf v = vload(src + j);
        std::memcpy(x + j, &v, sizeof v);
      }
      for (; j < width; ++j) x[j] = to_float(src[j]);
      if (a.normalize) {
        const float scale = row_scale[i];
        for (j = 0; j < width; ++j) x[j] *= scale;
      }
      for (j = 0; j < width; ++j) {
        const double delta = static_cast<double>(x[j]) - k[j];
        s1[j] += delta;
        s2[j] += delta * delta;
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
      const double centred = sum[at] / static_cast<double>(count > 0 ? count : 1);
      const double m2 = std::max(0.0, sum_sq[at] - sum[at] * centred);
      a.out_mean[at] = count > 0 ? shift[at] + centred : nan;
      a.out_var[at] = count > a.ddof ? m2 / static_cast<double>(count - a.ddof) : nan;
      if (count > 0 && !(std::isfinite(sum[at]) && std::isfinite(sum_sq[at]) && std::isfinite(shift[at])))
        finite = false;
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
