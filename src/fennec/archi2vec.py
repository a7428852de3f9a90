"""archi2vec: a model's computation graph as a fixed-size vector.

:func:`graph_of` turns a ``torch.nn.Module`` (torch.fx, or the autograd graph
of one forward pass where fx cannot trace) or an ONNX file into an
:class:`ArchGraph`: one node per operation, labelled with a canonical op name
and the attributes that shape inductive bias, and directed data-flow edges.
The same architecture reached through torch or through ONNX gets nearly the
same graph: every route maps onto one vocabulary and the same passes remove
what exporters add or fuse (see :func:`_canonical_graph`).

:func:`embed` and :class:`Archi2Vec` hash Weisfeiler-Lehman subtree patterns
of these graphs with the core's :func:`fennec.kernels.wl_features` into one
row per model (Shervashidze et al., JMLR 2011, "Weisfeiler-Lehman graph
kernels"), with sublinear term frequencies and optional IDF weights learned on
a zoo (Salton & Buckley, 1988). Rows are deterministic across processes: the
core's label hash is fixed.

Node labels
-----------
A label is the canonical op name, then structural attributes, then, after
``" | "``, attributes that only say how wide: ``"conv k3 s2 dw | w7"``.

- ``k<kernel>``, ``s<stride>``, ``d<dilation>`` (only when not 1); a kernel,
  stride or dilation equal along all axes is written once, else joined by x;
- ``dw`` (depthwise: one input channel per group) or ``g`` (grouped);
- ``w<b>``: output channels / features in log2 buckets, b = round(log2(width));
- ``h<heads>``: attention heads, where the graph shows them (nn.MultiheadAttention).

Every graph is hashed in three views (``VIEWS``): "fine" (the labels as they
are), "coarse" (the part before ``" | "``: width-free) and "abstract" (op
classes: any activation is "act", any normalisation "norm", pools "pool" or
"globalpool", convs keep only dw / g). Models of one family at different
widths stay near one another, and a family that swaps ReLU for hardswish still
shares its abstract patterns with its relatives.

Canonical ops: conv, convtranspose, linear (a matmul, mm or Gemm with one
weight operand), matmul (both operands computed), attention (softmax between
two matmuls, or a fused attention op), add, sub, mul, div, concat, relu,
relu6 (also Clip / clamp / hardtanh), gelu, silu, hardswish, sigmoid,
hardsigmoid, tanh, softmax, batchnorm, layernorm, groupnorm, instancenorm,
rmsnorm, maxpool, avgpool, globalavgpool, mean, upsample, embedding and the
few others in ``_OPS``. An op outside the vocabulary is labelled
``"unknown:<name>"`` (the route's own name, lower case), never an error.

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

import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from ._wl import GraphBatch, hash_labels, wl_features

__all__ = ["ArchGraph", "Archi2Vec", "embed", "graph_of", "model_side_features"]

ROUTES = ("fx", "autograd", "onnx", "given")
VIEWS = ("fine", "coarse", "abstract")
WIDTH_SEPARATOR = " | "

_TORCH_HINT = 'archi2vec needs torch for modules: pip install "fennec[torch]"'
_ONNX_HINT = 'archi2vec needs onnx for ONNX files: pip install "fennec[proxy]"'


def _names(canonical: str, *raw: str) -> dict:
    return {name: canonical for name in (canonical, *raw)}


# Raw op names (lower case, underscores dropped) of torch modules and functions,
# autograd nodes ("...Backward0" stripped) and ONNX op types -> canonical op.
_OPS: dict[str, str] = {
    **_names("conv", "conv1d", "conv2d", "conv3d", "conv", "convolution", "convbnrelu2d"),
    **_names("convtranspose", "convtranspose1d", "convtranspose2d", "convtranspose3d", "convtranspose"),
    **_names("linear", "gemm", "addmm", "lazylinear"),
    **_names("matmul", "mm", "bmm", "baddbmm", "matmulinteger"),
    **_names("einsum", "einsum"),
    **_names("attention", "multiheadattention", "scaleddotproductattention", "attention"),
    **_names("add", "add", "iadd", "radd"),
    **_names("sub", "sub", "isub", "rsub", "subtract"),
    **_names("mul", "mul", "imul", "multiply"),
    **_names("div", "div", "truediv", "itruediv", "floordiv", "truedivide", "divide"),
    **_names("concat", "cat", "concat", "concatenate", "stack"),
    **_names("relu", "relu"),
    **_names("relu6", "relu6", "hardtanh", "clip", "clamp"),
    **_names("gelu", "gelu", "fastgelu", "biasgelu"),
    **_names("silu", "silu", "swish"),
    **_names("hardswish", "hardswish"),
    **_names("hardsigmoid", "hardsigmoid"),
    **_names("sigmoid", "sigmoid"),
    **_names("tanh", "tanh"),
    **_names("leakyrelu", "leakyrelu"),
    **_names("prelu", "prelu"),
    **_names("elu", "elu", "selu", "celu"),
    **_names("softplus", "softplus"),
    **_names("mish", "mish"),
    **_names("erf", "erf"),
    **_names("exp", "exp"),
    **_names("log", "log"),
    **_names("sqrt", "sqrt"),
    **_names("rsqrt", "rsqrt", "reciprocal"),
    **_names("pow", "pow", "square"),
    **_names("abs", "abs"),
    **_names("neg", "neg"),
    **_names("softmax", "softmax", "logsoftmax", "safesoftmax"),
    **_names("batchnorm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "batchnorm", "nativebatchnorm",
             "batchnormalization", "cudnnbatchnorm", "syncbatchnorm", "nativebatchnormlegit",
             "nativebatchnormlegitnoinference"),
    **_names("layernorm", "layernorm", "nativelayernorm", "layernormalization"),
    **_names("groupnorm", "groupnorm", "nativegroupnorm", "groupnormalization"),
    **_names("instancenorm", "instancenorm1d", "instancenorm2d", "instancenorm3d", "instancenorm",
             "instancenormalization"),
    **_names("rmsnorm", "rmsnorm", "rmsnormalization", "simplifiedlayernormalization"),
    **_names("localresponsenorm", "localresponsenorm", "lrn"),
    **_names("maxpool", "maxpool1d", "maxpool2d", "maxpool3d", "maxpool", "maxpool2dwithindices",
             "maxpool3dwithindices", "maxpool1dwithindices"),
    **_names("avgpool", "avgpool1d", "avgpool2d", "avgpool3d", "averagepool"),
    **_names("globalavgpool", "globalaveragepool"),
    **_names("globalmaxpool", "globalmaxpool"),
    **_names("adaptiveavgpool", "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d"),
    **_names("adaptivemaxpool", "adaptivemaxpool1d", "adaptivemaxpool2d", "adaptivemaxpool3d"),
    **_names("mean", "mean", "reducemean"),
    **_names("reducesum", "reducesum", "sum"),
    **_names("reducemax", "amax", "max", "reducemax"),
    **_names("upsample", "upsample", "interpolate", "resize", "upsamplebilinear2d", "upsamplenearest2d",
             "upsamplebicubic2d", "upsamplingnearest2d", "upsamplingbilinear2d", "pixelshuffle",
             "depthtospace"),
    **_names("embedding", "embedding", "embeddingbag"),
    **_names("where", "where"),
    **_names("topk", "topk"),
}

# Layout, copies, casts and regularisers at inference: data passes through unchanged in kind.
_PLUMBING = frozenset({
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "clone", "detach",
    "expand", "expandas", "repeat", "tile", "squeeze", "unsqueeze", "identity", "dropout", "dropout1d",
    "dropout2d", "dropout3d", "alphadropout", "featurealphadropout", "nativedropout", "droppath",
    "pad", "constantpadnd", "zeropad1d", "zeropad2d", "zeropad3d", "constantpad1d", "constantpad2d",
    "constantpad3d", "reflectionpad1d", "reflectionpad2d", "replicationpad1d", "replicationpad2d",
    "reflectionpad2dbackward", "getitem", "select", "slice", "index", "narrow", "chunk", "split",
    "splitwithsizes", "unbind", "unsafeview", "unsafesplit", "unsafesplitwithsizes", "alias", "tocopy",
    "to", "type", "float", "half", "double", "bfloat16", "cast", "castlike", "copy", "asstrided", "gather",
    "gatherelements", "movedim", "swapaxes", "flip", "roll", "viewas", "reshapeas", "lift", "liftfresh",
    "align", "quantizelinear", "dequantizelinear", "indexselect", "reshapealias", "unsafeindex", "viewasreal",
    "viewascomplex", "diagonal",
})

# Ops whose result depends only on shapes: they never carry data.
_SHAPE_OPS = frozenset({"size", "shape", "dim", "numel", "getattr", "constant", "constantofshape", "range",
                        "symsize", "symnumel", "arange", "zeros", "ones", "full", "empty", "eyelike"})

# Multi-operand ops that reduce to a pass-through when only one operand is computed
# (bias and position-embedding adds, scalar scales, a constant token concatenated).
_PASS_WHEN_ONE_INPUT = frozenset({"add", "sub", "mul", "div", "pow", "concat", "where"})

# x * f(x) -> fused activation.
_GATED = {"sigmoid": "silu", "erf": "gelu", "hardsigmoid": "hardswish"}

# Ops on the path from (x - mean(x)) to its scale in a decomposed normalisation.
_NORM_CHAIN = frozenset({"mean", "sqrt", "rsqrt", "pow"})


def _raw_name(name: str) -> str:
    return name.lower().replace("_", "").replace(".", "")


def _canonical_op(name: str) -> str:
    """Canonical op for a route's op name; plumbing and shape ops keep their raw name."""
    raw = _raw_name(name)
    if raw in _OPS:
        return _OPS[raw]
    if raw in _PLUMBING or raw in _SHAPE_OPS:
        return raw
    if "scaleddotproduct" in raw or raw.endswith("attention"):
        return "attention"
    return f"unknown:{name.lower()}"


