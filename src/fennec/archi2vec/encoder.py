"""Architecture graphs as fixed-size rows: hashed Weisfeiler-Lehman subtree patterns.

The core's :func:`fennec.kernels.wl_features` counts the patterns
(Shervashidze et al., JMLR 2011, "Weisfeiler-Lehman graph kernels"); rows take
sublinear term frequencies (Salton & Buckley, 1988). Rows are deterministic
across processes: the core's label hash is fixed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np

from .._checks import integer
from ..kernels import GraphBatch, hash_labels, wl_features
from .extract import graph_of
from .graph import VIEWS, WIDTH_SEPARATOR, ArchGraph, abstract_label
from .torch_route import is_module

__all__ = ["embed"]


def embed(items: Any, *, iterations: int = 3, dim: int = 3072) -> np.ndarray:
    """archi2vec rows of architectures, one per item, comparable by cosine similarity.

    items: ArchGraph objects, torch modules (fx-traceable; call :func:`graph_of` with
    ``example_input`` first for the others) or paths to ONNX files (one item alone is
    taken as a batch of one).
    Returns float32 (len(items), dim), unit-norm rows, unweighted (no corpus needed).

    Each graph gives one block per label view (fine, coarse, abstract) and WL depth
    0..iterations: 12 blocks by default, of ``dim / blocks`` hashed pattern counts each.
    A block holds log(1 + count) (sublinear tf) and is L2-normalised; the
    concatenation is scaled to unit norm, so every view and depth weighs the same. A
    graph always gives the same row, whatever else is in the batch.
    """
    iterations = integer(iterations, "iterations", low=0, high=16)
    n_blocks = len(VIEWS) * (iterations + 1)
    dim = integer(dim, "dim", low=n_blocks)
    if dim % n_blocks:
        lower = dim - dim % n_blocks
        raise ValueError(f"dim must be a multiple of the {n_blocks} blocks (views x depths), got {dim}; "
                         f"use {lower or n_blocks} or {lower + n_blocks}")
    graphs = _graphs(items)
    tf = np.log1p(_depth_counts(graphs, iterations, dim // n_blocks))
    norms = np.linalg.norm(tf, axis=2, keepdims=True)
    rows = (tf / np.where(norms > 0, norms, 1)).reshape(len(graphs), dim)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.where(norms > 0, norms, 1), dtype=np.float32)


def _graphs(items: Any) -> list[ArchGraph]:
    if isinstance(items, (str, bytes, os.PathLike, ArchGraph)) or is_module(items):
        items = [items]
    if not isinstance(items, Iterable):
        raise TypeError(f"items must be a sequence of ArchGraph, modules or ONNX paths, "
                        f"got {type(items).__name__}")
    graphs = []
    for i, item in enumerate(items):
        try:
            graphs.append(graph_of(item))
        except TypeError as exc:
            raise TypeError(f"items[{i}]: {exc}") from None
    if not graphs:
        raise ValueError("items is empty: give at least one graph, module or ONNX path")
    return graphs


def _label_hashes(graphs: list[ArchGraph]) -> np.ndarray:
    """Every node's label hash in each view: uint64 (total nodes, len(VIEWS)); each distinct label is hashed once."""
    labels = list(chain.from_iterable(g.labels for g in graphs))
    rows = dict.fromkeys(labels)
    for row, label in enumerate(rows):
        rows[label] = row
    ids = np.fromiter(map(rows.__getitem__, labels), dtype=np.int64, count=len(labels))
    distinct = list(rows)
    coarse = [label.split(WIDTH_SEPARATOR, 1)[0] for label in distinct]
    table = np.stack([hash_labels(distinct), hash_labels(coarse), hash_labels([abstract_label(c) for c in coarse])],
                     axis=1)
    return table[ids]


def _depth_counts(graphs: list[ArchGraph], iterations: int, dim: int) -> np.ndarray:
    """Raw WL counts per view (VIEWS order) and depth 0..iterations: float32 (n, views x depths, dim).

    The core sums depths 0..h into one row; depth h alone is the difference of the runs
    with h and h - 1 iterations (exact: the counts are small integers).
    """
    n_nodes = np.array([len(g) for g in graphs], dtype=np.int64)
    n_edges = np.array([len(g.edges) for g in graphs], dtype=np.int64)
    graph_offsets = np.concatenate([[0], np.cumsum(n_nodes)])
    edge_offsets = np.concatenate([[0], np.cumsum(n_edges)])
    edges = np.concatenate([g.edges for g in graphs]) if n_edges.sum() else np.zeros((0, 2), np.int64)
    hashes = _label_hashes(graphs)
    depths = iterations + 1
    out = np.empty((len(graphs), len(VIEWS), depths, dim), dtype=np.float32)
    for view in range(len(VIEWS)):
        batch = GraphBatch(graph_offsets, np.ascontiguousarray(hashes[:, view]), edge_offsets, edges)
        previous = None
        for depth in range(depths):
            total = wl_features(batch, depth, dim, direction="both")
            out[:, view, depth] = total if previous is None else total - previous
            previous = total
    return out.reshape(len(graphs), len(VIEWS) * depths, dim)
