"""fennec.kernels.wl_features against networkx's Weisfeiler-Lehman subgraph hashes.

The oracle: two graphs must get equal feature rows exactly when networkx gives
them equal multisets of node hashes at every depth. networkx builds a node's new
label by concatenating strings, which is ambiguous only when one label is a
concatenation of others; the labels used here never are.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import warnings
from collections import Counter
from unittest import mock

import numpy as np
import pytest

import fennec
from fennec import _core
from fennec.kernels import GraphBatch, hash_labels, wl_features

nx = pytest.importorskip("networkx")
from networkx.algorithms import graph_hashing  # noqa: E402

ITERATIONS = 3
DIM = 1 << 20  # wide enough that bucket collisions do not blur the comparison
OPS = ["conv", "relu", "pool", "add"]
# networkx >= 3.5 hashes a DiGraph node from its successors and its predecessors
# kept apart (fennec's "both"); before, from its successors alone (fennec's "out").
NX_SPLITS_DIRECTIONS = hasattr(graph_hashing, "_neighborhood_aggregate_directed")


def to_fennec(graph, rng=None):
    """(labels, edges) with local ids; with rng, edges come shuffled and, if undirected, randomly flipped."""
    index = {v: i for i, v in enumerate(graph.nodes)}
    labels = [str(graph.nodes[v]["label"]) for v in graph.nodes]
    edges = np.array([(index[u], index[v]) for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
    if rng is not None and len(edges):
        edges = edges[rng.permutation(len(edges))]
        if not graph.is_directed():
            flip = rng.random(len(edges)) < 0.5
            edges[flip] = edges[flip][:, ::-1]
    return labels, edges


def nx_multisets(graph, direction):
    """networkx's multiset of node hashes at each depth 0..ITERATIONS for the given direction."""
    assert graph.is_directed() == (direction != "undirected")
    depth0 = Counter(str(graph.nodes[v]["label"]) for v in graph.nodes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The hashes produced for directed graphs changed", UserWarning)
        if direction == "out" and NX_SPLITS_DIRECTIONS:
            # networkx's own pre-3.5 rule: the undirected aggregation, whose G.neighbors are a DiGraph's successors.
            with mock.patch.object(graph_hashing, "_neighborhood_aggregate_directed",
                                   graph_hashing._neighborhood_aggregate_undirected):
                hashes = nx.weisfeiler_lehman_subgraph_hashes(graph, node_attr="label", iterations=ITERATIONS)
        else:
            hashes = nx.weisfeiler_lehman_subgraph_hashes(graph, node_attr="label", iterations=ITERATIONS)
    return [depth0] + [Counter(h[depth] for h in hashes.values()) for depth in range(ITERATIONS)]


def fennec_equal(a, b, direction, rng=None):
    features = wl_features([to_fennec(a, rng), to_fennec(b, rng)], ITERATIONS, DIM, direction=direction)
    return bool(np.array_equal(features[0], features[1]))


def random_graph(rng, directed, n=None, labels=OPS):
    n = n or int(rng.integers(4, 30))
    m = int(rng.integers(n - 1, 2 * n))
    graph = nx.gnm_random_graph(n, m, seed=int(rng.integers(1 << 30)), directed=directed)
    if rng.random() < 0.3:
        graph.add_edge(0, 0)  # a self-loop now and then
    for v in graph.nodes:
        graph.nodes[v]["label"] = labels[int(rng.integers(len(labels)))]
    return graph


def permuted(graph, rng):
    order = rng.permutation(graph.number_of_nodes())
    relabelled = nx.relabel_nodes(graph, {v: int(order[i]) for i, v in enumerate(graph.nodes)})
    shuffled = type(graph)()  # node order shuffled too, so local ids change
    shuffled.add_nodes_from(sorted(relabelled.nodes(data=True), key=lambda item: rng.random()))
    shuffled.add_edges_from(relabelled.edges)
    return shuffled


def perturbed(graph, rng):
    """One edge added or removed, or one label changed."""
    graph = graph.copy()
    if rng.random() < 0.5:
        u, v = (int(x) for x in rng.choice(graph.number_of_nodes(), 2, replace=False))
        if graph.has_edge(u, v):
            graph.remove_edge(u, v)
        else:
            graph.add_edge(u, v)
    else:
        v = int(rng.integers(graph.number_of_nodes()))
        graph.nodes[v]["label"] = "other" if graph.nodes[v]["label"] != "other" else "conv"
    return graph


DIRECTIONS = [
    pytest.param(False, "undirected", id="undirected-vs-Graph"),
    pytest.param(True, "out", id="out-vs-DiGraph-successors"),
    pytest.param(True, "both", id="both-vs-DiGraph-split",
                 marks=pytest.mark.skipif(not NX_SPLITS_DIRECTIONS, reason="networkx < 3.5 has no split rule")),
]


def regular_twins(rng, directed, n):
    """Two uniform-labelled regular graphs of n nodes: WL-equal, and usually not isomorphic."""
    if not directed:
        pair = [nx.random_regular_graph(3, n + n % 2, seed=int(rng.integers(1 << 30))) for _ in range(2)]
    elif rng.random() < 0.5:  # one successor and one predecessor per node: a permutation, as cycles
        pair = [nx.DiGraph([(i, int(j)) for i, j in enumerate(rng.permutation(n))]) for _ in range(2)]
    else:  # one successor per node, predecessors uneven: equal for "out", rarely for "both"
        pair = [nx.DiGraph([(i, int(j)) for i, j in enumerate(rng.integers(0, n, n))]) for _ in range(2)]
    return [labelled(graph, "x") for graph in pair]


@pytest.mark.parametrize("directed, direction", DIRECTIONS)
def test_equal_exactly_when_networkx_multisets_are_equal(directed, direction):
    rng = np.random.default_rng(7)
    agreed = Counter()
    for _ in range(50):
        a = random_graph(rng, directed)
        pairs = [(a, permuted(a, rng)), (a, perturbed(a, rng)),
                 (a, random_graph(rng, directed, a.number_of_nodes())),
                 regular_twins(rng, directed, a.number_of_nodes())]
        for i, (x, y) in enumerate(pairs):
            expected = nx_multisets(x, direction) == nx_multisets(y, direction)
            assert expected or i != 0  # isomorphic graphs are always WL-equal
            assert fennec_equal(x, y, direction, rng) == expected
            agreed[expected] += 1
    assert agreed[True] >= 50 and agreed[False] >= 50  # both outcomes were exercised


def labelled(graph, label="C"):
    nx.set_node_attributes(graph, label, "label")
    return graph


def decalin():
    graph = nx.cycle_graph(6)  # two six-rings sharing the bond 0-5
    nx.add_path(graph, [5, 6, 7, 8, 9, 0])
    return labelled(graph)


def bicyclopentyl():
    graph = nx.disjoint_union(nx.cycle_graph(5), nx.cycle_graph(5))  # two five-rings joined by 0-5
    graph.add_edge(0, 5)
    return labelled(graph)


# Pairs that 1-WL cannot tell apart although they are not isomorphic.
@pytest.mark.parametrize("a, b", [
    (labelled(nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))), labelled(nx.cycle_graph(6))),
    (labelled(nx.cubical_graph()), labelled(nx.circulant_graph(8, [1, 4]))),  # two cubic graphs
    (decalin(), bicyclopentyl()),
], ids=["two-triangles-vs-hexagon", "cube-vs-wagner", "decalin-vs-bicyclopentyl"])
def test_graphs_wl_cannot_tell_apart_are_equal_for_both(a, b):
    assert not nx.is_isomorphic(a, b)
    assert nx_multisets(a, "undirected") == nx_multisets(b, "undirected")
    assert fennec_equal(a, b, "undirected")


