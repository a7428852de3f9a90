// Weisfeiler-Lehman subtree features of labelled graphs.
//
// The hash is fixed so that features are identical across runs, processes and
// machines (no std::hash, no pointer values, no dependence on thread count):
//
//   mix(x)          = splitmix64 finaliser: x += 0x9E3779B97F4A7C15;
//                     x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
//                     x = (x ^ (x >> 27)) * 0x94D049BB133111EB; x ^ (x >> 31)
//   label_hash(s)   = mix(FNV-1a-64 of the UTF-8 bytes of s)
//   fold(h, ys)     = for y in ys (ascending): h = mix(h ^ y); h
//   label_i(v)      = label_0(v) = the node's label, for i = 0;
//                     fold(mix(label_{i-1}(v) ^ (i * 0xD6E8FEB86659FD93)),
//                          sorted labels_{i-1} of v's neighbours)        for i >= 1
//                     (direction "both": fold the in-neighbours, then
//                      h = mix(h ^ 0x5851F42D4C957F2D), then fold the out-neighbours)
//   bucket_i(v)     = mix(label_i(v) ^ (i * 0xA0761D6478BD642F)) mod dim
//
// Row g of the output counts, for i = 0..iterations, every node v of graph g in
// bucket_i(v). Neighbours follow networkx: an undirected graph has no parallel
// edges (duplicates collapse) and a self-loop makes a node its own neighbour.
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

// Sorted, de-duplicated adjacency of one graph in CSR form.
struct Adjacency {
  std::vector<int64_t> offsets;
  std::vector<int64_t> targets;

  void build(int64_t n, const std::vector<std::pair<int64_t, int64_t>>& arcs) {
    offsets.assign(static_cast<size_t>(n + 1), 0);
    for (const auto& arc : arcs) ++offsets[arc.first + 1];
    for (int64_t v = 0; v < n; ++v) offsets[v + 1] += offsets[v];
    targets.resize(arcs.size());
    std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
    for (const auto& arc : arcs) targets[fill[arc.first]++] = arc.second;
    // Sort and drop repeats per node, compacting in place.
    int64_t write = 0;
    for (int64_t v = 0; v < n; ++v) {
      auto begin = targets.begin() + offsets[v], end = targets.begin() + offsets[v + 1];
      std::sort(begin, end);
      auto last = std::unique(begin, end);
      const int64_t start = write;
      for (auto it = begin; it != last; ++it) targets[write++] = *it;
      offsets[v] = start;
    }
    offsets[n] = write;
    targets.resize(static_cast<size_t>(write));
  }
};

struct Workspace {
  std::vector<std::pair<int64_t, int64_t>> arcs;
  Adjacency out, in;
  std::vector<uint64_t> current, next, neighbour_labels;
};

void check_graph(const WLArgs& a, int64_t g) {
  const int64_t n = a.graph_offsets[g + 1] - a.graph_offsets[g];
  const int64_t e0 = a.edge_offsets[g], e1 = a.edge_offsets[g + 1];
  FENNEC_CHECK(n >= 0, "graph " + std::to_string(g) + ": node offsets decrease");
  FENNEC_CHECK(e1 >= e0, "graph " + std::to_string(g) + ": edge offsets decrease");
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t s = a.edges_src[e], t = a.edges_dst[e];
    FENNEC_CHECK(s >= 0 && s < n && t >= 0 && t < n,
                 "graph " + std::to_string(g) + ": edge (" + std::to_string(s) + ", " + std::to_string(t) +
                     ") refers to a node outside [0, " + std::to_string(n) + ")");
  }
}