_ACTIVATIONS = frozenset({"relu", "relu6", "gelu", "silu", "hardswish", "sigmoid", "hardsigmoid", "tanh",
                          "leakyrelu", "prelu", "elu", "softplus", "mish"})
_NORMS = frozenset({"batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm", "localresponsenorm"})
_GLOBAL_POOLS = frozenset({"globalavgpool", "globalmaxpool", "adaptiveavgpool", "adaptivemaxpool", "mean"})


def _abstract_label(coarse: str) -> str:
    op, *tokens = coarse.split(" ")
    if op in _ACTIVATIONS:
        return "act"
    if op in _NORMS:
        return "norm"
    if op in ("maxpool", "avgpool"):
        return "pool"
    if op in _GLOBAL_POOLS:
        return "globalpool"
    return " ".join([op] + [t for t in tokens if t in ("dw", "g")])


@dataclass(frozen=True, eq=False)
class ArchGraph:
    """A model's computation graph: one node per operation, edges along the data flow.

    labels: one string per node (see the module docstring for the format);
    edges: (E, 2) int64, row (u, v) says that node u's output feeds node v;
    route: how the graph was extracted: "fx", "autograd", "onnx" (or "given");
    name: the model's name.
    """

    labels: tuple
    edges: np.ndarray
    route: str = "given"
    name: str = ""

    def __post_init__(self):
        labels = self.labels
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
            raise TypeError(f"labels must be a sequence of str, got {type(labels).__name__}")
        labels = tuple(labels)
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label:
                raise TypeError(f"labels[{i}] must be a non-empty str, got {label!r}")
        if not labels:
            raise ValueError(f"the graph of {self.name or 'this model'} is empty: it has no operations")
        edges = np.asarray(self.edges)
        if edges.size == 0:
            edges = np.zeros((0, 2), dtype=np.int64)
        if edges.dtype.kind not in "iu" or edges.ndim != 2 or edges.shape[1] != 2:
            raise ValueError(f"edges must be an (E, 2) integer array, got dtype {edges.dtype} shape {edges.shape}")
        if edges.size and (edges.min() < 0 or edges.max() >= len(labels)):
            node = int(edges.max() if edges.max() >= len(labels) else edges.min())
            raise ValueError(f"edges refer to node {node} but the graph has {len(labels)} nodes")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "edges", np.ascontiguousarray(edges, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ArchGraph(name={self.name!r}, route={self.route!r}, nodes={len(self)}, edges={len(self.edges)})"

    @property
    def coarse_labels(self) -> tuple:
        """The labels without their width attributes (the part before " | ")."""
        return tuple(label.split(WIDTH_SEPARATOR, 1)[0] for label in self.labels)

    @property
    def ops(self) -> tuple:
        """The canonical op of each node (the label's first word)."""
        return tuple(label.split(" ", 1)[0] for label in self.labels)

    @property
    def abstract_labels(self) -> tuple:
        """The op classes: any activation is "act", any normalisation "norm"; convs keep dw / g only."""
        return tuple(_abstract_label(label) for label in self.coarse_labels)

    def view_labels(self, view: str) -> tuple:
        """The labels of one view: "fine" (as stored), "coarse" or "abstract"."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        return {"fine": lambda: self.labels, "coarse": lambda: self.coarse_labels,
                "abstract": lambda: self.abstract_labels}[view]()

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {"name": self.name, "route": self.route, "labels": list(self.labels),
                "edges": self.edges.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> ArchGraph:
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = {"labels", "edges"} - set(data)
        if missing:
            raise ValueError(f"data is missing {', '.join(sorted(missing))}")
        return cls(labels=data["labels"], edges=np.asarray(data["edges"], dtype=np.int64).reshape(-1, 2),
                   route=data.get("route", "given"), name=data.get("name", ""))

    def to_networkx(self, view: str = "fine"):
        """A networkx DiGraph with the label of ``view`` in node attribute "label"."""
        import networkx as nx

        graph = nx.DiGraph()
        labels = self.view_labels(view)
        graph.add_nodes_from((i, {"label": label}) for i, label in enumerate(labels))
        graph.add_edges_from(self.edges.tolist())
        return graph


class _Node:
    """A node of the raw graph every route builds: a canonical op, attributes and operand nodes."""

    __slots__ = ("op", "attrs", "inputs", "static", "source")

    def __init__(self, op: str, attrs: dict | None = None, inputs: Sequence[int] = (), *,
                 static: bool = False, source: bool = False):
        self.op = op
        self.attrs = attrs or {}
        self.inputs = list(inputs)
        self.static = static  # its value depends only on weights, constants or shapes
        self.source = source  # a model input, or an op that reads one (an embedding lookup)


def _axes_text(values) -> str:
    values = [int(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _width_bucket(width) -> int:
    return int(round(math.log2(max(int(width), 1))))


def _label(op: str, attrs: dict) -> str:
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


def _canonical_graph(raw: list[_Node], name: str, route: str) -> ArchGraph:
    """Plumbing removed, exporter artefacts folded, patterns fused; raw nodes come in topological order."""
    n = len(raw)
    static = [False] * n
    for v, node in enumerate(raw):
        if node.source:
            continue
        if node.static or node.op in _SHAPE_OPS:
            static[v] = True
        else:
            static[v] = all(static[u] for u in node.inputs)

    # Contract pass-through nodes: each node's "effective" producers are the kept nodes its data came from.
    kept: dict[int, _Node] = {}
    preds: dict[int, list[int]] = {}
    effective: list[list[int]] = [[] for _ in range(n)]
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
        if op in _PLUMBING or (op in _PASS_WHEN_ONE_INPUT and n_dynamic <= 1):
            effective[v] = sources
            continue
        if op == "mean" and len(node.attrs.get("axes") or ()) >= 2:
            op = "globalavgpool"
        kept[v] = _Node(op, node.attrs)
        preds[v] = sources
        effective[v] = [v]
    _fuse(kept, preds)
    order = sorted(kept)
    index = {v: i for i, v in enumerate(order)}
    labels = [_label(kept[v].op, kept[v].attrs) for v in order]
    edges = sorted({(index[u], index[v]) for v in order for u in preds[v]})
    if all(label == "input" for label in labels):
        raise ValueError(f"the graph of {name} is empty: no operation on the data path was found "
                         f"(route {route})")
    return ArchGraph(tuple(labels), np.array(edges, dtype=np.int64).reshape(-1, 2), route=route, name=name)


class _Dag:
    """The kept nodes with predecessor and successor lists, updated in place as patterns are fused."""

    def __init__(self, kept: dict[int, _Node], preds: dict[int, list[int]]):
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
        self.nodes[keep] = _Node(op, self.nodes[keep].attrs if op == self.nodes[keep].op else {})


def _fuse(kept: dict[int, _Node], preds: dict[int, list[int]]) -> None:
    dag = _Dag(kept, preds)
    succs = dag.succs
    # Batchnorm right after a conv is folded into it, as ONNX exporters do.
    for v in sorted(kept):
        if v in kept and dag.op(v) == "batchnorm" and len(preds[v]) == 1:
            (u,) = preds[v]
            if dag.op(u) in ("conv", "convtranspose") and succs[u] == [v]:
                dag.merge(u, [v], preds[u], dag.op(u))

    # x * f(x) -> gated activation (silu, gelu, hardswish).
    for v in sorted(kept):
        if v not in kept or dag.op(v) != "mul" or len(preds[v]) != 2:
            continue
        for gate, x in (tuple(preds[v]), tuple(reversed(preds[v]))):
            if dag.op(gate) in _GATED and preds[gate] == [x] and succs[gate] == [v]:
                dag.merge(v, [gate], [x], _GATED[dag.op(gate)])
                break

    # (x - mean(x)) / sqrt(mean((x - mean)^2)) -> layernorm; x * rsqrt(mean(x^2)) -> rmsnorm.
    for v in sorted(kept):
        if v not in kept or dag.op(v) not in ("div", "mul") or len(preds[v]) != 2:
            continue
        for centred, scale in (tuple(preds[v]), tuple(reversed(preds[v]))):
            chain, w = [], scale
            while w in kept and dag.op(w) in _NORM_CHAIN and len(preds[w]) == 1 and len(succs[w]) == 1:
                chain.append(w)
                w = preds[w][0]
            if w != centred or not any(dag.op(c) == "mean" for c in chain):
                continue
            if dag.op(centred) == "sub":
                if len(preds[centred]) != 2:
                    continue
                x, mean = preds[centred]
                if not (dag.op(mean) == "mean" and preds[mean] == [x]):
                    x, mean = mean, x
                if dag.op(mean) == "mean" and preds[mean] == [x] and len(succs[mean]) == 1:
                    dag.merge(v, chain + [centred, mean], [x], "layernorm")
                    break
            else:
                dag.merge(v, chain, [centred], "rmsnorm")
                break

    # matmul -> softmax -> matmul -> attention.
    for s in sorted(kept):
        if s not in kept or dag.op(s) != "softmax" or len(preds[s]) != 1:
            continue
        (scores,) = preds[s]
        if dag.op(scores) != "matmul" or succs[scores] != [s] or len(succs[s]) != 1:
            continue
        (out,) = succs[s]
        if dag.op(out) == "matmul":
            dag.merge(out, [scores, s], preds[scores] + preds[out], "attention")


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    return torch


def _tuple(value, rank: int | None = None) -> tuple:
    if value is None:
        return ()
    if isinstance(value, numbers.Integral):
        return (int(value),) * (rank or 1)
    return tuple(int(v) for v in value)


def _conv_attrs(weight_shape, stride, dilation, groups, transposed=False) -> dict:
    shape = tuple(int(s) for s in weight_shape)
    rank = max(len(shape) - 2, 1)
    groups = int(groups or 1)
    # A transposed conv's weight is (in, out / groups, k...).
    width = shape[1] * groups if transposed else shape[0]
    in_per_group = shape[0] // groups if transposed else shape[1]
    return {"kernel": shape[2:], "stride": _tuple(stride, rank) or (1,) * rank,
            "dilation": _tuple(dilation, rank) or (1,) * rank, "groups": groups,
            "in_per_group": in_per_group, "width": width}


def _pool_attrs(kernel, stride, rank=2) -> dict:
    kernel = _tuple(kernel, rank)
    return {"kernel": kernel, "stride": _tuple(stride, rank) or kernel}


def _is_global(output_size) -> bool:
    return output_size is not None and all(v == 1 for v in _tuple(output_size))


def _module_node(module, inputs) -> list[_Node]:
    """Nodes for an fx leaf module (usually one; nn.MultiheadAttention gives in-proj, attention, out-proj)."""
    torch = _import_torch()
    nn = torch.nn
    kind = type(module).__name__
    if isinstance(module, (nn.modules.conv._ConvNd,)):
        transposed = bool(getattr(module, "transposed", False))
        op = "convtranspose" if transposed else "conv"
        return [_Node(op, _conv_attrs(module.weight.shape, module.stride, module.dilation, module.groups,
                                      transposed), inputs)]
    if isinstance(module, nn.Linear):
        return [_Node("linear", {"width": module.out_features}, inputs)]
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        rank = int(kind[-2])
        op = "maxpool" if kind.startswith("Max") else "avgpool"
        return [_Node(op, _pool_attrs(module.kernel_size, module.stride, rank), inputs)]
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return [_Node("globalavgpool" if _is_global(module.output_size) else "adaptiveavgpool", {}, inputs)]
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return [_Node("globalmaxpool" if _is_global(module.output_size) else "adaptivemaxpool", {}, inputs)]
    if isinstance(module, nn.MultiheadAttention):
        return [_Node("linear", {"width": 3 * module.embed_dim}, inputs),
                _Node("attention", {"heads": module.num_heads}, [-1]),
                _Node("linear", {"width": module.out_proj.out_features}, [-1])]
    if isinstance(module, nn.Embedding):
        return [_Node("embedding", {"width": module.embedding_dim}, inputs, source=True)]
    return [_Node(_canonical_op(kind), {}, inputs)]


def _arg(node, position: int, name: str, default=None):
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _function_attrs(op: str, node, shape_of) -> dict:
    """Attributes of an fx call_function / call_method node, read from its arguments."""
    if op == "conv":
        weight = shape_of(_arg(node, 1, "weight"))
        if weight is None:
            return {}
        return _conv_attrs(weight, _arg(node, 3, "stride", 1), _arg(node, 5, "dilation", 1),
                           _arg(node, 6, "groups", 1))
    if op == "linear":
        weight = shape_of(_arg(node, 1, "weight"))
        return {"width": weight[0]} if weight is not None else {}
    if op == "matmul":
        for operand in node.args[:2]:
            shape = shape_of(operand)
            if shape is not None:
                return {"width": shape[-1]}
        return {}
    if op in ("maxpool", "avgpool"):
        return _pool_attrs(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"))
    if op == "mean":
        axes = _arg(node, 1, "dim")
        return {"axes": _tuple(axes) if axes is not None else None}
    return {}


def _fx_graph(model, name: str) -> ArchGraph:
    _import_torch()
    import torch.fx as fx

    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())

    def shape_of(arg):
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            try:
                value = traced.get_parameter(arg.target)
            except AttributeError:
                try:
                    value = traced.get_buffer(arg.target)
                except AttributeError:
                    return None
            return tuple(value.shape)
        return None

    raw: list[_Node] = []
    index: dict = {}
    for node in traced.graph.nodes:
        inputs = [index[a] for a in node.all_input_nodes if a in index]
        if node.op == "placeholder":
            nodes = [_Node("input", {}, [], source=True)]
        elif node.op == "get_attr":
            nodes = [_Node("param", {}, [], static=True)]
        elif node.op == "output":
            continue
        elif node.op == "call_module":
            nodes = _module_node(modules[node.target], inputs)
        else:
            target = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
            op = _canonical_op(target)
            if op == "adaptiveavgpool":
                op = "globalavgpool" if _is_global(_arg(node, 1, "output_size")) else op
            nodes = [_Node(op, _function_attrs(op, node, shape_of), inputs)]
        for node_ in nodes:
            node_.inputs = [len(raw) - 1 if u == -1 else u for u in node_.inputs]
            raw.append(node_)
        index[node] = len(raw) - 1
    return _canonical_graph(raw, name, "fx")


def _autograd_graph(model, example_input, name: str) -> ArchGraph:
    torch = _import_torch()
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    prepared = []
    for item in inputs:
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            item = item.detach().clone().requires_grad_(True)
        prepared.append(item)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            output = model(*prepared)
    finally:
        model.train(was_training)
    outputs = []

    def collect(value):
        if isinstance(value, torch.Tensor):
            outputs.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, (tuple, list)):
            for item in value:
                collect(item)

    collect(output)
    roots = [t.grad_fn for t in outputs if t.grad_fn is not None]
    if not roots:
        raise ValueError(f"the output of {name} has no autograd history: no operation depends on the input")
    input_ids = {id(t) for t in prepared if isinstance(t, torch.Tensor)}

    # Post-order walk (iterative: deep models overflow recursion) gives producers before consumers.
    order, seen, stack = [], {}, [(fn, False) for fn in reversed(roots)]
    while stack:
        fn, done = stack.pop()
        if done:
            if id(fn) not in seen:
                seen[id(fn)] = len(order)
                order.append(fn)
            continue
        if id(fn) in seen:
            continue
        stack.append((fn, True))
        for child, _ in reversed(fn.next_functions):
            if child is not None and id(child) not in seen:
                stack.append((child, False))

    raw = []
    for fn in order:
        inputs = [seen[id(c)] for c, _ in fn.next_functions if c is not None]
        kind = type(fn).__name__
        if kind == "AccumulateGrad":
            is_input = id(fn.variable) in input_ids
            raw.append(_Node("input", {}, [], source=True) if is_input else _Node("param", {}, [], static=True))
            continue
        base = re.sub(r"Backward\d*$", "", kind)
        op = _canonical_op(base)
        attrs = _autograd_attrs(op, fn)
        if op == "conv" and getattr(fn, "_saved_transposed", False):
            op = "convtranspose"
            attrs = _conv_attrs(fn._saved_weight.shape, fn._saved_stride, fn._saved_dilation, fn._saved_groups,
                                True)
        raw.append(_Node(op, attrs, inputs, source=op == "embedding"))
    return _canonical_graph(raw, name, "autograd")


def _autograd_attrs(op: str, fn) -> dict:
    try:
        if op == "conv":
            return _conv_attrs(fn._saved_weight.shape, fn._saved_stride, fn._saved_dilation, fn._saved_groups)
        if op in ("linear", "matmul") and hasattr(fn, "_saved_mat2_sym_sizes"):
            return {"width": fn._saved_mat2_sym_sizes[-1]}
        if op in ("maxpool", "avgpool"):
            return _pool_attrs(fn._saved_kernel_size, fn._saved_stride, len(fn._saved_kernel_size))
        if op == "mean" and hasattr(fn, "_saved_dim"):
            return {"axes": tuple(fn._saved_dim)}
        if op == "embedding" and hasattr(fn, "_saved_weight_sym_argsize_1"):
            return {"width": fn._saved_weight_sym_argsize_1}
    except (AttributeError, RuntimeError):
        pass  # a saved value freed or absent in this torch version: the op keeps its name
    return {}


def _onnx_attribute(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            from onnx import helper

            return helper.get_attribute_value(attribute)
    return default


def _onnx_graph(model, name: str) -> ArchGraph:
    graph = model.graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _onnx_attribute(node, "value")
            if value is not None and hasattr(value, "dims"):
                shapes[node.output[0]] = tuple(value.dims)
    producer: dict[str, int] = {}
    raw: list[_Node] = []
    for value in graph.input:
        if value.name in shapes:
            continue  # an initializer listed among the inputs (older exporters)
        raw.append(_Node("input", {}, [], source=True))
        producer[value.name] = len(raw) - 1
    for tensor in shapes:
        raw.append(_Node("param", {}, [], static=True))
        producer.setdefault(tensor, len(raw) - 1)
    for node in graph.node:
        op_type = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        op = _canonical_op(op_type)
        inputs = [producer[t] for t in node.input if t and t in producer]
        attrs = {}
        if op in ("conv", "convtranspose") and len(node.input) > 1 and node.input[1] in shapes:
            weight = shapes[node.input[1]]
            attrs = _conv_attrs(weight, _onnx_attribute(node, "strides"), _onnx_attribute(node, "dilations"),
                                _onnx_attribute(node, "group", 1), op == "convtranspose")
            kernel = _onnx_attribute(node, "kernel_shape")
            if kernel:
                attrs["kernel"] = tuple(kernel)
        elif op == "linear" and len(node.input) > 1 and node.input[1] in shapes:
            weight = shapes[node.input[1]]
            attrs = {"width": weight[0] if _onnx_attribute(node, "transB", 0) else weight[-1]}
        elif op == "matmul":
            for tensor in node.input[1:2] or ():
                if tensor in shapes and shapes[tensor]:
                    attrs = {"width": shapes[tensor][-1]}
        elif op in ("maxpool", "avgpool"):
            kernel = _onnx_attribute(node, "kernel_shape")
            attrs = _pool_attrs(kernel, _onnx_attribute(node, "strides"), len(kernel or (0, 0)))
        elif op == "mean":
            axes = _onnx_attribute(node, "axes")
            if axes is None and len(node.input) > 1:
                axes = _onnx_constant_ints(graph, node.input[1])
            attrs = {"axes": tuple(axes) if axes is not None else None}
        elif op_type == "Gather" and node.input and node.input[0] in shapes:
            op = "embedding"  # a lookup into a weight table by computed indices
            attrs = {"width": shapes[node.input[0]][-1]} if shapes[node.input[0]] else {}
        raw.append(_Node(op, attrs, inputs, static=op_type == "Shape"))
        for tensor in node.output:
            if tensor:
                producer[tensor] = len(raw) - 1
    return _canonical_graph(raw, name, "onnx")


def _onnx_constant_ints(graph, tensor_name):
    from onnx import numpy_helper

    for tensor in graph.initializer:
        if tensor.name == tensor_name:
            return numpy_helper.to_array(tensor).astype(np.int64).ravel().tolist()
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == tensor_name:
            value = _onnx_attribute(node, "value")
            if value is not None:
                return numpy_helper.to_array(value).astype(np.int64).ravel().tolist()
    return None


def _load_onnx(path) -> tuple:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(_ONNX_HINT) from exc
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX file {path!r} does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, RuntimeError... for a damaged file
        raise ValueError(f"{path!r} is not a readable ONNX model: {type(exc).__name__}: {exc}") from None
    if not model.graph.node:
        raise ValueError(f"{path!r} holds no ONNX graph nodes: is it an ONNX model file?")
    return model


def _is_module(item) -> bool:
    torch_module = __import__("sys").modules.get("torch")
    return torch_module is not None and isinstance(item, torch_module.nn.Module)


def graph_of(model, example_input=None, *, name: str | None = None) -> ArchGraph:
    """The architecture graph of a torch module or an ONNX file.

    model: a ``torch.nn.Module`` (traced with torch.fx; where fx fails, e.g. on
    data-dependent control flow, the autograd graph of one forward pass on
    ``example_input`` is walked instead), a path to an ``.onnx`` file, an
    ``onnx.ModelProto``, or an :class:`ArchGraph` (returned as it is).
    example_input: a tensor or a tuple of tensors; needed only when fx fails.
    name: the model's name; default the module's class name or the file's stem.

    ONNX control-flow ops (If, Loop, Scan) are kept as one "unknown:" node each;
    their bodies are not walked. The graph's ``route`` says which extraction was
    used. Raises ValueError naming the model when neither route can trace it or
    when no operation is found, ValueError naming the file for an ONNX file that
    does not parse, FileNotFoundError for a missing one.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if isinstance(model, ArchGraph):
        return model
    if isinstance(model, (str, os.PathLike)):
        onnx_model = _load_onnx(model)
        stem = os.path.splitext(os.path.basename(os.fspath(model)))[0]
        return _onnx_graph(onnx_model, name or stem)
    if type(model).__name__ == "ModelProto" and hasattr(model, "graph"):
        return _onnx_graph(model, name or model.graph.name or "onnx model")
    if not _is_module(model):
        raise TypeError("model must be a torch.nn.Module, a path to an ONNX file, an onnx.ModelProto or an "
                        f"ArchGraph, got {type(model).__name__}")
    name = name or type(model).__name__
    try:
        return _fx_graph(model, name)
    except ValueError as exc:
        if "is empty" in str(exc):
            raise
        fx_error = exc
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... on dynamic code
        fx_error = exc
    fx_reason = f"{type(fx_error).__name__}: {str(fx_error).splitlines()[0] if str(fx_error) else ''}"
    if example_input is None:
        raise ValueError(f"torch.fx could not trace {name} ({fx_reason}); pass example_input so that the "
                         "autograd graph of one forward pass can be walked instead")
    try:
        return _autograd_graph(model, example_input, name)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ValueError(f"could not extract the graph of {name}: torch.fx failed ({fx_reason}) and the "
                         f"autograd walk of one forward pass failed ({reason})") from None


def _graphs(items, argument: str = "items") -> list[ArchGraph]:
    if isinstance(items, (str, bytes, os.PathLike, ArchGraph)) or _is_module(items):
        items = [items]
    if not isinstance(items, Iterable):
        raise TypeError(f"{argument} must be a sequence of ArchGraph, modules or ONNX paths, "
                        f"got {type(items).__name__}")
    graphs = []
    for i, item in enumerate(items):
        try:
            graphs.append(graph_of(item))
        except TypeError as exc:
            raise TypeError(f"{argument}[{i}]: {exc}") from None
    if not graphs:
        raise ValueError(f"{argument} is empty: give at least one graph, module or ONNX path")
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
    table = np.stack([hash_labels(distinct), hash_labels(coarse), hash_labels([_abstract_label(c) for c in coarse])],
                     axis=1)
    return table[ids]


def _depth_counts(graphs: list[ArchGraph], iterations: int, dim: int, per_depth: bool) -> np.ndarray:
    """Raw WL counts per view (VIEWS order) and, with per_depth, per depth 0..iterations.

    float32 (n, blocks, dim), blocks = len(VIEWS) * (iterations + 1) per depth, else len(VIEWS).
    The core sums depths 0..h into one row; depth h alone is the difference of the runs
    with h and h - 1 iterations (exact: the counts are small integers).
    """
    n_nodes = np.array([len(g) for g in graphs], dtype=np.int64)
    n_edges = np.array([len(g.edges) for g in graphs], dtype=np.int64)
    graph_offsets = np.concatenate([[0], np.cumsum(n_nodes)])
    edge_offsets = np.concatenate([[0], np.cumsum(n_edges)])
    edges = np.concatenate([g.edges for g in graphs]) if n_edges.sum() else np.zeros((0, 2), np.int64)
    hashes = _label_hashes(graphs)
    depths = iterations + 1 if per_depth else 1
    out = np.empty((len(graphs), len(VIEWS), depths, dim), dtype=np.float32)
    for view in range(len(VIEWS)):
        batch = GraphBatch(graph_offsets, np.ascontiguousarray(hashes[:, view]), edge_offsets, edges)
        if not per_depth:
            out[:, view, 0] = wl_features(batch, iterations, dim, direction="both")
            continue
        previous = None
        for depth in range(iterations + 1):
            total = wl_features(batch, depth, dim, direction="both")
            out[:, view, depth] = total if previous is None else total - previous
            previous = total
    return out.reshape(len(graphs), len(VIEWS) * depths, dim)


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be between {low} and {high}, got {value}" if high is not None
                         else f"{name} must be >= {low}, got {value}")
    return int(value)


