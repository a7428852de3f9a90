// Fused scoring + top-k on the CPU. One pass over the model matrix: rows are
// scored in blocks that stay in L1/L2, each worker keeps a bounded heap per
// query, and only rows that beat the heap's current worst are inserted. Extra
// memory is O(threads * (nq * k + block)), never O(n).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fennec/score.h"
#include "parallel.h"
#include "cpu/simd.h"

namespace fennec {
namespace cpu {
namespace FENNEC_ISA_NS {
namespace {

struct Candidate {
  float key;  // larger is better: the inner product, or minus the squared distance
  int64_t index;
};

// a beats b: higher key, ties to the lower index.
inline bool beats(const Candidate& a, const Candidate& b) {
  return a.key > b.key || (a.key == b.key && a.index < b.index);
}

// Keeps the k best candidates; the root is the worst of them.
class BoundedHeap {
 public:
  explicit BoundedHeap(int64_t k) : k_(k) { items_.reserve(static_cast<size_t>(k)); }

  // Keys at or below this cannot enter (a tie on key may still enter by index).
  float threshold() const {
    return static_cast<int64_t>(items_.size()) < k_ ? -std::numeric_limits<float>::infinity()
                                                   : items_.front().key;
  }

  void offer(float key, int64_t index) {
    Candidate c{key, index};
    if (static_cast<int64_t>(items_.size()) < k_) {
      items_.push_back(c);
      std::push_heap(items_.begin(), items_.end(), beats);
    } else if (beats(c, items_.front())) {
      std::pop_heap(items_.begin(), items_.end(), beats);
      items_.back() = c;
      std::push_heap(items_.begin(), items_.end(), beats);
    }
  }

  const std::vector<Candidate>& items() const { return items_; }

 private:
  int64_t k_;
  std::vector<Candidate> items_;
};

constexpr int64_t kRowBlock = 256;     // rows scored together
constexpr int kTileRows = 6;           // rows per register tile (many-query path)
constexpr int kMinQueriesForTile = 4;  // from here on, one row load feeds many queries

// Scores R consecutive rows against one query. Every row goes through the same
// sequence of operations whatever R is, so equal rows get equal scores.
// NV > 0: d == NV * W, known at compile time, so the query stays in registers.
// NV == 0: any d. Both run the same operations in the same order for a row.
template <int R, bool L2, int NV, typename T>
inline void score_rows(const T* rows, int64_t d, const float* q, float* keys) {
  vf acc[R];
  if constexpr (NV > 0) {
    vf qv[NV];
    for (int u = 0; u < NV; ++u) qv[u] = vload(q + u * W);
    // Row by row, so loads stream through memory in order; out-of-order
    // execution still overlaps the rows' independent FMA chains.
    // Two chains per row halve the FMA latency each row waits for.
    for (int i = 0; i < R; ++i) {
      const T* row = rows + i * d;
      vf sum[2] = {vzero(), vzero()};
      for (int u = 0; u < NV; ++u) {
        vf v = vload(row + u * W);
        if (L2) {
          v = v - qv[u];
          sum[u & 1] = vfma(v, v, sum[u & 1]);
        } else {
          sum[u & 1] = vfma(v, qv[u], sum[u & 1]);
        }
      }
      acc[i] = sum[0] + sum[1];
    }
  } else {
    // The query's partial tail is the same for every row: loaded once.
    const int64_t full = d - d % W;
    const vf q_tail = full < d ? vload_partial(q + full, static_cast<int>(d - full)) : vzero();
    for (int i = 0; i < R; ++i) {
      const T* row = rows + i * d;
      vf sum = vzero();
      int64_t t = 0;
      for (; t + W <= d; t += W) {
        vf v = vload(row + t);
        const vf qv = vload(q + t);
        if (L2) {
          v = v - qv;
          sum = vfma(v, v, sum);
        } else {
          sum = vfma(v, qv, sum);
        }
      }
      if (t < d) {
        vf v = vload_partial(row + t, static_cast<int>(d - t));
        const vf qv = q_tail;
        if (L2) {
          v = v - qv;
          sum = vfma(v, v, sum);
        } else {
          sum = vfma(v, qv, sum);
        }
      }
      acc[i] = sum;
    }
  }
#ifdef FENNEC_HAS_HSUM_ROWS
  if constexpr (R == W) {
    vf sums = hsum_rows(acc);
    if (L2) sums = vzero() - sums;
    std::memcpy(keys, &sums, sizeof sums);
    return;
  }
#endif
  for (int i = 0; i < R; ++i) keys[i] = L2 ? -hsum(acc[i]) : hsum(acc[i]);
}

// Rows per call of score_rows in the few-query path. With a multi-row
// reduction every row, the tail included, must go through groups of this size.
#ifdef FENNEC_HAS_HSUM_ROWS
constexpr int kRowGroup = W;
#else
constexpr int kRowGroup = 4;
#endif

// Per-worker scratch.
template <typename T>
struct Scratch {
  std::vector<T> tail;            // few-query path: one zero-padded row group
  std::vector<float> keys;        // few-query path: kRowBlock keys
  std::vector<float> widened;     // tile path, float16 storage: kRowBlock x d as float32
  std::vector<float> thresholds;  // tile path: nq_padded per-query entry bars
};

template <typename T>
class TopKRunner {
 public:
  explicit TopKRunner(const TopKArgs& a) : a_(a), rows_(static_cast<const T*>(a.model_vectors)) {}