def test_out_sees_successors_only_and_both_sees_predecessors_too():
    # 0->2<-1 plus a lone node, against 0->2 and 1->3: every node has the same
    # successors, but node 2 has two predecessors in one graph only.
    fan_in = labelled(nx.DiGraph([(0, 2), (1, 2)]))
    fan_in.add_node(3, label="C")
    two_edges = labelled(nx.DiGraph([(0, 2), (1, 3)]))
    assert nx_multisets(fan_in, "out") == nx_multisets(two_edges, "out")
    assert fennec_equal(fan_in, two_edges, "out")
    if NX_SPLITS_DIRECTIONS:
        assert nx_multisets(fan_in, "both") != nx_multisets(two_edges, "both")
    assert not fennec_equal(fan_in, two_edges, "both")
    undirected = [nx.Graph(graph) for graph in (fan_in, two_edges)]
    assert nx_multisets(undirected[0], "undirected") != nx_multisets(undirected[1], "undirected")
    assert not fennec_equal(*undirected, "undirected")


def one_label_changed(graph):
    graph = graph.copy()
    graph.nodes[0]["label"] = "other"
    return graph


def one_edge_added(graph, u, v):
    graph = graph.copy()
    graph.add_edge(u, v)
    return graph


def directed_path(n, labels=None):
    graph = labelled(nx.path_graph(n, create_using=nx.DiGraph))
    for v, label in enumerate(labels or []):
        graph.nodes[v]["label"] = label
    return graph


