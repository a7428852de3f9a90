// Weisfeiler-Lehman subtree features of labelled graphs.
//
// The hash is fixed so that features are identical across runs, processes and
// machines (no std::hash, no pointer values, no dependence on thread count).
// All arithmetic is on uint64 modulo 2^64:
//
//   mix(x)          = splitmix64 finaliser: x += 0x9E3779B97F4A7C15;
//                     x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
//                     x = (x ^ (x >> 27)) * 0x94D049BB133111EB; x ^ (x >> 31)
//   label_hash(s)   = mix(FNV-1a-64 of the UTF-8 bytes of s)
//                     (FNV-1a-64: h = 0xCBF29CE484222325; per byte b: h = (h ^ b) * 0x100000001B3)
//   fold(h, ys)     = for y in ys, ascending: h = mix(h ^ y); then h
//   label_0(v)      = the node's initial label (label_hash of a string label)
//   label_i(v)      = fold(mix(label_{i-1}(v) ^ (i * 0xD6E8FEB86659FD93)), N_{i-1}(v))  for i >= 1
//                     where N_{i-1}(v) = the labels_{i-1} of v's neighbours, sorted;
//                     direction "both": h = fold(.., labels of in-neighbours),
//                     h = mix(h ^ 0x5851F42D4C957F2D), then h = fold(h, labels of out-neighbours)
//   bucket_i(v)     = mix(label_i(v) ^ (i * 0xA0761D6478BD642F)) mod dim
//
// Row g of the output counts, for i = 0..iterations, every node v of graph g in
// bucket_i(v) (exact while a bucket holds fewer than 2^24 counts). Neighbours
// follow networkx: a graph has no parallel edges (repeated edges collapse) and a
// self-loop makes a node its own neighbour (its own in- and out-neighbour when directed).
#include <algorithm>
#include <string>
#include <vector>

#include "fennec/wl.h"
#include "parallel.h"