  TopKStatus run() {
    const int threads = resolve_threads(a_.threads);
    const int64_t n = a_.n;
    tile_ = a_.nq >= kMinQueriesForTile;
    const int64_t block = kRowBlock;
    // Chunks big enough to amortise scheduling, small enough to balance the workers.
    int64_t chunk = (n / (threads * 64) + block - 1) / block * block;
    chunk = std::min<int64_t>(std::max<int64_t>(chunk, block), 1 << 14);
    const int64_t n_chunks = (n + chunk - 1) / chunk;
    const int workers = static_cast<int>(std::min<int64_t>(threads, n_chunks));

    if (tile_) prepare_queries();
    heaps_.clear();
    heaps_.reserve(static_cast<size_t>(workers * a_.nq));
    for (int64_t i = 0; i < workers * a_.nq; ++i) heaps_.emplace_back(a_.k);
    scratch_.assign(static_cast<size_t>(workers), Scratch<T>{});
    for (Scratch<T>& s : scratch_) {
      if (tile_) {
        if (!std::is_same_v<T, float>) s.widened.resize(static_cast<size_t>(kRowBlock * a_.d));
        // Padding lanes get +inf so no key ever passes them.
        s.thresholds.assign(static_cast<size_t>(nq_padded_), std::numeric_limits<float>::infinity());
        std::fill(s.thresholds.begin(), s.thresholds.begin() + a_.nq,
                  -std::numeric_limits<float>::infinity());
      } else {
        s.keys.resize(static_cast<size_t>(kRowBlock));
      }
    }

    parallel_for(n_chunks, workers, [&](int64_t c, int worker) {
      if (bad_row_.load(std::memory_order_relaxed) >= 0) return;
      const int64_t begin = c * chunk;
      const int64_t end = std::min(n, begin + chunk);
      Scratch<T>& s = scratch_[static_cast<size_t>(worker)];
      BoundedHeap* heaps = &heaps_[static_cast<size_t>(worker * a_.nq)];
      for (int64_t b = begin; b < end; b += block) {
        const int64_t rows = std::min(block, end - b);
        if (tile_) {
          score_block_tiled(b, rows, s, heaps);
        } else {
          score_block_rowwise(b, rows, s, heaps);
        }
        if (bad_row_.load(std::memory_order_relaxed) >= 0) return;
      }
    });

    TopKStatus status;
    status.bad_row = bad_row_.load();
    if (status.bad_row >= 0) return status;
    merge(workers);
    return status;
  }

 private:
  bool skipped(int64_t row) const { return a_.skip != nullptr && a_.skip[row] != 0; }

  // Offers a block of keys to a heap; flags the first non-finite score of a kept row.
  void offer_block(const float* keys, int64_t first_row, int64_t rows, BoundedHeap& heap) {
    float thr = heap.threshold();
    for (int64_t r = 0; r < rows; ++r) {
      const float key = keys[r];
      // The common case; NaN fails it and -inf is caught by the second test.
      if (key < thr && key >= -std::numeric_limits<float>::max()) continue;
      const int64_t row = first_row + r;
      if (skipped(row)) continue;
      if (!std::isfinite(key)) {
        report_bad(row);
        continue;
      }
      heap.offer(key, row);
      thr = heap.threshold();
    }
  }

  void report_bad(int64_t row) {
    int64_t cur = bad_row_.load();
    while ((cur < 0 || row < cur) && !bad_row_.compare_exchange_weak(cur, row)) {
    }
  }

  void prepare_queries() {
    const int64_t d = a_.d;
    nq_padded_ = (a_.nq + 2 * W - 1) / (2 * W) * (2 * W);
    queries_t_.assign(static_cast<size_t>(d * nq_padded_), 0.0f);
    query_norms_.assign(static_cast<size_t>(nq_padded_), 0.0f);
    for (int64_t qi = 0; qi < a_.nq; ++qi) {
      const float* q = a_.queries + qi * d;
      for (int64_t t = 0; t < d; ++t) queries_t_[static_cast<size_t>(t * nq_padded_ + qi)] = q[t];
      score_rows<1, false, 0>(q, d, q, &query_norms_[static_cast<size_t>(qi)]);
    }
  }