class Archi2Vec:
    """WL subtree-pattern vectors of architecture graphs, optionally weighted and reduced on a zoo.

    Each graph gives one block per label view (fine, coarse, abstract) and, with
    ``per_depth``, per WL depth 0..iterations (else the depths summed): 12 blocks by
    default, of ``dim / blocks`` hashed pattern counts each. A block holds
    log(1 + count) (sublinear tf), times the IDF weight of its column when fitted
    (log((1 + n) / (1 + df)) + 1, Salton & Buckley 1988, smoothed as in
    scikit-learn), and is L2-normalised; the concatenation is scaled to unit norm,
    so rows compare by cosine similarity and every view and depth weighs the same.

    ``fit`` learns only arrays (IDF weights; with ``n_components``, a PCA mean,
    components and explained-variance shares): ``transform`` is inductive (a new
    model never refits; before any fit it applies no weights) and a graph always
    gives the same row, whatever else is in the batch. ``state``/``from_state``,
    ``save``/``load`` (npz, no pickle) and ``to_json``/``from_json`` carry a
    fitted encoder.
    """

    def __init__(self, iterations: int = 3, dim: int = 3072, *, per_depth: bool = True, idf: bool = True,
                 n_components: int | None = None):
        self.iterations = _check_int(iterations, "iterations", 0, 16)
        if not isinstance(per_depth, (bool, np.bool_)):
            raise TypeError(f"per_depth must be a bool, got {type(per_depth).__name__}")
        self.per_depth = bool(per_depth)
        self.dim = _check_int(dim, "dim", self.n_blocks)
        if self.dim % self.n_blocks:
            lower = self.dim - self.dim % self.n_blocks
            raise ValueError(f"dim must be a multiple of the {self.n_blocks} blocks (views x depths), got {dim}; "
                             f"use {lower or self.n_blocks} or {lower + self.n_blocks}")
        if not isinstance(idf, (bool, np.bool_)):
            raise TypeError(f"idf must be a bool, got {type(idf).__name__}")
        self.idf = bool(idf)
        self.n_components = None if n_components is None else _check_int(n_components, "n_components", 1)
        self.idf_weights: np.ndarray | None = None
        self.pca_mean: np.ndarray | None = None
        self.pca_components: np.ndarray | None = None
        self.pca_explained: np.ndarray | None = None  # share of the zoo's variance each component keeps
        self.n_fitted = 0

    @property
    def n_blocks(self) -> int:
        return len(VIEWS) * (self.iterations + 1 if self.per_depth else 1)

    @property
    def fitted(self) -> bool:
        return self.n_fitted > 0

    def _counts(self, graphs: list[ArchGraph]) -> np.ndarray:
        """(n, dim) sublinear counts, blocks side by side."""
        counts = _depth_counts(graphs, self.iterations, self.dim // self.n_blocks, self.per_depth)
        return np.log1p(counts).reshape(len(graphs), self.dim)

    def _normalise(self, tf: np.ndarray) -> np.ndarray:
        if self.idf_weights is not None:
            tf = tf * self.idf_weights
        blocks = tf.reshape(len(tf), self.n_blocks, -1)
        norms = np.linalg.norm(blocks, axis=2, keepdims=True)
        out = (blocks / np.where(norms > 0, norms, 1)).reshape(len(tf), self.dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    def fit(self, items) -> Archi2Vec:
        """Learns IDF weights (and, with n_components, a PCA) from a corpus of models."""
        graphs = _graphs(items)
        tf = self._counts(graphs)
        self.idf_weights = None
        if self.idf:
            df = np.count_nonzero(tf > 0, axis=0)
            self.idf_weights = (np.log((1 + len(graphs)) / (1 + df)) + 1).astype(np.float32)
        self.pca_mean = self.pca_components = self.pca_explained = None
        if self.n_components is not None:
            if self.n_components > len(graphs) - 1:
                raise ValueError(f"n_components must be at most the number of models minus one "
                                 f"({len(graphs) - 1}), got {self.n_components}")
            rows = self._normalise(tf).astype(np.float64)
            mean = rows.mean(axis=0)
            _, singular, vt = np.linalg.svd(rows - mean, full_matrices=False)
            total = float((singular ** 2).sum())
            self.pca_explained = (singular[: self.n_components] ** 2 / (total if total > 0 else 1)).astype(np.float32)
            components = vt[: self.n_components]
            # A fixed sign (largest loading positive) so that refitting the same zoo gives the same axes.
            signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
            self.pca_mean = mean.astype(np.float32)
            self.pca_components = (components * signs[:, None]).astype(np.float32)
        self.n_fitted = len(graphs)
        return self

    def transform(self, items) -> np.ndarray:
        """One float32 row per item (ArchGraph, module or ONNX path); never refits."""
        rows = self._normalise(self._counts(_graphs(items)))
        if self.pca_components is not None:
            # einsum, not BLAS: each row's sums run in one fixed order, whatever the batch size.
            rows = np.einsum("nd,kd->nk", rows.astype(np.float64) - self.pca_mean,
                             self.pca_components.astype(np.float64))
        return np.ascontiguousarray(rows, dtype=np.float32)

    def fit_transform(self, items) -> np.ndarray:
        graphs = _graphs(items)
        return self.fit(graphs).transform(graphs)

    def state(self) -> dict:
        """The fitted encoder as plain values and float32 arrays (JSON- and npz-ready)."""
        state = {"iterations": np.int64(self.iterations), "dim": np.int64(self.dim),
                 "per_depth": np.bool_(self.per_depth), "idf": np.bool_(self.idf),
                 "n_components": np.int64(self.n_components or 0), "n_fitted": np.int64(self.n_fitted)}
        for key in ("idf_weights", "pca_mean", "pca_components", "pca_explained"):
            value = getattr(self, key)
            if value is not None:
                state[key] = value
        return state

    @classmethod
    def from_state(cls, state: dict) -> Archi2Vec:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"iterations", "dim", "idf", "n_components"} - set(state)
        if missing:
            raise ValueError(f"state is missing {', '.join(sorted(missing))}")
        n_components = int(np.asarray(state["n_components"]))
        encoder = cls(int(np.asarray(state["iterations"])), int(np.asarray(state["dim"])),
                      per_depth=bool(np.asarray(state.get("per_depth", True))), idf=bool(np.asarray(state["idf"])),
                      n_components=n_components or None)
        encoder.n_fitted = int(np.asarray(state.get("n_fitted", 0)))
        for key, shape in (("idf_weights", (encoder.dim,)), ("pca_mean", (encoder.dim,)),
                           ("pca_components", (n_components, encoder.dim)), ("pca_explained", (n_components,))):
            if key in state:
                value = np.asarray(state[key], dtype=np.float32)
                if value.shape != shape:
                    raise ValueError(f"state[{key!r}] must have shape {shape}, got {value.shape}")
                setattr(encoder, key, value)
        if n_components and encoder.pca_components is None:
            raise ValueError("state has n_components but no pca_components")
        return encoder

    def save(self, path) -> None:
        """Writes the state as an .npz file (written to a temporary file, then renamed into place)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        handle, tmp = tempfile.mkstemp(dir=directory, suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as fh:
                np.savez(fh, **self.state())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> Archi2Vec:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            return cls.from_state({key: data[key] for key in data.files})

    def to_json(self) -> str:
        return json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v.item())
                           for k, v in self.state().items()})

    @classmethod
    def from_json(cls, text: str) -> Archi2Vec:
        return cls.from_state(json.loads(text))


def embed(items, *, iterations: int = 3, dim: int = 3072) -> np.ndarray:
    """archi2vec rows of architectures, one per item, comparable by cosine similarity.

    items: ArchGraph objects, torch modules (fx-traceable; call :func:`graph_of` with
    ``example_input`` first for the others) or paths to ONNX files.
    Returns float32 (len(items), dim), unit-norm rows, unweighted (no corpus needed);
    for IDF weights learned on a zoo or a PCA reduction use :class:`Archi2Vec`.
    """
    return Archi2Vec(iterations, dim, idf=False).transform(items)


def model_side_features(items, *, n_components: int | None = None, iterations: int = 3,
                        dim: int = 3072) -> tuple[np.ndarray, Archi2Vec]:
    """Side-information vectors of a zoo's models and the encoder that made them.

    The encoder is fitted on ``items``: IDF weights, then a PCA to ``n_components``
    (default min(3, n - 1) for zoos of at most 50 models, no reduction above: a
    ridge regression over a few models wants few columns; ``encoder.pca_explained``
    says what each component keeps). A model added later gets its row with
    ``encoder.transform([model])``; store the encoder with ``encoder.state()``.
    """
    graphs = _graphs(items)
    if n_components is None and len(graphs) <= 50:
        if len(graphs) < 2:
            raise ValueError("model_side_features needs at least two models to fit a reduction")
        n_components = min(3, len(graphs) - 1)
    encoder = Archi2Vec(iterations, dim, n_components=n_components)
    return encoder.fit_transform(graphs), encoder
