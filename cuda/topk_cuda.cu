// Fused scoring + top-k on the GPU: the CUDA twin of cpu/topk_cpu.cpp.
//
// topk_score_kernel reads the model matrix once per batch of up to QB queries and
// never stores all n scores. A group of kGroupLanes threads scores a row (16-byte
// loads, shuffle reduction); each block walks tiles of kTileRows rows in a
// grid-stride loop and keeps, per query, its top-k in shared memory
// (topk_select.cuh). Each block writes its k best per query to a small buffer;
// topk_merge_kernel then reduces those lists, kMergeSpan candidates per block,
// until one list per query is left, and writes the outputs.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cstdint>
#include <mutex>

#include "cuda_check.cuh"
#include "device_memory.cuh"
#include "fennec/score.h"
#include "loads.cuh"
#include "topk_select.cuh"

namespace fennec {
namespace cuda_detail {
namespace {

static_assert(kMaxK == kCudaMaxK, "topk_select.cuh and score.h disagree on the widest k");

constexpr int kGroupLanes = 8;                             // threads per row
constexpr int kGroups = kBlockThreads / kGroupLanes;       // rows in flight per block
constexpr int kRowsPerGroup = 4;                           // rows per group per tile
constexpr int kTileRows = kGroups * kRowsPerGroup;         // 128
constexpr int64_t kMergeSpan = 4 * kCandidates;            // candidates per merge block
constexpr int kMaxGridY = 65535;
static_assert(kTileRows <= kCandidates, "a tile must not offer more than the buffer holds");
static_assert(kMergeSpan >= 2 * kMaxK, "each merge level must shrink the candidates");

// Sum over the kGroupLanes lanes of a group; every lane gets the same bits
// (each butterfly step adds the same two values in both lanes).
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int offset = kGroupLanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Scores rows against queries [QB * b, QB * b + QB) for each batch b = blockIdx.y,
// blockIdx.y + gridDim.y, ...; writes block_key/index[q][blockIdx.x][0, k).
// L2: key = -squared distance. VEC: rows and queries are 16-byte aligned and the
// row length is a multiple of 16 bytes. A kept row whose key is not finite
// goes to atomicMin(bad_row) instead of the selection.
template <typename T, bool L2, bool VEC, int QB>
__global__ void __launch_bounds__(kBlockThreads)
    topk_score_kernel(const void* model_vectors, int64_t n, int64_t d, const float* __restrict__ queries,
                      int64_t nq, const uint8_t* __restrict__ skip, int k, float* __restrict__ block_key,
                      int64_t* __restrict__ block_index, unsigned long long* __restrict__ bad_row) {
  using Chunk = RowChunk<T, VEC>;
  constexpr int W = Chunk::W;
  __shared__ BlockTopK<QB> top;
  const T* __restrict__ rows = static_cast<const T*>(model_vectors);
  const int lane = static_cast<int>(threadIdx.x) % kGroupLanes;
  const int group = static_cast<int>(threadIdx.x) / kGroupLanes;
  const int64_t chunks = d / W;  // exact: the host checked d * sizeof(T) % 16 == 0 for VEC
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  const int64_t batches = (nq + QB - 1) / QB;

  for (int64_t batch = blockIdx.y; batch < batches; batch += gridDim.y) {
    const int64_t q0 = batch * QB;
    const int nqb = static_cast<int>(min(static_cast<int64_t>(QB), nq - q0));
    top.reset();
    __syncthreads();
    float bar_key[QB];
    int64_t bar_index[QB];
#pragma unroll
    for (int qb = 0; qb < QB; ++qb) {
      bar_key[qb] = top.bar_key[qb];
      bar_index[qb] = top.bar_index[qb];
    }

    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      // Row r of this group: consecutive groups take consecutive rows, so a
      // warp's loads cover one contiguous stretch of the matrix.
      int64_t row[kRowsPerGroup];
      float acc[kRowsPerGroup][QB];
#pragma unroll
      for (int r = 0; r < kRowsPerGroup; ++r) {
        row[r] = tile * kTileRows + r * kGroups + group;
#pragma unroll
        for (int qb = 0; qb < QB; ++qb) acc[r][qb] = 0.0f;
      }
      for (int64_t c = lane; c < chunks; c += kGroupLanes) {
        typename Chunk::Raw raw[kRowsPerGroup];
#pragma unroll
        for (int r = 0; r < kRowsPerGroup; ++r)
          raw[r] = row[r] < n ? Chunk::load(rows + row[r] * d + c * W) : Chunk::zero();
        float x[kRowsPerGroup][W];
#pragma unroll
        for (int r = 0; r < kRowsPerGroup; ++r) Chunk::widen(raw[r], x[r]);
#pragma unroll
        for (int qb = 0; qb < QB; ++qb) {
          if (qb >= nqb) break;
          float q[W];
          load_query<W>(queries + (q0 + qb) * d + c * W, q);
#pragma unroll
          for (int r = 0; r < kRowsPerGroup; ++r) {
#pragma unroll
            for (int e = 0; e < W; ++e) {
              if (L2) {
                const float diff = x[r][e] - q[e];
                acc[r][qb] = fmaf(diff, diff, acc[r][qb]);
              } else {
                acc[r][qb] = fmaf(x[r][e], q[e], acc[r][qb]);
              }
            }
          }
        }
      }
      // Whole warps reach the shuffles: nqb is uniform over the block.
#pragma unroll
      for (int r = 0; r < kRowsPerGroup; ++r) {
#pragma unroll
        for (int qb = 0; qb < QB; ++qb)
          if (qb < nqb) acc[r][qb] = group_sum(acc[r][qb]);
      }

      int offered = 0;
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRowsPerGroup; ++r) {
          if (row[r] >= n) continue;
          int skipped = -1;  // read the mask only for rows that need it
#pragma unroll
          for (int qb = 0; qb < QB; ++qb) {
            if (qb >= nqb) break;
            const float key = L2 ? -acc[r][qb] : acc[r][qb];
            const bool finite = fabsf(key) <= FLT_MAX;  // false for NaN and +-inf
            if (finite && !beats(key, row[r], bar_key[qb], bar_index[qb])) continue;
            if (skipped < 0) skipped = skip != nullptr && skip[row[r]] != 0;
            if (skipped) break;
            if (!finite) {
              atomicMin(bad_row, static_cast<unsigned long long>(row[r]));
              continue;
            }
            top.offer(qb, key, row[r]);
            offered = 1;
          }
        }
      }
      if (__syncthreads_or(offered)) {
        top.merge(k);
#pragma unroll
        for (int qb = 0; qb < QB; ++qb) {
          bar_key[qb] = top.bar_key[qb];
          bar_index[qb] = top.bar_index[qb];
        }
      }
    }