  template <bool L2>
  void score_rowwise(const T* rows, int64_t count, const float* q, Scratch<T>& s) {
    switch (a_.d == W * (a_.d / W) ? a_.d / W : 0) {
      case 1: return score_rowwise_fixed<L2, 1>(rows, count, q, s);
      case 2: return score_rowwise_fixed<L2, 2>(rows, count, q, s);
      case 4: return score_rowwise_fixed<L2, 4>(rows, count, q, s);
      case 8: return score_rowwise_fixed<L2, 8>(rows, count, q, s);
      default: return score_rowwise_fixed<L2, 0>(rows, count, q, s);
    }
  }

  template <bool L2, int NV>
  void score_rowwise_fixed(const T* rows, int64_t count, const float* q, Scratch<T>& s) {
    const int64_t d = a_.d;
    float* keys = s.keys.data();
    int64_t r = 0;
    for (; r + kRowGroup <= count; r += kRowGroup)
      score_rows<kRowGroup, L2, NV>(rows + r * d, d, q, keys + r);
    if (r == count) return;
#ifdef FENNEC_HAS_HSUM_ROWS
    // The tail goes through a zero-padded full group, for the same additions.
    s.tail.assign(static_cast<size_t>(kRowGroup * d), T{});
    std::copy(rows + r * d, rows + count * d, s.tail.begin());
    float group_keys[kRowGroup];
    score_rows<kRowGroup, L2, NV>(s.tail.data(), d, q, group_keys);
    std::copy(group_keys, group_keys + (count - r), keys + r);
#else
    for (; r < count; ++r) score_rows<1, L2, NV>(rows + r * d, d, q, keys + r);
#endif
  }

  void score_block_rowwise(int64_t first_row, int64_t rows, Scratch<T>& s, BoundedHeap* heaps) {
    const T* block = rows_ + first_row * a_.d;
    for (int64_t qi = 0; qi < a_.nq; ++qi) {
      const float* q = a_.queries + qi * a_.d;
      if (a_.metric == Metric::L2) {
        score_rowwise<true>(block, rows, q, s);
      } else {
        score_rowwise<false>(block, rows, q, s);
      }
      offer_block(s.keys.data(), first_row, rows, heaps[qi]);
    }
  }

  // Many queries: queries are transposed once to d x nq_padded, so one
  // broadcast row value feeds 2W queries, and keys come out per row as vectors
  // over queries, checked against a vector of per-query thresholds. Each (row,
  // query) score is a plain FMA chain over t, whatever the tile shape.
  void score_block_tiled(int64_t first_row, int64_t rows, Scratch<T>& s, BoundedHeap* heaps) {
    const int64_t d = a_.d;
    const float* block;
    if constexpr (std::is_same_v<T, float>) {
      block = rows_ + first_row * d;
    } else {
      const T* src = rows_ + first_row * d;
      float* dst = s.widened.data();
      const int64_t total = rows * d;
      int64_t i = 0;
      for (; i + W <= total; i += W) {
        const vf v = vload(src + i);
        std::memcpy(dst + i, &v, sizeof v);
      }
      for (; i < total; ++i) dst[i] = to_float(src[i]);
      block = dst;
    }
    for (int64_t q0 = 0; q0 < nq_padded_; q0 += 2 * W) {
      int64_t r = 0;
      for (; r + kTileRows <= rows; r += kTileRows) tile<kTileRows>(block, first_row, r, q0, s, heaps);
      for (; r < rows; ++r) tile<1>(block, first_row, r, q0, s, heaps);
    }
  }