namespace fennec {
namespace {

inline uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

constexpr uint64_t kIterationSalt = 0xD6E8FEB86659FD93ULL;
constexpr uint64_t kBucketSalt = 0xA0761D6478BD642FULL;
constexpr uint64_t kDirectionSeparator = 0x5851F42D4C957F2DULL;

// Neighbour lists of one graph in CSR form, each list without repeats.
struct Adjacency {
  std::vector<int64_t> offsets;
  std::vector<int64_t> targets;
};

// Per-worker scratch, reused from graph to graph so that steady state allocates nothing.
struct Workspace {
  Adjacency out, in;
  std::vector<int64_t> cursor, last_source;
  std::vector<uint64_t> current, next, neighbour_labels;
};

// Counting sort of the arcs source -> target by source, then one pass that keeps
// the first copy of each target per source (last_source[u] == v marks u as seen).
// symmetric adds target -> source for every non-loop edge; the in-lists pass src and dst swapped.
void build_adjacency(const int64_t* src, const int64_t* dst, int64_t n_edges, int64_t n, bool symmetric,
                     Adjacency& adj, Workspace& w) {
  std::vector<int64_t>& offsets = adj.offsets;
  offsets.assign(static_cast<size_t>(n + 1), 0);
  for (int64_t e = 0; e < n_edges; ++e) {
    ++offsets[src[e] + 1];
    if (symmetric && src[e] != dst[e]) ++offsets[dst[e] + 1];
  }
  for (int64_t v = 0; v < n; ++v) offsets[v + 1] += offsets[v];
  adj.targets.resize(static_cast<size_t>(offsets[n]));
  int64_t* targets = adj.targets.data();
  w.cursor.assign(offsets.begin(), offsets.end() - 1);
  int64_t* cursor = w.cursor.data();
  for (int64_t e = 0; e < n_edges; ++e) {
    const int64_t s = src[e], t = dst[e];
    targets[cursor[s]++] = t;
    if (symmetric && s != t) targets[cursor[t]++] = s;
  }
  w.last_source.assign(static_cast<size_t>(n), -1);
  int64_t* last_source = w.last_source.data();
  int64_t write = 0, begin = 0;
  for (int64_t v = 0; v < n; ++v) {
    const int64_t end = offsets[v + 1];
    offsets[v] = write;
    for (int64_t k = begin; k < end; ++k) {
      const int64_t u = targets[k];
      if (last_source[u] != v) {
        last_source[u] = v;
        targets[write++] = u;
      }
    }
    begin = end;
  }
  offsets[n] = write;
}

// Folds the labels of v's neighbours into h in ascending order, so the result
// does not depend on the order in which edges were given.
inline uint64_t fold(uint64_t h, const Adjacency& adj, int64_t v, const uint64_t* labels,
                     std::vector<uint64_t>& scratch) {
  const int64_t begin = adj.offsets[v], degree = adj.offsets[v + 1] - begin;
  const int64_t* targets = adj.targets.data() + begin;
  if (degree <= 4) {
    // Most nodes of a layer graph have at most four neighbours: a branch-free
    // sorting network over the labels, padded with the largest value (it sorts last).
    uint64_t x[4];
    for (int64_t i = 0; i < 4; ++i) x[i] = i < degree ? labels[targets[i]] : ~uint64_t{0};
    auto order = [&x](int p, int q) {
      const uint64_t lo = std::min(x[p], x[q]), hi = std::max(x[p], x[q]);
      x[p] = lo;
      x[q] = hi;
    };
    order(0, 1), order(2, 3), order(0, 2), order(1, 3), order(1, 2);
    for (int64_t i = 0; i < degree; ++i) h = mix(h ^ x[i]);
    return h;
  }
  constexpr int64_t kSmall = 16;
  if (degree <= kSmall) {
    uint64_t few[kSmall];
    for (int64_t i = 0; i < degree; ++i) {
      const uint64_t y = labels[targets[i]];
      int64_t j = i;
      for (; j > 0 && few[j - 1] > y; --j) few[j] = few[j - 1];
      few[j] = y;
    }
    for (int64_t i = 0; i < degree; ++i) h = mix(h ^ few[i]);
    return h;
  }
  scratch.resize(static_cast<size_t>(degree));
  for (int64_t i = 0; i < degree; ++i) scratch[i] = labels[targets[i]];
  std::sort(scratch.begin(), scratch.end());
  for (uint64_t y : scratch) h = mix(h ^ y);
  return h;
}

void features_of_graph(const WLArgs& a, int64_t g, Workspace& w) {
  const int64_t first = a.graph_offsets[g];
  const int64_t n = a.graph_offsets[g + 1] - first;
  float* row = a.out + g * a.dim;
  const uint64_t dim = static_cast<uint64_t>(a.dim);
  const uint64_t* labels = a.node_labels + first;
  for (int64_t v = 0; v < n; ++v) row[mix(labels[v]) % dim] += 1.0f;  // i = 0: bucket salt 0
  if (a.iterations == 0 || n == 0) return;

  const int64_t e0 = a.edge_offsets[g], n_edges = a.edge_offsets[g + 1] - e0;
  const int64_t* src = a.edges_src + e0;
  const int64_t* dst = a.edges_dst + e0;
  const bool both = a.direction == WLDirection::Both;
  build_adjacency(src, dst, n_edges, n, a.direction == WLDirection::Undirected, w.out, w);
  if (both) build_adjacency(dst, src, n_edges, n, false, w.in, w);

  w.current.assign(labels, labels + n);
  w.next.resize(static_cast<size_t>(n));
  for (int i = 1; i <= a.iterations; ++i) {
    const uint64_t salt = static_cast<uint64_t>(i) * kIterationSalt;
    const uint64_t bucket_salt = static_cast<uint64_t>(i) * kBucketSalt;
    const uint64_t* current = w.current.data();
    uint64_t* next = w.next.data();
    for (int64_t v = 0; v < n; ++v) {
      uint64_t h = mix(current[v] ^ salt);
      if (both) {
        h = fold(h, w.in, v, current, w.neighbour_labels);
        h = mix(h ^ kDirectionSeparator);
      }
      h = fold(h, w.out, v, current, w.neighbour_labels);
      next[v] = h;
    }
    // Binning in its own pass keeps each node's hash chain short, so more of them overlap.
    for (int64_t v = 0; v < n; ++v) row[mix(next[v] ^ bucket_salt) % dim] += 1.0f;
    w.current.swap(w.next);
  }
}

std::string graph_name(int64_t g) { return "graph " + std::to_string(g) + ": "; }

// Offsets first, so that no later check or kernel reads past an array.
void check_args(const WLArgs& a) {
  FENNEC_CHECK(a.n_graphs >= 0, "n_graphs must be >= 0, got " + std::to_string(a.n_graphs));
  FENNEC_CHECK(a.n_nodes >= 0 && a.n_edges >= 0, "n_nodes and n_edges must be >= 0");
  FENNEC_CHECK(a.iterations >= 0, "iterations must be >= 0, got " + std::to_string(a.iterations));
  FENNEC_CHECK(a.dim >= 1, "dim must be >= 1, got " + std::to_string(a.dim));
  FENNEC_CHECK(a.graph_offsets != nullptr && a.edge_offsets != nullptr, "null offsets");
  FENNEC_CHECK(a.n_graphs == 0 || a.out != nullptr, "null output buffer");
  FENNEC_CHECK(a.n_nodes == 0 || a.node_labels != nullptr, "null node_labels");
  FENNEC_CHECK(a.n_edges == 0 || (a.edges_src != nullptr && a.edges_dst != nullptr), "null edges");
  FENNEC_CHECK(a.graph_offsets[0] == 0, "graph_offsets must start at 0, got " + std::to_string(a.graph_offsets[0]));
  FENNEC_CHECK(a.edge_offsets[0] == 0, "edge_offsets must start at 0, got " + std::to_string(a.edge_offsets[0]));
  for (int64_t g = 0; g < a.n_graphs; ++g) {
    FENNEC_CHECK(a.graph_offsets[g + 1] >= a.graph_offsets[g],
                 graph_name(g) + "graph_offsets decrease (" + std::to_string(a.graph_offsets[g]) + " then " +
                     std::to_string(a.graph_offsets[g + 1]) + ")");
    FENNEC_CHECK(a.edge_offsets[g + 1] >= a.edge_offsets[g],
                 graph_name(g) + "edge_offsets decrease (" + std::to_string(a.edge_offsets[g]) + " then " +
                     std::to_string(a.edge_offsets[g + 1]) + ")");
  }
  FENNEC_CHECK(a.graph_offsets[a.n_graphs] == a.n_nodes,
               "graph_offsets end at " + std::to_string(a.graph_offsets[a.n_graphs]) + " but there are " +
                   std::to_string(a.n_nodes) + " node labels");
  FENNEC_CHECK(a.edge_offsets[a.n_graphs] == a.n_edges,
               "edge_offsets end at " + std::to_string(a.edge_offsets[a.n_graphs]) + " but there are " +
                   std::to_string(a.n_edges) + " edges");
  for (int64_t g = 0; g < a.n_graphs; ++g) {
    const int64_t n = a.graph_offsets[g + 1] - a.graph_offsets[g];
    for (int64_t e = a.edge_offsets[g]; e < a.edge_offsets[g + 1]; ++e) {
      const int64_t s = a.edges_src[e], t = a.edges_dst[e];
      if (s >= 0 && s < n && t >= 0 && t < n) continue;
      const int64_t bad = (s >= 0 && s < n) ? t : s;
      FENNEC_CHECK(false, graph_name(g) + "edge (" + std::to_string(s) + ", " + std::to_string(t) +
                              ") refers to node " + std::to_string(bad) + " but the graph has " +
                              std::to_string(n) + " nodes");
    }
  }
}

}  // namespace

uint64_t wl_label_hash(std::string_view label) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : label) {
    h ^= c;
    h *= 0x100000001B3ULL;  // FNV-1a 64 prime
  }
  return mix(h);
}

void wl_features_cpu(const WLArgs& a) {
  check_args(a);
  // Several graphs per task keep the scheduling cost small next to a graph of 50 nodes.
  constexpr int64_t kGraphsPerTask = 8;
  const int64_t n_tasks = (a.n_graphs + kGraphsPerTask - 1) / kGraphsPerTask;
  if (n_tasks == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(resolve_threads(a.threads), n_tasks));
  std::vector<Workspace> workspaces(static_cast<size_t>(threads));
  parallel_for(n_tasks, threads, [&](int64_t task, int worker) {
    const int64_t end = std::min(a.n_graphs, (task + 1) * kGraphsPerTask);
    for (int64_t g = task * kGraphsPerTask; g < end; ++g) features_of_graph(a, g, workspaces[worker]);
  });
}

}  // namespace fennec
