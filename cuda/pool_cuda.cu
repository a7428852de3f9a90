// Per-class count, mean and variance on the GPU: the CUDA twin of cpu/pool_cpu.cpp.
//
// The host groups row ids by class (a counting sort of the labels, as on the
// CPU); then each block owns one class, 32 columns and one slice of the class's
// rows, with one column per lane and the rows spread over the warps. Two passes
// in float64: sums -> means, then squared deviations from the mean -> variances.
// Slices are summed in a fixed order, so results do not vary from run to run.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <vector>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "fennec/pool.h"
#include "loads.cuh"

namespace fennec {
namespace cuda_detail {
namespace {

constexpr int kPoolThreads = 256;
constexpr int kPoolWarps = kPoolThreads / 32;
constexpr int kColumns = 32;      // columns per block: one per lane
constexpr int kMaxSlices = 64;    // row slices per class, to fill the GPU when classes are few
constexpr int kMaxGridYZ = 65535;

// One warp per row: flags rows holding NaN or inf (atomicMin into bad_row) and,
// when `scale` is given, stores the row's L2-normalising factor (0 for a zero
// row), computed as on the CPU: float(1 / sqrt(sum of squares in float64)).
template <typename T>
__global__ void __launch_bounds__(kPoolThreads)
    row_scan_kernel(const T* __restrict__ features, int64_t n, int64_t d, float* __restrict__ scale,
                    unsigned long long* __restrict__ bad_row) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kPoolWarps;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kPoolWarps + threadIdx.x / 32; i < n; i += warps) {
    const T* row = features + i * d;
    double sq = 0.0;
    bool finite = true;
    for (int64_t j = lane; j < d; j += 32) {
      const float x = to_float(row[j]);
      finite = finite && isfinite(x);
      sq += static_cast<double>(x) * static_cast<double>(x);
    }
    const bool bad = __any_sync(0xffffffffu, !finite);
    if (scale != nullptr) {
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, offset);
    }
    if (lane == 0) {
      if (bad) atomicMin(bad_row, static_cast<unsigned long long>(i));
      if (scale != nullptr) scale[i] = sq > 0.0 ? static_cast<float>(1.0 / sqrt(sq)) : 0.0f;
    }
  }
}

// Block (class c = blockIdx.x, columns [32 * blockIdx.y, +32), slice s = blockIdx.z):
// out[(s * n_classes + c) * d + j] = sum over the slice's rows of x (mean == nullptr)
// or of (x - mean[c * d + j])^2. x is the value as float32, times the row's scale
// in float32 when normalising, as on the CPU.
template <typename T>
__global__ void __launch_bounds__(kPoolThreads)
    class_sum_kernel(const T* __restrict__ features, int64_t d, const float* __restrict__ scale,
                     const int64_t* __restrict__ rows_by_class, const int64_t* __restrict__ class_start,
                     int64_t n_classes, const double* __restrict__ mean, double* __restrict__ out) {
  __shared__ double warp_sums[kPoolWarps][32];
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int64_t c = blockIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kColumns + lane;
  const int64_t start = class_start[c], count = class_start[c + 1] - start;
  const int64_t per_slice = (count + gridDim.z - 1) / gridDim.z;
  const int64_t lo = start + min(count, blockIdx.z * per_slice);
  const int64_t hi = start + min(count, (blockIdx.z + 1) * per_slice);
  const double centre = mean != nullptr && j < d ? mean[c * d + j] : 0.0;

  double acc = 0.0;
  if (j < d) {
    for (int64_t p = lo + warp; p < hi; p += kPoolWarps) {
      const int64_t i = rows_by_class[p];
      float x = to_float(features[i * d + j]);
      if (scale != nullptr) x *= scale[i];
      if (mean != nullptr) {
        const double delta = static_cast<double>(x) - centre;
        acc = fma(delta, delta, acc);
      } else {
        acc += static_cast<double>(x);
      }
    }
  }
  warp_sums[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && j < d) {
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < kPoolWarps; ++w) total += warp_sums[w][lane];
    out[(static_cast<int64_t>(blockIdx.z) * n_classes + c) * d + j] = total;
  }
}

// For each (class, column): adds the slices' partial sums in order, then
// mean = sum / count (NaN for an empty class) or var = m2 / (count - ddof)
// (NaN when count <= ddof). In place is fine: each element is read, then written.
__global__ void finish_kernel(const double* partial, int slices, const int64_t* __restrict__ class_start,
                              int64_t n_classes, int64_t d, bool variance, int64_t ddof, double* out) {
  const int64_t total = n_classes * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t at = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; at < total; at += stride) {
    const int64_t c = at / d;
    const int64_t count = class_start[c + 1] - class_start[c];
    double sum = 0.0;
    for (int s = 0; s < slices; ++s) sum += partial[s * total + at];
    const int64_t divisor = variance ? count - ddof : count;
    out[at] = divisor > 0 ? sum / static_cast<double>(divisor) : __longlong_as_double(0x7ff8000000000000LL);
  }
}

