"""Validated Python interface to the core's Weisfeiler-Lehman graph features.

The hash is fixed and documented in ``cpp/src/cpu/wl_cpu.cpp``; features are
identical across runs, processes, machines and thread counts.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from . import _core
from ._checks import integer

__all__ = ["GraphBatch", "hash_labels", "wl_features"]

_DIRECTIONS: dict[str, Literal[0, 1, 2]] = {"undirected": 0, "out": 1, "both": 2}
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def hash_labels(labels: Sequence[str]) -> np.ndarray:
    """The fixed 64-bit hash of each label's UTF-8 bytes (FNV-1a 64, then splitmix64): uint64 array."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise TypeError(f"labels must be a sequence of str, got {type(labels).__name__}")
    labels = list(labels)
    if not all(issubclass(t, str) for t in set(map(type, labels))):  # one check per type, not per label
        i, label = next((i, x) for i, x in enumerate(labels) if not isinstance(x, str))
        raise TypeError(f"labels[{i}] must be a str, got {type(label).__name__}")
    try:
        return _core.wl_hash_labels(labels)
    except TypeError:
        # The binding refuses a str that has no UTF-8 form (a lone surrogate); say which.
        for i, label in enumerate(labels):
            try:
                label.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"labels[{i}] cannot be encoded as UTF-8: {exc.reason}") from None
        raise


def _node_labels(labels: Any, g: int) -> np.ndarray:
    """One graph's labels as uint64: strings are hashed, non-negative integers kept."""
    expected = "a sequence of str or a 1-D array of non-negative integers"
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        if labels.ndim != 1:
            raise ValueError(f"graphs[{g}]: node labels must be {expected}, got shape {labels.shape}")
        if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
            i = int(np.argmax(labels < 0))
            raise ValueError(f"graphs[{g}]: node labels must be non-negative, got {int(labels[i])} at node {i}")
        return labels.astype(np.uint64)
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise TypeError(f"graphs[{g}]: node labels must be {expected}, got {type(labels).__name__}")
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise ValueError(f"graphs[{g}]: node labels must be {expected}, got shape {labels.shape}")
    labels = list(labels)
    if not labels:
        return np.zeros(0, dtype=np.uint64)
    types = set(map(type, labels))  # one check per type, not per label
    if all(issubclass(t, str) for t in types):
        try:
            return hash_labels(labels)
        except ValueError as exc:
            raise ValueError(f"graphs[{g}]: node {exc}") from None
    if not all(issubclass(t, numbers.Integral) and not issubclass(t, (bool, np.bool_)) for t in types):
        names = ", ".join(sorted(t.__name__ for t in types))
        raise TypeError(f"graphs[{g}]: node labels must be {expected}, got "
                        + (f"a mix of {names}" if len(types) > 1 else names))
    for i, x in enumerate(labels):
        if not 0 <= x <= _UINT64_MAX:
            raise ValueError(f"graphs[{g}]: node labels must be non-negative 64-bit integers, "
                             f"got {int(x)} at node {i}")
    return np.array([int(x) for x in labels], dtype=np.uint64)


