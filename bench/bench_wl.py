"""Weisfeiler-Lehman features of 1,000 computation-like graphs, against networkx.

Both sides compute 3 iterations of WL subtree hashes on the same graphs, each
from its own input already built: a GraphBatch for fennec, networkx Graphs for
`networkx.weisfeiler_lehman_subgraph_hashes` (undirected, node_attr="label").
fennec also bins the hashes into a 4096-wide feature row per graph. networkx
runs the full 1,000 graphs once (tens of seconds); fennec runs 5 rounds.
`test_fennec_wl_unpacked` also times packing the (labels, edges) lists, string
hashing included, for an end-to-end figure. The ratios are printed at the end
of the session (bench/conftest.py) and every benchmark stores its graph and
node counts in extra_info. On a shared, noisy host the wall-clock ratio swings;
the single-thread CPU-time ratio (process time of fennec with threads=1 against
networkx, both single-threaded) is printed with the table as a steadier figure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fennec.kernels import GraphBatch, wl_features

nx = pytest.importorskip("networkx")

ITERATIONS = 3
DIM = 4096
OPS = [f"op{i}" for i in range(20)]  # ~20 distinct operator types, as in a layer graph


def computation_graph(rng, n):
    """A DAG in topological order: each node reads one or two of the 8 nodes before it,
    and one in twenty also reads a node up to 64 back (a skip connection)."""
    labels = [OPS[int(i)] for i in rng.integers(0, len(OPS), n)]
    dst = np.repeat(np.arange(1, n), 1 + (rng.random(n - 1) < 0.3))
    reach = np.where(rng.random(len(dst)) < 0.05, 64, 8)
    src = dst - 1 - (rng.random(len(dst)) * np.minimum(dst, reach)).astype(np.int64)
    return labels, np.stack([src, dst], axis=1)


def graph_set(sizes, seed):
    rng = np.random.default_rng(seed)
    graphs = [computation_graph(rng, int(n)) for n in sizes]
    as_nx = []
    for labels, edges in graphs:
        graph = nx.Graph()
        graph.add_nodes_from((i, {"label": label}) for i, label in enumerate(labels))
        graph.add_edges_from(edges.tolist())
        as_nx.append(graph)
    return graphs, GraphBatch.from_graphs(graphs), as_nx


@pytest.fixture(scope="module")
def mixed():
    """1,000 graphs of 50 to 1,500 nodes (about 775,000 nodes in all)."""
    return graph_set(np.random.default_rng(0).integers(50, 1501, 1000), 1)


@pytest.fixture(scope="module")
def small():
    """1,000 graphs of 300 nodes."""
    return graph_set(np.full(1000, 300), 2)


_CPU_SECONDS = {}  # benchmark name -> process time per call, for the CPU-time ratio


def timed_cpu(benchmark, name, fn, args, kwargs, rounds, warmup_rounds=0):
    start = time.process_time()
    result = benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, warmup_rounds=warmup_rounds)
    _CPU_SECONDS[name] = (time.process_time() - start) / (rounds + warmup_rounds)
    benchmark.extra_info["cpu_s_per_call"] = _CPU_SECONDS[name]
    return result


def report_cpu_ratio(extra_report, what, slow, fast):
    if slow in _CPU_SECONDS and fast in _CPU_SECONDS:
        extra_report[f"{what}: CPU-time ratio, 1 thread"] = f"{_CPU_SECONDS[slow] / _CPU_SECONDS[fast]:.1f}x"


def describe(benchmark, batch):
    benchmark.extra_info.update(graphs=len(batch), nodes=int(batch.graph_offsets[-1]),
                                edges=int(batch.edge_offsets[-1]), iterations=ITERATIONS)


def check_features(features, batch):
    """Every node lands in one bucket per depth 0..ITERATIONS."""
    assert features.shape == (len(batch), DIM) and features.dtype == np.float32
    np.testing.assert_array_equal(features.sum(1), np.diff(batch.graph_offsets) * (ITERATIONS + 1))


def run_networkx(graphs):
    return [nx.weisfeiler_lehman_subgraph_hashes(g, node_attr="label", iterations=ITERATIONS) for g in graphs]


def check_hashes(hashes, graphs):
    assert len(hashes) == len(graphs)
    assert all(len(h) == g.number_of_nodes() and all(len(x) == ITERATIONS for x in h.values())
               for h, g in zip(hashes, graphs))


@pytest.mark.benchmark(group="wl")
def test_fennec_wl(benchmark, mixed):
    _, batch, _ = mixed
    describe(benchmark, batch)
    features = benchmark.pedantic(wl_features, args=(batch, ITERATIONS, DIM), kwargs={"threads": 2},
                                  rounds=5, warmup_rounds=1)
    check_features(features, batch)


@pytest.mark.benchmark(group="wl")
def test_fennec_wl_1thread(benchmark, mixed):
    _, batch, _ = mixed
    describe(benchmark, batch)
    features = timed_cpu(benchmark, "fennec_wl", wl_features, (batch, ITERATIONS, DIM), {"threads": 1}, 5, 1)
    check_features(features, batch)


@pytest.mark.benchmark(group="wl")
def test_fennec_wl_unpacked(benchmark, mixed):
    graphs, batch, _ = mixed
    describe(benchmark, batch)
    features = benchmark.pedantic(wl_features, args=(graphs, ITERATIONS, DIM), kwargs={"threads": 2},
                                  rounds=3, warmup_rounds=1)
    check_features(features, batch)


@pytest.mark.benchmark(group="wl")
def test_networkx_wl(benchmark, mixed, extra_report):
    _, batch, graphs = mixed
    describe(benchmark, batch)
    check_hashes(timed_cpu(benchmark, "networkx_wl", run_networkx, (graphs,), {}, 1), graphs)
    report_cpu_ratio(extra_report, "wl_features vs networkx (1,000 graphs, 50-1,500 nodes)", "networkx_wl", "fennec_wl")


@pytest.mark.benchmark(group="wl_300")
def test_fennec_wl_300(benchmark, small):
    _, batch, _ = small
    describe(benchmark, batch)
    features = benchmark.pedantic(wl_features, args=(batch, ITERATIONS, DIM), kwargs={"threads": 2},
                                  rounds=5, warmup_rounds=1)
    check_features(features, batch)
    start = time.process_time()
    for _ in range(5):
        wl_features(batch, ITERATIONS, DIM, threads=1)
    _CPU_SECONDS["fennec_wl_300"] = (time.process_time() - start) / 5


@pytest.mark.benchmark(group="wl_300")
def test_networkx_wl_300(benchmark, small, extra_report):
    _, batch, graphs = small
    describe(benchmark, batch)
    check_hashes(timed_cpu(benchmark, "networkx_wl_300", run_networkx, (graphs,), {}, 1), graphs)
    report_cpu_ratio(extra_report, "wl_features vs networkx (1,000 graphs of 300 nodes)", "networkx_wl_300",
                     "fennec_wl_300")