template <typename T>
int64_t pool_on_device(const PoolArgs& a) {
  const int64_t n = a.n, d = a.d, n_classes = a.n_classes;
  FENNEC_CHECK(n_classes <= INT_MAX, "the CUDA pooling handles at most 2^31 - 1 classes");
  const int64_t column_tiles = (d + kColumns - 1) / kColumns;
  FENNEC_CHECK(column_tiles <= kMaxGridYZ, "the CUDA pooling handles d <= 32 * 65535");

  // Rows grouped by class, in row order within a class (the CPU's counting sort).
  std::vector<int64_t> class_start(static_cast<size_t>(n_classes + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++class_start[static_cast<size_t>(a.labels[i] + 1)];
  for (int64_t c = 0; c < n_classes; ++c) {
    a.out_counts[c] = class_start[static_cast<size_t>(c + 1)];
    class_start[static_cast<size_t>(c + 1)] += class_start[static_cast<size_t>(c)];
  }
  std::vector<int64_t> rows_by_class(static_cast<size_t>(n));
  {
    std::vector<int64_t> fill(class_start.begin(), class_start.end() - 1);
    for (int64_t i = 0; i < n; ++i) rows_by_class[static_cast<size_t>(fill[static_cast<size_t>(a.labels[i])]++)] = i;
  }

  int device = 0, sms = 0;
  FENNEC_CUDA_CHECK(cudaGetDevice(&device));
  FENNEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Few classes and columns: split each class's rows into slices to use the whole GPU.
  const int64_t blocks = n_classes * column_tiles;
  const int64_t target = 4 * static_cast<int64_t>(std::max(sms, 1));
  const int slices = static_cast<int>(std::clamp<int64_t>((target + blocks - 1) / blocks, 1, kMaxSlices));

  const size_t cells = static_cast<size_t>(n_classes * d);
  DeviceMemory features(a.features, static_cast<size_t>(n * d) * sizeof(T));
  DeviceMemory rows(rows_by_class.data(), rows_by_class.size() * sizeof(int64_t));
  DeviceMemory starts(class_start.data(), class_start.size() * sizeof(int64_t));
  DeviceMemory scale(a.normalize ? static_cast<size_t>(n) * sizeof(float) : 0);
  DeviceMemory mean(cells * sizeof(double));
  DeviceMemory var(cells * sizeof(double));
  // One slice: the partial sums live in `var` until the variance replaces them.
  DeviceMemory slice_sums(slices > 1 ? cells * static_cast<size_t>(slices) * sizeof(double) : 0);
  double* partial = slices > 1 ? slice_sums.get<double>() : var.get<double>();
  DeviceMemory bad_row(sizeof(unsigned long long));
  FENNEC_CUDA_CHECK(cudaMemset(bad_row.get(), 0xFF, sizeof(unsigned long long)));  // ULLONG_MAX: none

  const int64_t scan_blocks = std::min<int64_t>((n + kPoolWarps - 1) / kPoolWarps, 32 * static_cast<int64_t>(std::max(sms, 1)));
  row_scan_kernel<T><<<static_cast<unsigned>(scan_blocks), kPoolThreads>>>(features.get<const T>(), n, d,
                                                                           scale.get<float>(),
                                                                           bad_row.get<unsigned long long>());
  FENNEC_CUDA_CHECK_LAUNCH();

  const dim3 grid(static_cast<unsigned>(n_classes), static_cast<unsigned>(column_tiles), static_cast<unsigned>(slices));
  const int64_t finish_blocks = std::min<int64_t>((static_cast<int64_t>(cells) + kPoolThreads - 1) / kPoolThreads,
                                                  32 * static_cast<int64_t>(std::max(sms, 1)));
  class_sum_kernel<T><<<grid, kPoolThreads>>>(features.get<const T>(), d, scale.get<const float>(),
                                              rows.get<const int64_t>(), starts.get<const int64_t>(), n_classes,
                                              nullptr, partial);
  FENNEC_CUDA_CHECK_LAUNCH();
  finish_kernel<<<static_cast<unsigned>(finish_blocks), kPoolThreads>>>(partial, slices, starts.get<const int64_t>(),
                                                                        n_classes, d, false, 0, mean.get<double>());
  FENNEC_CUDA_CHECK_LAUNCH();
  class_sum_kernel<T><<<grid, kPoolThreads>>>(features.get<const T>(), d, scale.get<const float>(),
                                              rows.get<const int64_t>(), starts.get<const int64_t>(), n_classes,
                                              mean.get<const double>(), partial);
  FENNEC_CUDA_CHECK_LAUNCH();
  finish_kernel<<<static_cast<unsigned>(finish_blocks), kPoolThreads>>>(partial, slices, starts.get<const int64_t>(),
                                                                        n_classes, d, true, a.ddof, var.get<double>());
  FENNEC_CUDA_CHECK_LAUNCH();

  mean.download(a.out_mean, cells * sizeof(double));
  var.download(a.out_var, cells * sizeof(double));
  unsigned long long bad = 0;
  bad_row.download(&bad, sizeof bad);
  return bad == ULLONG_MAX ? -1 : static_cast<int64_t>(bad);
}

}  // namespace
}  // namespace cuda_detail

int64_t pool_cuda(const PoolArgs& args) {
  check_pool_args(args);
  if (args.n == 0) {
    // Nothing to pool: every class is empty. No GPU work needed.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(args.out_counts, args.out_counts + args.n_classes, 0);
    std::fill(args.out_mean, args.out_mean + args.n_classes * args.d, nan);
    std::fill(args.out_var, args.out_var + args.n_classes * args.d, nan);
    return -1;
  }
  if (args.storage == Storage::F16) return cuda_detail::pool_on_device<__half>(args);
  return cuda_detail::pool_on_device<float>(args);
}

}  // namespace fennec