def _edges(edges: Any, g: int) -> np.ndarray:
    """One graph's edges as an (E, 2) array with the caller's integer dtype (range checked later)."""
    try:
        array = np.asarray(edges)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"graphs[{g}]: edges must be an (E, 2) integer array: {exc}") from None
    if array.size == 0 and array.shape in ((0,), (0, 2)):
        return np.zeros((0, 2), dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"graphs[{g}]: edges must be an (E, 2) integer array, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"graphs[{g}]: edges must be an (E, 2) integer array, got shape {array.shape}")
    return array


def _bad_edge(g: int, edge: Any, n_nodes: int) -> ValueError:
    s, t = int(edge[0]), int(edge[1])
    node = t if 0 <= s < n_nodes else s
    return ValueError(f"graphs[{g}]: edge ({s}, {t}) refers to node {node} but the graph has {n_nodes} nodes")


def _integer_vector(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"GraphBatch.{name} must be an integer array, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"GraphBatch.{name} must be 1-D, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class GraphBatch:
    """Graphs packed in one compact CSR form, validated once and hashed many times.

    The nodes of graph g are ``graph_offsets[g]:graph_offsets[g+1]`` of ``node_labels``
    (64-bit labels); its edges are rows ``edge_offsets[g]:edge_offsets[g+1]`` of
    ``edges``, as node ids local to graph g. Build one with :meth:`from_graphs`, or
    directly from arrays: they are checked and converted here.
    """

    graph_offsets: np.ndarray  # int64, (n_graphs + 1,), from 0, non-decreasing
    node_labels: np.ndarray  # uint64, (graph_offsets[-1],)
    edge_offsets: np.ndarray  # int64, (n_graphs + 1,), from 0, non-decreasing
    edges: np.ndarray  # int64, (edge_offsets[-1], 2)
    # The two columns of edges, contiguous, as the core takes them.
    edges_src: np.ndarray = field(init=False, repr=False)
    edges_dst: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        graph_offsets = _integer_vector(self.graph_offsets, "graph_offsets")
        edge_offsets = _integer_vector(self.edge_offsets, "edge_offsets")
        node_labels = _integer_vector(self.node_labels, "node_labels")
        edges = np.asarray(self.edges)
        if edges.size == 0 and edges.shape in ((0,), (0, 2)):
            edges = np.zeros((0, 2), dtype=np.int64)
        if edges.dtype.kind not in "iu":
            raise TypeError(f"GraphBatch.edges must be an (E, 2) integer array, got dtype {edges.dtype}")
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise ValueError(f"GraphBatch.edges must be an (E, 2) integer array, got shape {edges.shape}")
        _check_offsets("graph_offsets", graph_offsets, len(node_labels), len(graph_offsets))
        _check_offsets("edge_offsets", edge_offsets, len(edges), len(graph_offsets))
        if node_labels.dtype.kind == "i" and node_labels.size and node_labels.min() < 0:
            v = int(np.argmax(node_labels < 0))
            g = int(np.searchsorted(graph_offsets, v, side="right")) - 1
            raise ValueError(f"graphs[{g}]: node labels must be non-negative, got {int(node_labels[v])} "
                             f"at node {v - int(graph_offsets[g])}")
        # Every edge must stay inside its own graph; the core checks again, this says where.
        n_nodes = np.repeat(np.diff(graph_offsets), np.diff(edge_offsets))
        src, dst = np.ascontiguousarray(edges[:, 0]), np.ascontiguousarray(edges[:, 1])
        if edges.dtype.kind == "u":
            limit = n_nodes.astype(np.uint64)
            bad = (src >= limit) | (dst >= limit)
        else:
            bad = (src < 0) | (src >= n_nodes) | (dst < 0) | (dst >= n_nodes)
        if bad.any():
            e = int(np.argmax(bad))
            g = int(np.searchsorted(edge_offsets, e, side="right")) - 1
            raise _bad_edge(g, edges[e], int(n_nodes[e]))
        set_field = object.__setattr__  # frozen: fields are set once, here
        set_field(self, "graph_offsets", np.ascontiguousarray(graph_offsets, dtype=np.int64))
        set_field(self, "edge_offsets", np.ascontiguousarray(edge_offsets, dtype=np.int64))
        set_field(self, "node_labels", np.ascontiguousarray(node_labels, dtype=np.uint64))
        set_field(self, "edges", np.ascontiguousarray(edges, dtype=np.int64))
        set_field(self, "edges_src", src.astype(np.int64, copy=False))
        set_field(self, "edges_dst", dst.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.graph_offsets) - 1

    @classmethod
    def from_graphs(cls, graphs: Iterable[Any]) -> GraphBatch:
        """Packs graphs given as ``(node_labels, edges)`` pairs.

        node_labels: a sequence of str (hashed with :func:`hash_labels`) or a 1-D
        array of non-negative integers (taken as 64-bit labels as they are);
        edges: an (E, 2) integer array-like of node ids local to the graph (E may be 0).
        """
        if isinstance(graphs, (str, bytes)) or not isinstance(graphs, Iterable):
            raise TypeError(f"graphs must be a sequence of (node_labels, edges) pairs or a GraphBatch, "
                            f"got {type(graphs).__name__}")
        labels, edges = [], []
        for g, graph in enumerate(graphs):
            if not isinstance(graph, (tuple, list)) or len(graph) != 2:
                raise TypeError(f"graphs[{g}] must be a (node_labels, edges) pair, got {type(graph).__name__}"
                                + (f" of length {len(graph)}" if isinstance(graph, (tuple, list)) else ""))
            labels.append(_node_labels(graph[0], g))
            edges.append(_edges(graph[1], g))
            n_nodes = len(labels[-1])
            if edges[-1].dtype.kind == "u" and edges[-1].size and int(edges[-1].max()) >= n_nodes:
                # Checked before the int64 cast, which would wrap the largest values.
                e = int(np.argmax(edges[-1].max(axis=1) >= n_nodes))
                raise _bad_edge(g, edges[-1][e], n_nodes)
            edges[-1] = edges[-1].astype(np.int64, copy=False)
        return cls(
            graph_offsets=np.cumsum([0] + [len(x) for x in labels], dtype=np.int64),
            node_labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.uint64),
            edge_offsets=np.cumsum([0] + [len(x) for x in edges], dtype=np.int64),
            edges=np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64),
        )