    for (int qb = 0; qb < nqb; ++qb) {
      const int64_t at = ((q0 + qb) * gridDim.x + blockIdx.x) * k;
      top.store(qb, k, block_key + at, block_index + at);
    }
    __syncthreads();  // the next batch's reset must not overtake the stores
  }
}

// Reduces nq sets of m candidates (in_key/index[q][0, m), empty slots allowed)
// to one top-k per query and per span of kMergeSpan candidates:
// out_key/index[q][blockIdx.x][0, k). With final_output (gridDim.x == 1), writes
// the caller's outputs instead: scores (minus the key for L2) and indices, best
// first; missing entries (fewer than k kept rows) get NaN and -1 as on the CPU.
__global__ void __launch_bounds__(kBlockThreads)
    topk_merge_kernel(const float* __restrict__ in_key, const int64_t* __restrict__ in_index, int64_t m,
                      int64_t nq, int k, float* __restrict__ out_key, int64_t* __restrict__ out_index,
                      bool final_output, bool l2, float* __restrict__ out_scores,
                      int64_t* __restrict__ out_indices) {
  __shared__ BlockTopK<1> top;
  const int t = static_cast<int>(threadIdx.x);
  const int64_t begin = blockIdx.x * kMergeSpan;
  const int64_t end = min(m, begin + kMergeSpan);
  for (int64_t q = blockIdx.y; q < nq; q += gridDim.y) {
    top.reset();
    __syncthreads();
    for (int64_t base = begin; base < end; base += kCandidates) {
      int offered = 0;
      const int64_t i = base + t;
      if (t < kCandidates && i < end) {
        const float key = in_key[q * m + i];
        const int64_t index = in_index[q * m + i];
        if (beats(key, index, top.bar_key[0], top.bar_index[0])) {
          top.offer(0, key, index);
          offered = 1;
        }
      }
      if (__syncthreads_or(offered)) top.merge(k);
    }
    if (final_output) {
      for (int j = t; j < k; j += blockDim.x) {
        const bool have = j < top.fill[0];
        const float key = have ? top.list_key[0][j] : 0.0f;
        out_scores[q * k + j] = have ? (l2 ? 0.0f - key : key) : __int_as_float(0x7fc00000);  // NaN
        out_indices[q * k + j] = have ? top.list_index[0][j] : -1;
      }
    } else {
      const int64_t at = (q * gridDim.x + blockIdx.x) * k;
      top.store(0, k, out_key + at, out_index + at);
    }
    __syncthreads();
  }
}

