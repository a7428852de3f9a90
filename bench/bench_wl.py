"""Weisfeiler-Lehman features of 1,000 computation-like graphs, against networkx.

Both sides get their input already built (a GraphBatch for fennec, networkx
graphs for networkx) and compute 3 iterations of WL subtree hashes on the same
graphs; fennec also bins them into feature vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from fennec.kernels import GraphBatch, wl_features

nx = pytest.importorskip("networkx")

OPS = [f"op{i}" for i in range(20)]


def computation_graph(rng, n):
    """A DAG where each node reads one or two recent nodes, like a layer graph."""
    labels = [OPS[int(i)] for i in rng.integers(0, len(OPS), n)]
    edges = []
    for v in range(1, n):
        for _ in range(1 + int(rng.random() < 0.3)):
            edges.append((int(rng.integers(max(0, v - 8), v)), v))
    return labels, np.array(edges, dtype=np.int64)


def graph_set(sizes, seed):
    rng = np.random.default_rng(seed)
    graphs = [computation_graph(rng, int(n)) for n in sizes]
    as_nx = []
    for labels, edges in graphs:
        graph = nx.Graph()
        graph.add_nodes_from((i, {"label": label}) for i, label in enumerate(labels))
        graph.add_edges_from(map(tuple, edges))
        as_nx.append(graph)
    return GraphBatch.from_graphs(graphs), as_nx


@pytest.fixture(scope="module")
def mixed():
    sizes = np.random.default_rng(0).integers(50, 1501, 1000)
    return graph_set(sizes, 1)


@pytest.fixture(scope="module")
def small():
    return graph_set(np.full(1000, 300), 2)


def run_networkx(graphs):
    return [nx.weisfeiler_lehman_subgraph_hashes(g, node_attr="label", iterations=3) for g in graphs]


@pytest.mark.benchmark(group="wl-1000-graphs-50-1500-nodes")
def test_fennec_wl(benchmark, mixed):
    batch, _ = mixed
    features = benchmark.pedantic(wl_features, args=(batch, 3, 4096), kwargs={"threads": 2},
                                  rounds=5, warmup_rounds=1)
    nodes = np.diff(batch.graph_offsets)
    np.testing.assert_array_equal(features.sum(1), nodes * 4)


@pytest.mark.benchmark(group="wl-1000-graphs-50-1500-nodes")
def test_networkx_wl(benchmark, mixed):
    _, graphs = mixed
    hashes = benchmark.pedantic(run_networkx, args=(graphs,), rounds=1, iterations=1)
    assert len(hashes) == 1000 and all(len(h) == g.number_of_nodes() for h, g in zip(hashes, graphs))


@pytest.mark.benchmark(group="wl-1000-graphs-300-nodes")
def test_fennec_wl_300(benchmark, small):
    batch, _ = small
    features = benchmark.pedantic(wl_features, args=(batch, 3, 4096), rounds=5, warmup_rounds=1)
    np.testing.assert_array_equal(features.sum(1), np.full(1000, 1200))


@pytest.mark.benchmark(group="wl-1000-graphs-300-nodes")
def test_networkx_wl_300(benchmark, small):
    _, graphs = small
    hashes = benchmark.pedantic(run_networkx, args=(graphs,), rounds=1, iterations=1)
    assert len(hashes) == 1000
