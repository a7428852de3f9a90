// Weisfeiler-Lehman subtree features of labelled graphs, hashed into fixed buckets.
#pragma once
#include <cstdint>
#include <string_view>

#include "fennec/common.h"

namespace fennec {

enum class WLDirection : int { Undirected = 0, Out = 1, Both = 2 };

// A batch of graphs in one compact CSR form.
//   graph_offsets[g]..graph_offsets[g+1] are the nodes of graph g (global ids);
//   node_labels[v] is the initial 64-bit label of node v;
//   edge_offsets[g]..edge_offsets[g+1] are the edges of graph g in edges_src/edges_dst,
//   given as node ids local to their graph.
// n_nodes and n_edges are the lengths of the arrays, so the core can check the
// offsets against them before it reads anything.
struct WLArgs {
  int64_t n_graphs = 0;
  int64_t n_nodes = 0;                     // length of node_labels
  int64_t n_edges = 0;                     // length of edges_src and edges_dst
  const int64_t* graph_offsets = nullptr;  // n_graphs + 1
  const uint64_t* node_labels = nullptr;   // graph_offsets[n_graphs]
  const int64_t* edge_offsets = nullptr;   // n_graphs + 1
  const int64_t* edges_src = nullptr;      // edge_offsets[n_graphs]
  const int64_t* edges_dst = nullptr;
  int iterations = 3;
  int64_t dim = 0;
  WLDirection direction = WLDirection::Undirected;
  int threads = 0;
  float* out = nullptr;  // n_graphs x dim, zero-filled by the caller
};

void wl_features_cpu(const WLArgs& args);

// The fixed 64-bit hash of a label string (documented in cpu/wl_cpu.cpp); stable across
// runs, processes and machines.
uint64_t wl_label_hash(std::string_view label);

}  // namespace fennec