using ScoreKernel = void (*)(const void*, int64_t, int64_t, const float*, int64_t, const uint8_t*, int, float*,
                             int64_t*, unsigned long long*);

template <typename T, bool L2, bool VEC>
ScoreKernel pick_batch(int64_t nq) {
  if (nq == 1) return topk_score_kernel<T, L2, VEC, 1>;
  return topk_score_kernel<T, L2, VEC, 8>;
}

template <typename T>
ScoreKernel pick_kernel(bool l2, bool vec, int64_t nq) {
  if (l2) return vec ? pick_batch<T, true, true>(nq) : pick_batch<T, true, false>(nq);
  return vec ? pick_batch<T, false, true>(nq) : pick_batch<T, false, false>(nq);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Device memory of the merge tree, kept per device between calls (allocating
// every call would cost more than a small top-k). A call holds its device's
// scratch for its whole length, so calls on one device run one at a time; more
// than kKeepBytes is given back when the call ends.
constexpr int kMaxDevices = 64;
constexpr size_t kKeepBytes = size_t{64} << 20;

struct Scratch {
  std::mutex mutex;
  DeviceMemory memory;
};

// One call's hold on its device's scratch: the lock, and at least `bytes` of it.
class ScratchHold {
 public:
  ScratchHold(int device, size_t bytes) : scratch_(scratch_for(device)), lock_(scratch_.mutex) {
    scratch_.memory.reserve(bytes);
  }
  ~ScratchHold() {
    if (scratch_.memory.bytes() > kKeepBytes) scratch_.memory.release();
  }
  ScratchHold(const ScratchHold&) = delete;
  ScratchHold& operator=(const ScratchHold&) = delete;
  char* get() const { return scratch_.memory.get<char>(); }

 private:
  static Scratch& scratch_for(int device) {
    // Never destroyed: freeing at process exit would race the CUDA runtime's own teardown.
    static Scratch* const table = new Scratch[kMaxDevices];
    FENNEC_CHECK(device >= 0 && device < kMaxDevices, "CUDA device id out of range");
    return table[device];
  }

  Scratch& scratch_;
  std::lock_guard<std::mutex> lock_;
};

// The device that holds `p`; throws unless `p` is GPU or managed memory on
// `device` (when device >= 0). Catches host pointers handed to the device entry
// point before a kernel faults on them.
int device_of(const void* p, const char* what, int device) {
  cudaPointerAttributes attr;
  FENNEC_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
  const bool on_gpu = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  FENNEC_CHECK(on_gpu, std::string(what) + " must be CUDA device memory");
  FENNEC_CHECK(device < 0 || attr.type == cudaMemoryTypeManaged || attr.device == device,
               std::string(what) + " is on another CUDA device than model_vectors");
  if (attr.device >= 0) return attr.device;
  int current = 0;  // managed memory may name no device: run on the current one
  FENNEC_CUDA_CHECK(cudaGetDevice(&current));
  return current;
}

size_t round_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace
}  // namespace cuda_detail

TopKStatus topk_cuda_device(const TopKArgs& a) {
  using namespace cuda_detail;
  check_topk_args(a);
  FENNEC_CHECK(a.k <= kCudaMaxK, "the CUDA top-k handles k <= " + std::to_string(kCudaMaxK));
  const int device = device_of(a.model_vectors, "model_vectors", -1);
  device_of(a.queries, "queries", device);
  if (a.skip != nullptr) device_of(a.skip, "skip", device);
  device_of(a.out_scores, "out_scores", device);
  device_of(a.out_indices, "out_indices", device);
  DeviceGuard on_device(device);

  const bool l2 = a.metric == Metric::L2;
  const size_t elem = a.storage == Storage::F16 ? 2 : 4;
  const bool vec = (static_cast<size_t>(a.d) * elem) % 16 == 0 && aligned16(a.model_vectors) && aligned16(a.queries);
  const ScoreKernel kernel =
      a.storage == Storage::F16 ? pick_kernel<__half>(l2, vec, a.nq) : pick_kernel<float>(l2, vec, a.nq);
  const int qb = a.nq == 1 ? 1 : 8;
  const int k = static_cast<int>(a.k);

  // Enough blocks to fill the GPU once, over all query batches; no more blocks than tiles.
  int sms = 0, per_sm = 0;
  FENNEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  FENNEC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kBlockThreads, 0));
  const int64_t batches = (a.nq + qb - 1) / qb;
  const int64_t grid_y = std::min<int64_t>(batches, kMaxGridY);
  const int64_t tiles = (a.n + kTileRows - 1) / kTileRows;
  const int64_t resident = static_cast<int64_t>(std::max(sms, 1)) * std::max(per_sm, 1);
  const int64_t grid_x = std::max<int64_t>(1, std::min(tiles, (resident + grid_y - 1) / grid_y));

  // Scratch: bad_row | level-1 lists (nq x grid_x x k) | level-2 lists. Later
  // levels alternate between the two and only shrink.
  const int64_t m1 = grid_x * k;
  const int64_t m2 = (m1 + kMergeSpan - 1) / kMergeSpan * k;
  const size_t bytes_bad = round_up(sizeof(unsigned long long));
  const size_t bytes_key1 = round_up(static_cast<size_t>(a.nq * m1) * sizeof(float));
  const size_t bytes_index1 = round_up(static_cast<size_t>(a.nq * m1) * sizeof(int64_t));
  const size_t bytes_key2 = round_up(static_cast<size_t>(a.nq * m2) * sizeof(float));
  const size_t bytes_index2 = round_up(static_cast<size_t>(a.nq * m2) * sizeof(int64_t));
  ScratchHold scratch(device, bytes_bad + bytes_key1 + bytes_index1 + bytes_key2 + bytes_index2);
  char* base = scratch.get();
  auto* bad_row = reinterpret_cast<unsigned long long*>(base);
  float* key[2] = {reinterpret_cast<float*>(base + bytes_bad),
                   reinterpret_cast<float*>(base + bytes_bad + bytes_key1 + bytes_index1)};
  int64_t* index[2] = {reinterpret_cast<int64_t*>(base + bytes_bad + bytes_key1),
                       reinterpret_cast<int64_t*>(base + bytes_bad + bytes_key1 + bytes_index1 + bytes_key2)};

  FENNEC_CUDA_CHECK(cudaMemset(bad_row, 0xFF, sizeof(unsigned long long)));  // ULLONG_MAX: none
  kernel<<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)), kBlockThreads>>>(
      a.model_vectors, a.n, a.d, a.queries, a.nq, a.skip, k, key[0], index[0], bad_row);
  FENNEC_CUDA_CHECK_LAUNCH();

  const unsigned merge_y = static_cast<unsigned>(std::min<int64_t>(a.nq, kMaxGridY));
  int64_t m = m1;
  int level = 0;
  for (;;) {
    const int64_t groups = (m + kMergeSpan - 1) / kMergeSpan;
    const bool final_output = groups == 1;
    topk_merge_kernel<<<dim3(static_cast<unsigned>(groups), merge_y), kBlockThreads>>>(
        key[level], index[level], m, a.nq, k, key[1 - level], index[1 - level], final_output, l2, a.out_scores,
        a.out_indices);
    FENNEC_CUDA_CHECK_LAUNCH();
    if (final_output) break;
    m = groups * k;
    level = 1 - level;
  }

  unsigned long long bad = 0;
  FENNEC_CUDA_CHECK(cudaMemcpy(&bad, bad_row, sizeof bad, cudaMemcpyDeviceToHost));  // waits for the kernels
  TopKStatus status;
  if (bad != ULLONG_MAX) status.bad_row = static_cast<int64_t>(bad);
  return status;
}

