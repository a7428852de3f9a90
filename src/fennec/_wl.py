"""Validated Python interface to the core's Weisfeiler-Lehman graph features."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _core

__all__ = ["GraphBatch", "hash_labels", "wl_features"]

_DIRECTIONS = {"undirected": 0, "out": 1, "both": 2}


def hash_labels(labels: Sequence[str]) -> np.ndarray:
    """The fixed 64-bit hash of each label (see ``cpp/src/cpu/wl_cpu.cpp``): uint64 array."""
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of strings, not one string")
    labels = list(labels)
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"labels[{i}] must be a string, got {type(label).__name__}")
    return _core.wl_hash_labels(labels)


def _node_labels(labels, g: int) -> np.ndarray:
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        array = labels
    else:
        labels = list(labels)
        if all(isinstance(x, str) for x in labels):
            return hash_labels(labels)
        if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in labels):
            raise TypeError(f"graphs[{g}]: node labels must be all strings or all non-negative integers")
        array = np.array(labels, dtype=np.int64) if labels else np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"graphs[{g}]: node labels must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise ValueError(f"graphs[{g}]: node labels must be non-negative, got {int(array.min())}")
    return array.astype(np.uint64)


def _edges(edges, n_nodes: int, g: int) -> np.ndarray:
    array = np.asarray(edges)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if array.dtype.kind not in "iu" or array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"graphs[{g}]: edges must be an (E, 2) integer array, got shape {array.shape} "
                         f"and dtype {array.dtype}")
    bad = (array < 0) | (array >= n_nodes)
    if bad.any():
        e = int(np.argwhere(bad)[0][0])
        raise ValueError(f"graphs[{g}]: edge ({int(array[e, 0])}, {int(array[e, 1])}) refers to a node "
                         f"outside [0, {n_nodes}) (the graph has {n_nodes} nodes)")
    return array.astype(np.int64)


@dataclass(frozen=True)
class GraphBatch:
    """Graphs packed in one compact CSR form, to hash many times without repacking.

    Nodes of graph g are ``graph_offsets[g]:graph_offsets[g+1]`` of ``node_labels``;
    its edges are rows ``edge_offsets[g]:edge_offsets[g+1]`` of ``edges`` (local node ids).
    """

    graph_offsets: np.ndarray  # int64, n_graphs + 1
    node_labels: np.ndarray  # uint64
    edge_offsets: np.ndarray  # int64, n_graphs + 1
    edges: np.ndarray  # int64, (E, 2)

    def __len__(self) -> int:
        return len(self.graph_offsets) - 1

    @classmethod
    def from_graphs(cls, graphs) -> GraphBatch:
        """Packs graphs given as ``(node_labels, edges)`` pairs.

        node_labels: strings (hashed with :func:`hash_labels`) or non-negative integers;
        edges: an (E, 2) integer array-like of node ids local to the graph (E may be 0).
        """
        if isinstance(graphs, (str, bytes)) or not isinstance(graphs, Sequence):
            raise TypeError("graphs must be a sequence of (node_labels, edges) pairs or a GraphBatch")
        labels, edges = [], []
        node_counts, edge_counts = [0], [0]
        for g, graph in enumerate(graphs):
            if not isinstance(graph, (tuple, list)) or len(graph) != 2:
                raise TypeError(f"graphs[{g}] must be a (node_labels, edges) pair")
            node_labels = _node_labels(graph[0], g)
            labels.append(node_labels)
            edges.append(_edges(graph[1], len(node_labels), g))
            node_counts.append(len(node_labels))
            edge_counts.append(len(edges[-1]))
        return cls(
            graph_offsets=np.cumsum(node_counts, dtype=np.int64),
            node_labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.uint64),
            edge_offsets=np.cumsum(edge_counts, dtype=np.int64),
            edges=np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64),
        )


def wl_features(graphs, iterations: int = 3, dim: int = 4096, *, direction: str = "undirected",
                threads: int | None = None) -> np.ndarray:
    """Weisfeiler-Lehman subtree-pattern counts of each graph, hashed into ``dim`` buckets.

    Returns a float32 matrix, one row per graph: for every depth 0..``iterations``,
    every node adds 1 to the bucket of its WL label at that depth. Two graphs get
    equal rows exactly when their WL label multisets are equal at every depth
    (barring 64-bit and bucket collisions). The hash is fixed and documented, so
    rows are identical across runs, processes and machines.

    direction: "undirected" (edges in both directions, like a networkx Graph),
    "out" (successors only), or "both" (successors and predecessors hashed apart,
    like a networkx >= 3.5 DiGraph; the one for computation graphs).
    """
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, got {direction!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                or threads < 1):
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    batch = graphs if isinstance(graphs, GraphBatch) else GraphBatch.from_graphs(graphs)
    edges = np.ascontiguousarray(batch.edges, dtype=np.int64).reshape(-1, 2)
    return _core.wl_features(
        np.ascontiguousarray(batch.graph_offsets, dtype=np.int64),
        np.ascontiguousarray(batch.node_labels, dtype=np.uint64),
        np.ascontiguousarray(batch.edge_offsets, dtype=np.int64),
        np.ascontiguousarray(edges[:, 0]), np.ascontiguousarray(edges[:, 1]),
        int(iterations), int(dim), _DIRECTIONS[direction], 0 if threads is None else int(threads))
