"""The architecture graph every route returns, and the three label views it is hashed in.

A label is the canonical op name (see :mod:`.vocabulary`), then structural
attributes, then, after ``" | "``, attributes that only say how wide:
``"conv k3 s2 dw | w7"``.

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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ROUTES", "VIEWS", "WIDTH_SEPARATOR", "ArchGraph", "abstract_label"]

ROUTES = ("fx", "autograd", "onnx", "given")
VIEWS = ("fine", "coarse", "abstract")
WIDTH_SEPARATOR = " | "

_ACTIVATIONS = frozenset({"relu", "relu6", "gelu", "silu", "hardswish", "sigmoid", "hardsigmoid", "tanh",
                          "leakyrelu", "prelu", "elu", "softplus", "mish"})
_NORMS = frozenset({"batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm", "localresponsenorm"})
_GLOBAL_POOLS = frozenset({"globalavgpool", "globalmaxpool", "adaptiveavgpool", "adaptivemaxpool", "mean"})


def abstract_label(coarse: str) -> str:
    """The op class of a coarse label: "act", "norm", "pool", "globalpool", or the op with dw / g only."""
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

    labels: tuple[str, ...]
    edges: np.ndarray
    route: str = "given"
    name: str = ""

    def __post_init__(self) -> None:
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
    def coarse_labels(self) -> tuple[str, ...]:
        """The labels without their width attributes (the part before " | ")."""
        return tuple(label.split(WIDTH_SEPARATOR, 1)[0] for label in self.labels)

    @property
    def ops(self) -> tuple[str, ...]:
        """The canonical op of each node (the label's first word)."""
        return tuple(label.split(" ", 1)[0] for label in self.labels)

    @property
    def abstract_labels(self) -> tuple[str, ...]:
        """The op classes: any activation is "act", any normalisation "norm"; convs keep dw / g only."""
        return tuple(abstract_label(label) for label in self.coarse_labels)

    def view_labels(self, view: str) -> tuple[str, ...]:
        """The labels of one view: "fine" (as stored), "coarse" or "abstract"."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        return {"fine": lambda: self.labels, "coarse": lambda: self.coarse_labels,
                "abstract": lambda: self.abstract_labels}[view]()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {"name": self.name, "route": self.route, "labels": list(self.labels),
                "edges": self.edges.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchGraph:
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = {"labels", "edges"} - set(data)
        if missing:
            raise ValueError(f"data is missing {', '.join(sorted(missing))}")
        return cls(labels=data["labels"], edges=np.asarray(data["edges"], dtype=np.int64).reshape(-1, 2),
                   route=data.get("route", "given"), name=data.get("name", ""))

    def to_networkx(self, view: str = "fine") -> Any:
        """A networkx DiGraph with the label of ``view`` in node attribute "label"."""
        import networkx as nx

        graph = nx.DiGraph()
        labels = self.view_labels(view)
        graph.add_nodes_from((i, {"label": label}) for i, label in enumerate(labels))
        graph.add_edges_from(self.edges.tolist())
        return graph