@pytest.mark.parametrize("a, b, direction", [
    (labelled(nx.path_graph(4)), one_edge_added(labelled(nx.path_graph(4)), 0, 3), "undirected"),
    (labelled(nx.cycle_graph(6)), one_label_changed(labelled(nx.cycle_graph(6))), "undirected"),
    (decalin(), one_edge_added(decalin(), 2, 7), "undirected"),
    (labelled(nx.path_graph(5)), one_edge_added(labelled(nx.path_graph(5)), 2, 2), "undirected"),  # self-loop
    (directed_path(4, OPS), nx.reverse(directed_path(4, OPS)), "out"),  # conv->relu->... against its reverse
    (directed_path(4), one_label_changed(directed_path(4)), "out"),
    (directed_path(4), one_edge_added(directed_path(4), 0, 2), "out"),
    (directed_path(4), one_edge_added(directed_path(4), 0, 2), "both"),
    (directed_path(4), one_label_changed(directed_path(4)), "both"),
], ids=["path-vs-cycle", "hexagon-one-label", "decalin-one-edge", "path-self-loop", "out-reversed",
        "out-one-label", "out-one-edge", "both-one-edge", "both-one-label"])
def test_graphs_one_edge_or_label_apart_are_different_for_both(a, b, direction):
    if direction == "both" and not NX_SPLITS_DIRECTIONS:
        pytest.skip("networkx < 3.5 has no split rule")
    assert nx_multisets(a, direction) != nx_multisets(b, direction)
    assert not fennec_equal(a, b, direction)


def test_both_direction_separates_what_undirected_merges():
    chain = (["x", "x", "x"], [[0, 1], [1, 2]])
    fan_in = (["x", "x", "x"], [[0, 1], [2, 1]])
    undirected = wl_features([chain, fan_in], 2, DIM, direction="undirected")
    both = wl_features([chain, fan_in], 2, DIM, direction="both")
    assert np.array_equal(undirected[0], undirected[1])
    assert not np.array_equal(both[0], both[1])


