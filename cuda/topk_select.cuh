// Block-wide top-k selection in shared memory, shared by the scoring kernel and
// the merge kernel. Threads offer (key, index) candidates that beat the current
// k-th best to a small buffer; after each tile the block merges the buffer into a
// sorted list. Once the list is full, few candidates pass, so most tiles cost one
// barrier and no merge.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace fennec {
namespace cuda_detail {

constexpr int kBlockThreads = 256;
constexpr int kMaxK = 128;                           // widest k (kCudaMaxK)
constexpr int kCandidates = kBlockThreads - kMaxK;   // buffered offers per query per tile
constexpr int64_t kNoIndex = INT64_MAX;              // empty slot; key -inf
static_assert(kMaxK + kCandidates <= kBlockThreads, "merge gives each thread at most one element");

// a beats b: higher key, ties to the lower index. A strict total order on
// distinct indices; the empty slot (-inf, kNoIndex) beats nothing.
__device__ __forceinline__ bool beats(float key_a, int64_t index_a, float key_b, int64_t index_b) {
  return key_a > key_b || (key_a == key_b && index_a < index_b);
}

// QB independent selections (one per query of a batch), in one shared struct.
// Offered indices must be distinct within a selection.
template <int QB>
struct BlockTopK {
  float list_key[QB][kMaxK];  // best first; entries [0, fill) are valid
  int64_t list_index[QB][kMaxK];
  float cand_key[QB][kCandidates];  // offers since the last merge: [0, count)
  int64_t cand_index[QB][kCandidates];
  float bar_key[QB];  // the k-th best while the list is full, else (-inf, kNoIndex)
  int64_t bar_index[QB];
  int fill[QB];
  int count[QB];

  // All threads; the caller puts a barrier after it.
  __device__ void reset() {
    for (int qb = threadIdx.x; qb < QB; qb += blockDim.x) {
      bar_key[qb] = -INFINITY;
      bar_index[qb] = kNoIndex;
      fill[qb] = 0;
      count[qb] = 0;
    }
  }

  // One thread. Only for a candidate that beats the bar, and at most
  // kCandidates offers per selection between merges.
  __device__ __forceinline__ void offer(int qb, float key, int64_t index) {
    const int slot = atomicAdd(&count[qb], 1);
    cand_key[qb][slot] = key;
    cand_index[qb][slot] = index;
  }

  // All threads, after a barrier that follows the offers; ends with a barrier.
  // Each element of list + offers gets its rank in the union (how many beat it);
  // those ranked below k land at their rank, so the list stays sorted.
  __device__ void merge(int k) {
    const int t = static_cast<int>(threadIdx.x);
    float key[QB];
    int64_t index[QB];
    int rank[QB];
    int new_fill[QB];
#pragma unroll
    for (int qb = 0; qb < QB; ++qb) {
      const int f = fill[qb], c = count[qb];
      new_fill[qb] = min(k, f + c);
      rank[qb] = k;  // nothing to write
      key[qb] = 0.0f;
      index[qb] = 0;
      if (c == 0 || t >= f + c) continue;
      int r;
      if (t < f) {
        key[qb] = list_key[qb][t];
        index[qb] = list_index[qb][t];
        r = t;  // list entries beating it
      } else {
        key[qb] = cand_key[qb][t - f];
        index[qb] = cand_index[qb][t - f];
        int lo = 0, hi = f;  // list entries beating it: a prefix of the sorted list
        while (lo < hi) {
          const int mid = (lo + hi) / 2;
          if (beats(list_key[qb][mid], list_index[qb][mid], key[qb], index[qb])) {
            lo = mid + 1;
          } else {
            hi = mid;
          }
        }
        r = lo;
      }
      for (int j = 0; j < c; ++j) r += beats(cand_key[qb][j], cand_index[qb][j], key[qb], index[qb]);
      rank[qb] = r;
    }
    __syncthreads();
#pragma unroll
    for (int qb = 0; qb < QB; ++qb) {
      if (rank[qb] >= k) continue;
      list_key[qb][rank[qb]] = key[qb];
      list_index[qb][rank[qb]] = index[qb];
      if (rank[qb] == k - 1) {
        bar_key[qb] = key[qb];
        bar_index[qb] = index[qb];
      }
    }
    if (t == 0) {
#pragma unroll
      for (int qb = 0; qb < QB; ++qb) {
        fill[qb] = new_fill[qb];
        count[qb] = 0;
      }
    }
    __syncthreads();
  }

  // All threads, after a barrier: selection qb's k slots (padded with empty
  // slots) to key_out[0, k) / index_out[0, k).
  __device__ void store(int qb, int k, float* key_out, int64_t* index_out) const {
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      const bool have = j < fill[qb];
      key_out[j] = have ? list_key[qb][j] : -INFINITY;
      index_out[j] = have ? list_index[qb][j] : kNoIndex;
    }
  }
};

}  // namespace cuda_detail
}  // namespace fennec