  template <int R>
  void tile(const float* block, int64_t first_row, int64_t r0, int64_t q0, Scratch<T>& s,
            BoundedHeap* heaps) {
    const int64_t d = a_.d;
    const float* qt = queries_t_.data() + q0;
    vf acc[R][2];
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = vzero();
    for (int64_t t = 0; t < d; ++t) {
      const vf qa = vload(qt + t * nq_padded_);
      const vf qb = vload(qt + t * nq_padded_ + W);
      for (int i = 0; i < R; ++i) {
        const vf v = vset1(block[(r0 + i) * d + t]);
        acc[i][0] = vfma(v, qa, acc[i][0]);
        acc[i][1] = vfma(v, qb, acc[i][1]);
      }
    }
    float* thr = s.thresholds.data() + q0;
    const vf thr_a = vload(thr), thr_b = vload(thr + W);
    for (int i = 0; i < R; ++i) {
      vf key_a = acc[i][0], key_b = acc[i][1];
      if (a_.metric == Metric::L2) {
        // ||v||^2 + ||q||^2 - 2 v.q; rounding may dip below zero (clamped, NaN kept).
        const float norm = row_norm(block + (r0 + i) * d);
        key_a = l2_key(key_a, norm, query_norms_.data() + q0);
        key_b = l2_key(key_b, norm, query_norms_.data() + q0 + W);
      }
      // Lanes not below their threshold, NaN or -inf need a look; usually none.
      const vf lowest = vset1(-std::numeric_limits<float>::max());
      if (!any_lane(~(key_a < thr_a) | ~(key_b < thr_b) | (key_a < lowest) | (key_b < lowest)))
        continue;
      float keys[2 * W];
      std::memcpy(keys, &key_a, sizeof key_a);
      std::memcpy(keys + W, &key_b, sizeof key_b);
      const int64_t row = first_row + r0 + i;
      const int64_t lanes = std::min<int64_t>(2 * W, a_.nq - q0);
      for (int64_t j = 0; j < lanes; ++j) {
        if (keys[j] < thr[j] && keys[j] >= -std::numeric_limits<float>::max()) continue;
        if (skipped(row)) break;
        if (!std::isfinite(keys[j])) {
          report_bad(row);
          break;
        }
        BoundedHeap& heap = heaps[q0 + j];
        heap.offer(keys[j], row);
        thr[j] = heap.threshold();
      }
    }
  }

  float row_norm(const float* row) const {
    float norm;
    score_rows<1, false, 0>(row, a_.d, row, &norm);
    return norm;
  }

  static vf l2_key(vf dot, float row_norm, const float* query_norms) {
    vf dist = vload(query_norms) + row_norm - vset1(2.0f) * dot;
    dist = dist < vzero() ? vzero() : dist;
    return vzero() - dist;
  }

  void merge(int workers) {
    std::vector<Candidate> all;
    for (int64_t qi = 0; qi < a_.nq; ++qi) {
      all.clear();
      for (int w = 0; w < workers; ++w) {
        const auto& items = heaps_[static_cast<size_t>(w * a_.nq + qi)].items();
        all.insert(all.end(), items.begin(), items.end());
      }
      const int64_t k = std::min<int64_t>(a_.k, static_cast<int64_t>(all.size()));
      std::partial_sort(all.begin(), all.begin() + k, all.end(), beats);
      for (int64_t j = 0; j < a_.k; ++j) {
        const bool have = j < k;
        const float key = have ? all[j].key : std::numeric_limits<float>::quiet_NaN();
        a_.out_scores[qi * a_.k + j] = a_.metric == Metric::L2 ? 0.0f - key : key;
        a_.out_indices[qi * a_.k + j] = have ? all[j].index : -1;
      }
    }
  }

  const TopKArgs& a_;
  const T* rows_;
  bool tile_ = false;
  int64_t nq_padded_ = 0;
  std::vector<float> queries_t_;   // d x nq_padded_, zero-padded
  std::vector<float> query_norms_;
  std::vector<BoundedHeap> heaps_;
  std::vector<Scratch<T>> scratch_;
  std::atomic<int64_t> bad_row_{-1};
};

template <typename T>
double stream_sum_impl(const TopKArgs& a) {
  const T* data = static_cast<const T*>(a.model_vectors);
  const int64_t total = a.n * a.d;
  const int64_t chunk = 1 << 18;
  const int64_t n_chunks = (total + chunk - 1) / chunk;
  const int threads = resolve_threads(a.threads);
  std::vector<double> partial(static_cast<size_t>(threads), 0.0);
  parallel_for(n_chunks, threads, [&](int64_t c, int worker) {
    const int64_t begin = c * chunk, end = std::min(total, begin + chunk);
    vf acc[4] = {vzero(), vzero(), vzero(), vzero()};
    int64_t i = begin;
    for (; i + 4 * W <= end; i += 4 * W)
      for (int u = 0; u < 4; ++u) acc[u] = acc[u] + vload(data + i + u * W);
    float tail = 0.0f;
    for (; i < end; ++i) tail += to_float(data[i]);
    partial[static_cast<size_t>(worker)] += hsum(acc[0] + acc[1] + acc[2] + acc[3]) + tail;
  });
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

}  // namespace

TopKStatus topk(const TopKArgs& args) {
  if (args.storage == Storage::F16) return TopKRunner<half_t>(args).run();
  return TopKRunner<float>(args).run();
}

// Reads every element once with the same workers and loads as topk: the
// memory-bandwidth floor that benchmarks hold topk against.
double stream_sum(const TopKArgs& args) {
  if (args.storage == Storage::F16) return stream_sum_impl<half_t>(args);
  return stream_sum_impl<float>(args);
}

}  // namespace FENNEC_ISA_NS
}  // namespace cpu
}  // namespace fennec