def test_self_loops_and_repeated_edges_follow_networkx():
    rng = np.random.default_rng(5)
    for directed, direction in [(False, "undirected"), (True, "out"), (True, "both")]:
        if direction == "both" and not NX_SPLITS_DIRECTIONS:
            continue
        for _ in range(10):
            graph = random_graph(rng, directed, 12)
            graph.add_edges_from([(3, 3), (5, 5)])
            labels, edges = to_fennec(graph)
            # networkx keeps one edge per pair; a repeated edge (reversed, when undirected) changes nothing.
            repeated = edges[rng.integers(0, len(edges), 10)]
            if not directed:
                repeated = repeated[:, ::-1]
            doubled = np.concatenate([edges, repeated, edges])
            rows = wl_features([(labels, edges), (labels, doubled)], ITERATIONS, DIM, direction=direction)
            np.testing.assert_array_equal(rows[0], rows[1])
            without = graph.copy()
            without.remove_edges_from([(3, 3), (5, 5)])
            expected = nx_multisets(graph, direction) == nx_multisets(without, direction)
            assert fennec_equal(graph, without, direction) == expected


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


def reference_features(labels, edges, iterations, dim, direction):
    """The formula documented in cpp/src/cpu/wl_cpu.cpp, reimplemented from the comment."""
    n = len(labels)
    outs, ins = [set() for _ in range(n)], [set() for _ in range(n)]
    for u, v in edges:
        outs[u].add(v)
        ins[v].add(u)
        if direction == "undirected":
            outs[v].add(u)
    row = np.zeros(dim)
    current = [label_hash(x) if isinstance(x, str) else int(x) for x in labels]
    for label in current:
        row[splitmix(label) % dim] += 1
    for i in range(1, iterations + 1):
        nxt = []
        for v in range(n):
            h = splitmix(current[v] ^ ((i * 0xD6E8FEB86659FD93) & MASK))
            if direction == "both":
                for y in sorted(current[u] for u in ins[v]):
                    h = splitmix(h ^ y)
                h = splitmix(h ^ 0x5851F42D4C957F2D)
            for y in sorted(current[u] for u in outs[v]):
                h = splitmix(h ^ y)
            nxt.append(h)
            row[splitmix(h ^ ((i * 0xA0761D6478BD642F) & MASK)) % dim] += 1
        current = nxt
    return row


def test_label_hash_is_pinned():
    words = ["", "a", "conv", "Conv2d(k=3,s=1)", "ünïcode ✓"]
    golden = [0xC3817C016BA4FF30, 0x5F29C2AADD9B8527, 0xE30583783C0CDE90, 0xD5A11D00C7D16D82, 0x72DFBD680A73CAA4]
    assert [label_hash(w) for w in words] == golden
    assert hash_labels(words).tolist() == golden
    assert hash_labels(words).dtype == np.uint64


GOLDEN_GRAPH = (["conv", "relu", "conv", "add", "pool"], [(0, 1), (1, 2), (2, 3), (0, 3), (3, 4), (4, 4)])
# Nonzero buckets of GOLDEN_GRAPH at 2 iterations, dim 65536 (a self-loop on node 4).
GOLDEN_BUCKETS = {
    "undirected": {1732: 2, 7924: 1, 9647: 1, 14006: 1, 18717: 2, 19665: 2, 19670: 1, 22925: 1, 24214: 1,
                   25354: 1, 42764: 1, 44522: 1},
    "out": {1024: 1, 1732: 2, 8516: 1, 15882: 1, 19665: 1, 19670: 1, 39125: 1, 42764: 1, 44522: 1,
            49972: 1, 50508: 1, 55761: 1, 55906: 1, 64972: 1},
    "both": {1732: 2, 6075: 1, 8072: 1, 8770: 1, 19670: 1, 22160: 1, 28434: 1, 32458: 1, 38693: 1,
             42764: 1, 44522: 1, 54257: 1, 56749: 1, 62189: 1},
}