TopKStatus topk_cuda(const TopKArgs& a) {
  check_topk_args(a);
  FENNEC_CHECK(a.k <= kCudaMaxK, "the CUDA top-k handles k <= " + std::to_string(kCudaMaxK));
  const size_t elem = a.storage == Storage::F16 ? 2 : 4;
  const size_t result_count = static_cast<size_t>(a.nq * a.k);
  const DeviceMemory model(a.model_vectors, static_cast<size_t>(a.n * a.d) * elem);
  const DeviceMemory queries(a.queries, static_cast<size_t>(a.nq * a.d) * sizeof(float));
  const DeviceMemory skip(a.skip, a.skip != nullptr ? static_cast<size_t>(a.n) : 0);
  const DeviceMemory scores(result_count * sizeof(float));
  const DeviceMemory indices(result_count * sizeof(int64_t));

  TopKArgs on_device = a;
  on_device.model_vectors = model.get();
  on_device.queries = queries.get<const float>();
  on_device.skip = a.skip != nullptr ? skip.get<const uint8_t>() : nullptr;
  on_device.out_scores = scores.get<float>();
  on_device.out_indices = indices.get<int64_t>();
  const TopKStatus status = topk_cuda_device(on_device);
  scores.download(a.out_scores, result_count * sizeof(float));
  indices.download(a.out_indices, result_count * sizeof(int64_t));
  return status;
}

}  // namespace fennec