uint64_t fold(uint64_t h, const Adjacency& adj, int64_t v, const std::vector<uint64_t>& labels,
              std::vector<uint64_t>& scratch) {
  const int64_t begin = adj.offsets[v], degree = adj.offsets[v + 1] - begin;
  constexpr int64_t kSmall = 16;
  if (degree <= kSmall) {
    // Most nodes of a layer graph have a handful of neighbours: sort on the stack.
    uint64_t few[kSmall];
    for (int64_t i = 0; i < degree; ++i) {
      const uint64_t y = labels[adj.targets[begin + i]];
      int64_t j = i;
      for (; j > 0 && few[j - 1] > y; --j) few[j] = few[j - 1];
      few[j] = y;
    }
    for (int64_t i = 0; i < degree; ++i) h = mix(h ^ few[i]);
    return h;
  }
  scratch.clear();
  for (int64_t i = 0; i < degree; ++i) scratch.push_back(labels[adj.targets[begin + i]]);
  std::sort(scratch.begin(), scratch.end());
  for (uint64_t y : scratch) h = mix(h ^ y);
  return h;
}

void features_of_graph(const WLArgs& a, int64_t g, Workspace& w) {
  const int64_t first = a.graph_offsets[g];
  const int64_t n = a.graph_offsets[g + 1] - first;
  float* row = a.out + g * a.dim;
  const uint64_t dim = static_cast<uint64_t>(a.dim);
  w.current.assign(a.node_labels + first, a.node_labels + first + n);
  for (uint64_t label : w.current) row[mix(label) % dim] += 1.0f;  // i = 0: salt 0
  if (a.iterations == 0 || n == 0) return;

  w.arcs.clear();
  for (int64_t e = a.edge_offsets[g]; e < a.edge_offsets[g + 1]; ++e) {
    const int64_t s = a.edges_src[e], t = a.edges_dst[e];
    w.arcs.emplace_back(s, t);
    if (a.direction == WLDirection::Undirected && s != t) w.arcs.emplace_back(t, s);
  }
  w.out.build(n, w.arcs);
  if (a.direction == WLDirection::Both) {
    for (auto& arc : w.arcs) std::swap(arc.first, arc.second);
    w.in.build(n, w.arcs);
  }
  w.next.resize(static_cast<size_t>(n));
  for (int i = 1; i <= a.iterations; ++i) {
    const uint64_t salt = static_cast<uint64_t>(i) * kIterationSalt;
    const uint64_t bucket_salt = static_cast<uint64_t>(i) * kBucketSalt;
    for (int64_t v = 0; v < n; ++v) {
      uint64_t h = mix(w.current[v] ^ salt);
      if (a.direction == WLDirection::Both) {
        h = fold(h, w.in, v, w.current, w.neighbour_labels);
        h = mix(h ^ kDirectionSeparator);
      }
      h = fold(h, w.out, v, w.current, w.neighbour_labels);
      w.next[v] = h;
      row[mix(h ^ bucket_salt) % dim] += 1.0f;
    }
    w.current.swap(w.next);
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
  FENNEC_CHECK(a.n_graphs >= 0, "n_graphs must be >= 0");
  FENNEC_CHECK(a.iterations >= 0, "iterations must be >= 0");
  FENNEC_CHECK(a.dim >= 1, "dim must be >= 1");
  FENNEC_CHECK(a.out != nullptr || a.n_graphs == 0, "null output buffer");
  FENNEC_CHECK(a.n_graphs == 0 || (a.graph_offsets[0] == 0 && a.edge_offsets[0] == 0),
               "offsets must start at 0");
  for (int64_t g = 0; g < a.n_graphs; ++g) check_graph(a, g);

  const int threads = resolve_threads(a.threads);
  std::vector<Workspace> workspaces(static_cast<size_t>(threads));
  const int64_t per_task = 8;  // graphs per scheduling unit
  parallel_for((a.n_graphs + per_task - 1) / per_task, threads, [&](int64_t task, int worker) {
    const int64_t end = std::min(a.n_graphs, (task + 1) * per_task);
    for (int64_t g = task * per_task; g < end; ++g) features_of_graph(a, g, workspaces[worker]);
  });
}

}  // namespace fennec
