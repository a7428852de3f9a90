"""fennec.kernels.wl_features against networkx's Weisfeiler-Lehman subgraph hashes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from fennec.kernels import GraphBatch, hash_labels, wl_features

nx = pytest.importorskip("networkx")

ITERATIONS = 3
DIM = 1 << 20  # wide enough that bucket collisions do not blur the comparison


def to_fennec(graph):
    index = {v: i for i, v in enumerate(graph.nodes)}
    labels = [str(graph.nodes[v]["label"]) for v in graph.nodes]
    edges = [(index[u], index[v]) for u, v in graph.edges]
    return labels, np.array(edges, dtype=np.int64).reshape(-1, 2)


def nx_multisets(graph):
    hashes = nx.weisfeiler_lehman_subgraph_hashes(graph, node_attr="label", iterations=ITERATIONS,
                                                  include_initial_labels=True)
    return [Counter(h[depth] for h in hashes.values()) for depth in range(ITERATIONS + 1)]


def same(a, b, direction):
    features = wl_features([to_fennec(a), to_fennec(b)], ITERATIONS, DIM, direction=direction)
    return bool(np.array_equal(features[0], features[1]))


def random_graph(rng, directed, n=None):
    n = n or int(rng.integers(4, 30))
    m = int(rng.integers(n - 1, 2 * n))
    graph = nx.gnm_random_graph(n, m, seed=int(rng.integers(1 << 30)), directed=directed)
    for v in graph.nodes:
        graph.nodes[v]["label"] = "conv relu pool add".split()[int(rng.integers(4))]
    return graph


def permuted(graph, rng):
    order = rng.permutation(graph.number_of_nodes())
    return nx.relabel_nodes(graph, {v: int(order[i]) for i, v in enumerate(graph.nodes)})


def perturbed(graph, rng):
    graph = graph.copy()
    if rng.random() < 0.5:
        u, v = rng.choice(graph.number_of_nodes(), 2, replace=False)
        if graph.has_edge(u, v):
            graph.remove_edge(u, v)
        else:
            graph.add_edge(u, v)
    else:
        v = int(rng.integers(graph.number_of_nodes()))
        graph.nodes[v]["label"] = "other"
    return graph


# networkx >= 3.5 hashes a directed node from its successors and its predecessors,
# kept apart: fennec's "both" direction.
@pytest.mark.filterwarnings("ignore:The hashes produced for directed graphs changed")
@pytest.mark.parametrize("directed, direction", [(False, "undirected"), (True, "both")])
def test_equal_exactly_when_networkx_multisets_are_equal(directed, direction):
    rng = np.random.default_rng(7)
    agreed = {True: 0, False: 0}
    for _ in range(60):
        a = random_graph(rng, directed)
        for b in (permuted(a, rng), perturbed(a, rng), random_graph(rng, directed, a.number_of_nodes())):
            expected = nx_multisets(a) == nx_multisets(b)
            assert same(a, b, direction) == expected
            agreed[expected] += 1
    assert agreed[True] >= 60 and agreed[False] >= 60  # both outcomes were exercised


def test_graphs_wl_cannot_tell_apart_are_equal_for_both():
    two_triangles = nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    hexagon = nx.cycle_graph(6)
    for graph in (two_triangles, hexagon):
        nx.set_node_attributes(graph, "x", "label")
    assert nx_multisets(two_triangles) == nx_multisets(hexagon)
    assert same(two_triangles, hexagon, "undirected")


def test_self_loops_and_duplicate_edges_follow_networkx():
    loop = nx.Graph()
    loop.add_nodes_from([(0, {"label": "a"}), (1, {"label": "a"})])
    loop.add_edges_from([(0, 1), (0, 0)])
    plain = nx.Graph()
    plain.add_nodes_from([(0, {"label": "a"}), (1, {"label": "a"})])
    plain.add_edge(0, 1)
    assert (nx_multisets(loop) == nx_multisets(plain)) == same(loop, plain, "undirected")
    doubled = wl_features([(["a", "a"], [[0, 1], [0, 1], [1, 0]])], ITERATIONS, DIM)
    single = wl_features([(["a", "a"], [[0, 1]])], ITERATIONS, DIM)
    np.testing.assert_array_equal(doubled, single)


def test_out_direction_is_invariant_to_node_order_and_sees_direction():
    rng = np.random.default_rng(11)
    for _ in range(20):
        graph = random_graph(rng, True)
        assert same(graph, permuted(graph, rng), "out")
    forward = (["a", "b"], [[0, 1]])
    backward = (["a", "b"], [[1, 0]])
    features = wl_features([forward, backward], 1, DIM, direction="out")
    assert not np.array_equal(features[0], features[1])


def test_both_direction_separates_what_undirected_merges():
    chain = (["x", "x", "x"], [[0, 1], [1, 2]])
    fan_in = (["x", "x", "x"], [[0, 1], [2, 1]])
    undirected = wl_features([chain, fan_in], 2, DIM, direction="undirected")
    both = wl_features([chain, fan_in], 2, DIM, direction="both")
    assert np.array_equal(undirected[0], undirected[1])
    assert not np.array_equal(both[0], both[1])


MASK = (1 << 64) - 1


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def label_hash(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return splitmix(h)


def reference_features(labels, edges, iterations, dim):
    """The documented hash, reimplemented independently (undirected)."""
    n = len(labels)
    neighbours = [set() for _ in range(n)]
    for u, v in edges:
        neighbours[u].add(v)
        neighbours[v].add(u)
    row = np.zeros(dim)
    current = [label_hash(x) for x in labels]
    for label in current:
        row[splitmix(label) % dim] += 1
    for i in range(1, iterations + 1):
        nxt = []
        for v in range(n):
            h = splitmix(current[v] ^ ((i * 0xD6E8FEB86659FD93) & MASK))
            for y in sorted(current[u] for u in neighbours[v]):
                h = splitmix(h ^ y)
            nxt.append(h)
            row[splitmix(h ^ ((i * 0xA0761D6478BD642F) & MASK)) % dim] += 1
        current = nxt
    return row


def test_hash_is_the_documented_one():
    words = ["", "conv", "Conv2d(k=3,s=1)", "ünïcode"]
    assert hash_labels(words).tolist() == [label_hash(w) for w in words]
    labels = ["conv", "relu", "conv", "add", "pool"]
    edges = [(0, 1), (1, 2), (2, 3), (0, 3), (3, 4), (4, 4)]
    got = wl_features([(labels, edges)], 3, 997)[0]
    np.testing.assert_array_equal(got, reference_features(labels, edges, 3, 997))


def test_identical_across_processes_and_thread_counts():
    rng = np.random.default_rng(3)
    graphs = [to_fennec(random_graph(rng, False, 200)) for _ in range(40)]
    batch = GraphBatch.from_graphs(graphs)
    one, two = wl_features(batch, 3, 4096, threads=1), wl_features(batch, 3, 4096, threads=2)
    np.testing.assert_array_equal(one, two)
    code = ("import fennec, numpy as np, sys; "
            "f = fennec.wl_features([(['a','b','c','a'], [[0,1],[1,2],[2,3]])], 3, 64); "
            "sys.stdout.write(f.tobytes().hex())")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("0", "123")}
    assert len(outputs) == 1
    local = wl_features([(["a", "b", "c", "a"], [[0, 1], [1, 2], [2, 3]])], 3, 64)
    assert outputs == {local.tobytes().hex()}


def test_row_sums_and_edge_cases():
    features = wl_features([([], []), (["a"], []), ([5, 6, 7], [[0, 1]])], 2, 32)
    np.testing.assert_array_equal(features.sum(1), [0, 3, 9])
    assert features.dtype == np.float32 and features.shape == (3, 32)
    assert wl_features([], 3, 8).shape == (0, 8)
    integer_labels = wl_features([(np.array([1, 2]), np.array([[0, 1]]))], 1, 16)
    assert integer_labels.sum() == 4


@pytest.mark.parametrize("graphs, kwargs, error, message", [
    ([(["a", "b"], [[0, 2]])], {}, ValueError, r"graphs\[0\]: edge \(0, 2\) refers to a node outside \[0, 2\)"),
    ([(["a"], []), (["a", "b"], [[0, -1]])], {}, ValueError, r"graphs\[1\]: edge \(0, -1\)"),
    ([(["a", "b"], [[0, 1, 1]])], {}, ValueError, r"graphs\[0\]: edges must be an \(E, 2\) integer array"),
    ([(["a", "b"], [[0.0, 1.0]])], {}, ValueError, r"edges must be an \(E, 2\) integer array"),
    ([(np.array([-1, 2]), [])], {}, ValueError, r"graphs\[0\]: node labels must be non-negative"),
    ([(["a", 1], [])], {}, TypeError, r"graphs\[0\]: node labels must be all strings or all"),
    ([("ab",)], {}, TypeError, r"graphs\[0\] must be a \(node_labels, edges\) pair"),
    ("not graphs", {}, TypeError, "graphs must be a sequence"),
    ([(["a"], [])], {"iterations": -1}, ValueError, "iterations must be a non-negative integer"),
    ([(["a"], [])], {"dim": 0}, ValueError, "dim must be a positive integer"),
    ([(["a"], [])], {"direction": "sideways"}, ValueError, "direction must be one of"),
])
def test_bad_input(graphs, kwargs, error, message):
    with pytest.raises(error, match=message):
        wl_features(graphs, **kwargs)


def test_hash_labels_rejects_non_strings():
    with pytest.raises(TypeError, match=r"labels\[1\] must be a string"):
        hash_labels(["a", 3])
    with pytest.raises(TypeError, match="not one string"):
        hash_labels("abc")