@pytest.mark.parametrize("direction", ["undirected", "out", "both"])
def test_features_are_pinned_and_match_the_documented_formula(direction):
    labels, edges = GOLDEN_GRAPH
    got = wl_features([GOLDEN_GRAPH], 2, 1 << 16, direction=direction)[0]
    assert {int(k): int(got[k]) for k in np.flatnonzero(got)} == GOLDEN_BUCKETS[direction]
    np.testing.assert_array_equal(got, reference_features(labels, edges, 2, 1 << 16, direction))
    rng = np.random.default_rng(13)
    for dim in (1, 2, 7, 997, 4096):
        for iterations in (0, 1, 4):
            n = int(rng.integers(1, 25))
            labels = [OPS[int(i)] for i in rng.integers(0, len(OPS), n)]
            if rng.random() < 0.5:  # integer labels, up to the top of the 64-bit range
                labels = [int(x) for x in rng.integers(0, 1 << 63, n, dtype=np.uint64) * 2 + 1]
            edges = rng.integers(0, n, (int(rng.integers(0, 3 * n)), 2))
            got = wl_features([(labels, edges)], iterations, dim, direction=direction)[0]
            np.testing.assert_array_equal(got, reference_features(labels, edges, iterations, dim, direction))


def test_identical_across_processes_and_thread_counts():
    rng = np.random.default_rng(3)
    graphs = [to_fennec(random_graph(rng, False, int(rng.integers(1, 300)))) for _ in range(100)]
    batch = GraphBatch.from_graphs(graphs)
    one = wl_features(batch, 3, 4096, threads=1)
    for threads in (2, 3, 7, None):
        np.testing.assert_array_equal(wl_features(batch, 3, 4096, threads=threads), one)
    np.testing.assert_array_equal(wl_features(graphs, 3, 4096), one)

    code = ("import hashlib, sys, numpy as np; from fennec.kernels import wl_features; "
            "rng = np.random.default_rng(0); "
            "graphs = [([str(x) for x in rng.integers(0, 9, 50)], rng.integers(0, 50, (80, 2))) for _ in range(30)]; "
            "print(*(hashlib.sha256(wl_features(graphs, 3, 512, direction=d).tobytes()).hexdigest() "
            "for d in ('undirected', 'both')))")
    rng = np.random.default_rng(0)
    graphs = [([str(x) for x in rng.integers(0, 9, 50)], rng.integers(0, 50, (80, 2))) for _ in range(30)]
    local = " ".join(hashlib.sha256(wl_features(graphs, 3, 512, direction=d).tobytes()).hexdigest()
                     for d in ("undirected", "both"))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fennec.__file__)))
    pythonpath = os.pathsep.join([package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    for seed in ("0", "123"):  # str hashing differs between these; the features must not
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": pythonpath}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert result.stdout.strip() == local


def test_concurrent_callers_get_the_serial_answer():
    rng = np.random.default_rng(4)
    batch = GraphBatch.from_graphs([to_fennec(random_graph(rng, True, 200)) for _ in range(64)])
    expected = wl_features(batch, 3, 1024, direction="both", threads=1)
    results = [None] * 4

    def run(i):
        results[i] = wl_features(batch, 3, 1024, direction="both", threads=2)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_row_sums_and_edge_cases():
    graphs = [([], []), (["a"], []), ([5, 6, 7], [[0, 1]]), (["a", "b"], np.zeros((0, 2), dtype=np.int32)),
              (np.array([1, 2], dtype=np.uint64), np.array([[1, 0]], dtype=np.uint8))]
    features = wl_features(graphs, 2, 32)
    assert features.dtype == np.float32 and features.shape == (5, 32)
    np.testing.assert_array_equal(features.sum(1), [0, 3, 9, 6, 6])
    np.testing.assert_array_equal(features[0], 0)
    assert wl_features([], 3, 8).shape == (0, 8)
    assert wl_features(GraphBatch.from_graphs([]), 3, 8).shape == (0, 8)
    assert wl_features([(["a", "b"], [[0, 1]])], 0, 1).tolist() == [[2.0]]  # dim 1: everything in one bucket
    # With no edges every depth refines nothing new, but the depths land in different buckets.
    assert np.count_nonzero(wl_features([(["a"], [])], 3, DIM)) == 4


def test_string_and_integer_labels_agree():
    labels = ["conv", "relu", "conv", "add"]
    edges = [[0, 1], [1, 2], [2, 3]]
    as_ints = hash_labels(labels)
    rows = wl_features([(labels, edges), (as_ints, edges), ([int(x) for x in as_ints], edges)], 3, DIM)
    np.testing.assert_array_equal(rows[0], rows[1])
    np.testing.assert_array_equal(rows[0], rows[2])
    big = [2**64 - 1, 2**63]
    np.testing.assert_array_equal(wl_features([(big, [[0, 1]])], 2, 997)[0],
                                  reference_features(big, [[0, 1]], 2, 997, "undirected"))


def test_graph_batch_from_arrays_matches_from_graphs():
    graphs = [(["a", "b", "c"], [[0, 1], [1, 2]]), ([], []), (["b"], [[0, 0]])]
    packed = GraphBatch.from_graphs(graphs)
    assert len(packed) == 3
    assert packed.graph_offsets.tolist() == [0, 3, 3, 4] and packed.edge_offsets.tolist() == [0, 2, 2, 3]
    direct = GraphBatch(graph_offsets=np.array([0, 3, 3, 4], dtype=np.int32), node_labels=packed.node_labels,
                        edge_offsets=[0, 2, 2, 3], edges=np.array([[0, 1], [1, 2], [0, 0]], dtype=np.uint16))
    assert direct.edges.dtype == np.int64 and direct.graph_offsets.dtype == np.int64
    for direction in ("undirected", "out", "both"):
        np.testing.assert_array_equal(wl_features(direct, direction=direction),
                                      wl_features(graphs, direction=direction))


@pytest.mark.parametrize("graphs, kwargs, error, message", [
    ([(["a", "b"], [[0, 2]])], {}, ValueError, r"graphs\[0\]: edge \(0, 2\) refers to node 2 but the graph has 2 nodes"),
    ([(["a"], []), (["a", "b"], [[0, -1]])], {}, ValueError, r"graphs\[1\]: edge \(0, -1\) refers to node -1"),
    ([(["a"], []), ([], [[0, 0]])], {}, ValueError, r"graphs\[1\]: edge \(0, 0\) refers to node 0 but the graph has 0"),
    ([(["a"], np.array([[0, 2**64 - 1]], dtype=np.uint64))], {}, ValueError,
     r"graphs\[0\]: edge \(0, 18446744073709551615\) refers to node 18446744073709551615"),
    ([(["a"], []), (["a", "b"], [[0, 1, 1]])], {}, ValueError,
     r"graphs\[1\]: edges must be an \(E, 2\) integer array, got shape \(1, 3\)"),
    ([(["a", "b"], [0, 1])], {}, ValueError, r"graphs\[0\]: edges must be an \(E, 2\) integer array, got shape \(2,\)"),
    ([(["a", "b"], [[0, 1], [1]])], {}, ValueError, r"graphs\[0\]: edges must be an \(E, 2\) integer array"),
    ([(["a", "b"], [[0.0, 1.0]])], {}, TypeError, r"graphs\[0\]: edges must be an \(E, 2\) integer array, got dtype float64"),
    ([(["a", "b"], [[True, False]])], {}, TypeError, r"graphs\[0\]: edges .* got dtype bool"),
    ([(np.array([-1, 2]), [])], {}, ValueError, r"graphs\[0\]: node labels must be non-negative, got -1 at node 0"),
    ([([3, -2], [])], {}, ValueError, r"graphs\[0\]: node labels must be non-negative 64-bit integers, got -2 at node 1"),
    ([([2**64], [])], {}, ValueError, r"graphs\[0\]: node labels must be non-negative 64-bit integers"),
    ([(np.array([[1, 2]]), [])], {}, ValueError, r"graphs\[0\]: node labels must be .* got shape \(1, 2\)"),
    ([(["a", 1], [])], {}, TypeError, r"graphs\[0\]: node labels must be a sequence of str or a 1-D array .* "
     r"got a mix of int, str"),
    ([([1.0, 2.0], [])], {}, TypeError, r"graphs\[0\]: node labels .* got float$"),
    ([([True], [])], {}, TypeError, r"graphs\[0\]: node labels .* got bool"),
    ([("abc", [])], {}, TypeError, r"graphs\[0\]: node labels must be .* got str"),
    ([(["ok", "\udcff"], [])], {}, ValueError, r"graphs\[0\]: node labels\[1\] cannot be encoded as UTF-8"),
    ([(["a"], []), ("ab",)], {}, TypeError, r"graphs\[1\] must be a \(node_labels, edges\) pair, got tuple of length 1"),
    ([None], {}, TypeError, r"graphs\[0\] must be a \(node_labels, edges\) pair, got NoneType"),
    ("not graphs", {}, TypeError, "graphs must be a sequence of .* got str"),
    (7, {}, TypeError, "graphs must be a sequence of .* got int"),
    ([(["a"], [])], {"iterations": -1}, ValueError, "iterations must be an integer in \\[0, "),
    ([(["a"], [])], {"iterations": 2**31}, ValueError, "iterations must be an integer in \\[0, "),
    ([(["a"], [])], {"iterations": 1.5}, TypeError, "iterations must be an integer .*, got 1.5"),
    ([(["a"], [])], {"iterations": True}, TypeError, "iterations must be an integer .*, got True"),
    ([(["a"], [])], {"dim": 0}, ValueError, "dim must be an integer in \\[1, "),
    ([(["a"], [])], {"dim": "8"}, TypeError, "dim must be an integer .*, got '8'"),
    ([(["a"], [])], {"direction": "sideways"}, ValueError, "direction must be one of 'undirected', 'out', 'both'"),
    ([(["a"], [])], {"direction": None}, TypeError, "direction must be a str"),
    ([(["a"], [])], {"threads": 0}, ValueError, "threads must be an integer in \\[1, "),
    ([(["a"], [])], {"threads": 2.0}, TypeError, "threads must be an integer"),
])
def test_bad_input(graphs, kwargs, error, message):
    with pytest.raises(error, match=message):
        wl_features(graphs, **kwargs)


def batch_arrays(**changes):
    arrays = dict(graph_offsets=[0, 2, 3], node_labels=np.array([1, 2, 3], dtype=np.uint64),
                  edge_offsets=[0, 1, 2], edges=[[0, 1], [0, 0]])
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize("changes, error, message", [
    (dict(graph_offsets=[1, 2, 3]), ValueError, r"GraphBatch.graph_offsets must start at 0"),
    (dict(graph_offsets=[0, 3, 2, 3], edge_offsets=[0, 1, 1, 2]), ValueError,
     r"GraphBatch.graph_offsets must be non-decreasing, but graph 1 goes from 3 to 2"),
    (dict(graph_offsets=[0, 2, 4]), ValueError, r"GraphBatch.graph_offsets must end at 3, got 4"),
    (dict(edge_offsets=[0, 1]), ValueError, r"GraphBatch.edge_offsets must have as many entries as graph_offsets"),
    (dict(edge_offsets=[0, 2, 1]), ValueError, r"GraphBatch.edge_offsets must be non-decreasing"),
    (dict(edges=[[0, 1], [0, 1]]), ValueError, r"graphs\[1\]: edge \(0, 1\) refers to node 1 but the graph has 1 nodes"),
    (dict(edges=[[0, 1, 2]]), ValueError, r"GraphBatch.edges must be an \(E, 2\) integer array, got shape"),
    (dict(edges=[[0.0, 1.0], [0.0, 0.0]]), TypeError, r"GraphBatch.edges must be an \(E, 2\) integer array, got dtype"),
    (dict(node_labels=np.array([1, -2, 3])), ValueError, r"graphs\[0\]: node labels must be non-negative, got -2 at node 1"),
    (dict(node_labels=np.array([1.0, 2.0, 3.0])), TypeError, r"GraphBatch.node_labels must be an integer array"),
    (dict(graph_offsets=[[0, 2, 3]]), ValueError, r"GraphBatch.graph_offsets must be 1-D"),
])
def test_bad_graph_batch(changes, error, message):
    with pytest.raises(error, match=message):
        GraphBatch(**batch_arrays(**changes))


def test_hash_labels_rejects_what_is_not_a_str():
    with pytest.raises(TypeError, match=r"labels\[1\] must be a str, got int"):
        hash_labels(["a", 3])
    with pytest.raises(TypeError, match=r"labels\[0\] must be a str, got bytes"):
        hash_labels([b"a"])
    with pytest.raises(TypeError, match="labels must be a sequence of str, got str"):
        hash_labels("abc")
    with pytest.raises(ValueError, match=r"labels\[0\] cannot be encoded as UTF-8"):
        hash_labels(["\ud800"])
    assert hash_labels([]).shape == (0,)


def core_args(**changes):
    args = dict(graph_offsets=np.array([0, 2, 3]), node_labels=np.array([1, 2, 3], dtype=np.uint64),
                edge_offsets=np.array([0, 1, 2]), edges_src=np.array([0, 0]), edges_dst=np.array([1, 0]),
                iterations=2, dim=8, direction=0, threads=0)
    args.update(changes)
    return args


# The binding and the core check again what the Python layer checked: a caller of
# _core gets an exception, never a crash or a read past an array.
@pytest.mark.parametrize("changes, error, message", [
    (dict(graph_offsets=np.array([0, 2, 3], dtype=np.int32)), TypeError, "graph_offsets has the wrong dtype"),
    (dict(node_labels=np.array([1, 2, 3], dtype=np.int64)), TypeError, "node_labels has the wrong dtype"),
    (dict(edges_src=np.array([[0, 0], [0, 0]])[:, 0]), ValueError, "edges_src must be C-contiguous"),
    (dict(edge_offsets=np.array([0, 2])), ValueError, "edge_offsets must have as many entries as graph_offsets"),
    (dict(edges_dst=np.array([1])), ValueError, "edges_src and edges_dst must have the same length"),
    (dict(direction=3), ValueError, "direction must be 0"),
    (dict(dim=0), ValueError, "dim must be >= 1"),
    (dict(iterations=-1), ValueError, "iterations must be >= 0"),
    (dict(graph_offsets=np.array([1, 2, 3])), ValueError, "graph_offsets must start at 0"),
    (dict(graph_offsets=np.array([0, 100, 3])), ValueError, "graph 1: graph_offsets decrease"),
    (dict(edge_offsets=np.array([0, 100, 2])), ValueError, "graph 1: edge_offsets decrease"),
    (dict(graph_offsets=np.array([0, 2, 2])), ValueError, "graph_offsets end at 2 but there are 3 node labels"),
    (dict(edge_offsets=np.array([0, 1, 1])), ValueError, "edge_offsets end at 1 but there are 2 edges"),
    (dict(edges_src=np.array([0, 1])), ValueError, r"graph 1: edge \(1, 0\) refers to node 1 but the graph has 1 nodes"),
    (dict(edges_dst=np.array([1, -5])), ValueError, r"graph 1: edge \(0, -5\) refers to node -5"),
])
def test_core_refuses_malformed_arrays(changes, error, message):
    with pytest.raises(error, match=message):
        _core.wl_features(**core_args(**changes))
    assert _core.wl_features(**core_args()).sum() == 9