def _check_offsets(name: str, offsets: np.ndarray, length: int, n_entries: int) -> None:
    """``offsets`` splits ``length`` items into ``n_entries - 1`` graphs: from 0, non-decreasing, to ``length``."""
    if len(offsets) < 1 or offsets[0] != 0:
        raise ValueError(f"GraphBatch.{name} must start at 0 (one entry per graph, plus one)")
    if len(offsets) != n_entries:
        raise ValueError(f"GraphBatch.edge_offsets must have as many entries as graph_offsets, "
                         f"got {len(offsets)} and {n_entries}")
    steps = np.diff(offsets)
    if (steps < 0).any():
        g = int(np.argmax(steps < 0))
        raise ValueError(f"GraphBatch.{name} must be non-decreasing, but graph {g} goes from "
                         f"{int(offsets[g])} to {int(offsets[g + 1])}")
    if int(offsets[-1]) != length:
        raise ValueError(f"GraphBatch.{name} must end at {length}, got {int(offsets[-1])}")




def wl_features(graphs: GraphBatch | Iterable[Any], iterations: int = 3, dim: int = 4096, *,
                direction: str = "undirected", threads: int | None = None) -> np.ndarray:
    """Weisfeiler-Lehman subtree-pattern counts of each graph, hashed into ``dim`` buckets.

    graphs: a :class:`GraphBatch`, or a sequence of ``(node_labels, edges)`` pairs
    (see :meth:`GraphBatch.from_graphs`).

    Returns a float32 matrix, one row per graph: for every depth 0..``iterations``
    (0 is the initial labels), every node adds 1 to the bucket of its WL label at
    that depth, so each row sums to n_nodes * (iterations + 1). Two graphs get equal
    rows exactly when their WL label multisets are equal at every depth (barring
    64-bit and bucket collisions). The hash is fixed and documented, so rows are
    identical across runs, processes, machines and thread counts.

    direction: "undirected" (edges taken both ways, like a networkx Graph: repeated
    edges count once, a self-loop makes a node its own neighbour), "out" (successors
    only, like ``G[v]`` of a networkx DiGraph), or "both" (predecessors and successors
    hashed apart, like networkx >= 3.5 on a DiGraph; the one for computation graphs).
    threads: worker threads, None for all hardware threads.
    """
    iterations = integer(iterations, "iterations", low=0, high=_INT32_MAX)
    dim = integer(dim, "dim", low=1, high=_INT64_MAX)
    if not isinstance(direction, str):
        raise TypeError(f"direction must be a str, got {type(direction).__name__}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(map(repr, _DIRECTIONS))}, got {direction!r}")
    threads = 0 if threads is None else integer(threads, "threads", low=1, high=_INT32_MAX)
    batch = graphs if isinstance(graphs, GraphBatch) else GraphBatch.from_graphs(graphs)
    return _core.wl_features(batch.graph_offsets, batch.node_labels, batch.edge_offsets, batch.edges_src,
                             batch.edges_dst, iterations, dim, _DIRECTIONS[direction], threads)
