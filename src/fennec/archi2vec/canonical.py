"""From a route's raw graph to the canonical :class:`~.graph.ArchGraph`.

Exporters and tracers disagree on what is an op, so every route's raw graph
goes through the same passes before it is labelled; that is what lets the
torch and the ONNX graph of one model meet.

Removed on every route: layout and shape plumbing (reshape, view, flatten,
permute, transpose, squeeze, unsqueeze, expand, slice, gather, split, pad,
cast, identity, dropout), everything computed only from weights, constants or
shapes, and element-wise ops with a single computed operand (bias adds,
scalar scales, position-embedding adds). Fused: batchnorm into the conv it
follows (what ONNX exporters do), x*sigmoid(x) -> silu, x*erf(x) -> gelu,
x*hardsigmoid(x) -> hardswish, the mean/sub/pow/sqrt/div chain -> layernorm,
softmax between two matmuls -> attention. Model inputs are kept as "input" nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .graph import WIDTH_SEPARATOR, ArchGraph
from .raw import RawNode
from .vocabulary import PLUMBING, SHAPE_OPS

__all__ = ["canonical_graph"]

# Multi-operand ops that reduce to a pass-through when only one operand is computed
# (bias and position-embedding adds, scalar scales, a constant token concatenated).
_PASS_WHEN_ONE_INPUT = frozenset({"add", "sub", "mul", "div", "pow", "concat", "where"})

# x * f(x) -> fused activation.
_GATED = {"sigmoid": "silu", "erf": "gelu", "hardsigmoid": "hardswish"}

# Ops on the path from (x - mean(x)) to its scale in a decomposed normalisation.
_NORM_CHAIN = frozenset({"mean", "sqrt", "rsqrt", "pow"})


def canonical_graph(raw: list[RawNode], name: str, route: str) -> ArchGraph:
    """Plumbing removed, exporter artefacts folded, patterns fused; raw nodes come in topological order."""
    kept, preds = _contract(raw, _static_nodes(raw))
    _fuse(_Dag(kept, preds))
    order = sorted(kept)
    index = {v: i for i, v in enumerate(order)}
    labels = [_label(kept[v].op, kept[v].attrs) for v in order]
    edges = sorted({(index[u], index[v]) for v in order for u in preds[v]})
    if all(label == "input" for label in labels):
        raise ValueError(f"the graph of {name} is empty: no operation on the data path was found "
                         f"(route {route})")
    return ArchGraph(tuple(labels), np.array(edges, dtype=np.int64).reshape(-1, 2), route=route, name=name)


def _static_nodes(raw: list[RawNode]) -> list[bool]:
    """Which nodes depend only on weights, constants or shapes (never on a model input)."""
    static = [False] * len(raw)
    for v, node in enumerate(raw):
        if node.source:
            continue
        if node.static or node.op in SHAPE_OPS:
            static[v] = True
        else:
            static[v] = all(static[u] for u in node.inputs)
    return static


def _contract(raw: list[RawNode], static: list[bool]) -> tuple[dict[int, RawNode], dict[int, list[int]]]:
    """The nodes kept on the data path and, for each, the kept nodes its data came from.

    Pass-through nodes are contracted: each node's "effective" producers are the
    kept nodes upstream of it.
    """
    kept: dict[int, RawNode] = {}
    preds: dict[int, list[int]] = {}
    effective: list[list[int]] = [[] for _ in range(len(raw))]
    for v, node in enumerate(raw):
        if static[v]:
            continue
        dynamic = [u for u in node.inputs if not static[u]]
        sources = list(dict.fromkeys(w for u in dynamic for w in effective[u]))
        n_dynamic = len(set(dynamic))
        op = node.op
        if op == "matmul" and n_dynamic == 1:
            op = "linear"
        elif op == "linear" and n_dynamic >= 2:
            op = "matmul"  # a weight computed from the data (attention scores)
        if op in PLUMBING or (op in _PASS_WHEN_ONE_INPUT and n_dynamic <= 1):
            effective[v] = sources
            continue
        if op == "mean" and len(node.attrs.get("axes") or ()) >= 2:
            op = "globalavgpool"
        kept[v] = RawNode(op, node.attrs)
        preds[v] = sources
        effective[v] = [v]
    return kept, preds


class _Dag:
    """The kept nodes with predecessor and successor lists, updated in place as patterns are fused."""

    def __init__(self, kept: dict[int, RawNode], preds: dict[int, list[int]]):
        self.nodes, self.preds = kept, preds
        self.succs: dict[int, list[int]] = {v: [] for v in kept}
        for v in sorted(kept):
            for u in preds[v]:
                self.succs[u].append(v)

    def op(self, v: int) -> str:
        return self.nodes[v].op

    def merge(self, keep: int, drop: Sequence[int], inputs: Sequence[int], op: str) -> None:
        """Fuses ``drop`` into ``keep``, now ``op`` reading ``inputs``; readers of a dropped node read ``keep``."""
        gone = set(drop)
        for v in [*gone, keep]:
            for u in self.preds[v]:
                if u not in gone and u != keep:
                    self.succs[u].remove(v)
        readers = [w for v in gone for w in self.succs[v] if w not in gone and w != keep]
        for v in gone:
            del self.nodes[v], self.preds[v], self.succs[v]
        for w in dict.fromkeys(readers):
            self.preds[w] = list(dict.fromkeys(keep if u in gone else u for u in self.preds[w]))
            if w not in self.succs[keep]:
                self.succs[keep].append(w)
        self.preds[keep] = [u for u in dict.fromkeys(inputs) if u not in gone and u != keep]
        for u in self.preds[keep]:
            self.succs[u].append(keep)
        self.nodes[keep] = RawNode(op, self.nodes[keep].attrs if op == self.nodes[keep].op else {})


def _fuse(dag: _Dag) -> None:
    # Each pass sees the graph the previous one left, so this order is part of every
    # embedding: stored rows stay comparable only while it stays fixed.
    _fold_batchnorm(dag)
    _fuse_gated_activations(dag)
    _fuse_norms(dag)
    _fuse_attention(dag)


def _fold_batchnorm(dag: _Dag) -> None:
    """Batchnorm right after a conv is folded into it, as ONNX exporters do."""
    kept, preds, succs = dag.nodes, dag.preds, dag.succs
    for v in sorted(kept):
        if v in kept and dag.op(v) == "batchnorm" and len(preds[v]) == 1:
            (u,) = preds[v]
            if dag.op(u) in ("conv", "convtranspose") and succs[u] == [v]:
                dag.merge(u, [v], preds[u], dag.op(u))


def _fuse_gated_activations(dag: _Dag) -> None:
    """x * f(x) -> gated activation (silu, gelu, hardswish)."""
    kept, preds, succs = dag.nodes, dag.preds, dag.succs
    for v in sorted(kept):
        if v not in kept or dag.op(v) != "mul" or len(preds[v]) != 2:
            continue
        for gate, x in (tuple(preds[v]), tuple(reversed(preds[v]))):
            if dag.op(gate) in _GATED and preds[gate] == [x] and succs[gate] == [v]:
                dag.merge(v, [gate], [x], _GATED[dag.op(gate)])
                break


def _fuse_norms(dag: _Dag) -> None:
    """(x - mean(x)) / sqrt(mean((x - mean)^2)) -> layernorm; x * rsqrt(mean(x^2)) -> rmsnorm."""
    kept, preds, succs = dag.nodes, dag.preds, dag.succs
    for v in sorted(kept):
        if v not in kept or dag.op(v) not in ("div", "mul") or len(preds[v]) != 2:
            continue
        for centred, scale in (tuple(preds[v]), tuple(reversed(preds[v]))):
            path, w = [], scale
            while w in kept and dag.op(w) in _NORM_CHAIN and len(preds[w]) == 1 and len(succs[w]) == 1:
                path.append(w)
                w = preds[w][0]
            if w != centred or not any(dag.op(c) == "mean" for c in path):
                continue
            if dag.op(centred) == "sub":
                if len(preds[centred]) != 2:
                    continue
                x, mean = preds[centred]
                if not (dag.op(mean) == "mean" and preds[mean] == [x]):
                    x, mean = mean, x
                if dag.op(mean) == "mean" and preds[mean] == [x] and len(succs[mean]) == 1:
                    dag.merge(v, path + [centred, mean], [x], "layernorm")
                    break
            else:
                dag.merge(v, path, [centred], "rmsnorm")
                break


def _fuse_attention(dag: _Dag) -> None:
    """matmul -> softmax -> matmul -> attention."""
    kept, preds, succs = dag.nodes, dag.preds, dag.succs
    for s in sorted(kept):
        if s not in kept or dag.op(s) != "softmax" or len(preds[s]) != 1:
            continue
        (scores,) = preds[s]
        if dag.op(scores) != "matmul" or succs[scores] != [s] or len(succs[s]) != 1:
            continue
        (out,) = succs[s]
        if dag.op(out) == "matmul":
            dag.merge(out, [scores, s], preds[scores] + preds[out], "attention")


def _axes_text(values: Iterable[Any]) -> str:
    values = [int(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _width_bucket(width: Any) -> int:
    return int(round(math.log2(max(int(width), 1))))


def _label(op: str, attrs: dict[str, Any]) -> str:
    """A kept node's label, in the format :mod:`.graph` documents."""
    tokens = [op]
    if attrs.get("kernel"):
        tokens.append("k" + _axes_text(attrs["kernel"]))
    if attrs.get("stride"):
        tokens.append("s" + _axes_text(attrs["stride"]))
    dilation = attrs.get("dilation")
    if dilation and any(int(d) != 1 for d in dilation):
        tokens.append("d" + _axes_text(dilation))
    groups, per_group = attrs.get("groups", 1), attrs.get("in_per_group")
    if groups and groups > 1:
        tokens.append("dw" if per_group == 1 else "g")
    fine = []
    if attrs.get("width"):
        fine.append(f"w{_width_bucket(attrs['width'])}")
    if attrs.get("heads"):
        fine.append(f"h{int(attrs['heads'])}")
    label = " ".join(tokens)
    return label + WIDTH_SEPARATOR + " ".join(fine) if fine else label
