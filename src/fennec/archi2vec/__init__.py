"""archi2vec: a model's computation graph as a fixed-size vector.

:func:`graph_of` turns a ``torch.nn.Module`` (torch.fx, or the autograd graph
of one forward pass where fx cannot trace) or an ONNX file into an
:class:`ArchGraph`: one node per operation, labelled with a canonical op name
and the attributes that shape inductive bias, and directed data-flow edges.
The same architecture reached through torch or through ONNX gets nearly the
same graph: every route maps onto one vocabulary and the same passes remove
what exporters add or fuse. :func:`embed` hashes the graphs' Weisfeiler-Lehman
subtree patterns into one row per model.

Where each part lives: :mod:`.graph` (ArchGraph and the label format),
:mod:`.vocabulary` (canonical op names), :mod:`.raw` (the raw graph routes
build), :mod:`.torch_route` and :mod:`.onnx_route` (the front ends),
:mod:`.canonical` (plumbing removal and fusion), :mod:`.extract`
(:func:`graph_of`) and :mod:`.encoder` (:func:`embed`).
"""

from __future__ import annotations

from .encoder import embed
from .extract import graph_of
from .graph import ROUTES, VIEWS, WIDTH_SEPARATOR, ArchGraph

__all__ = ["ROUTES", "VIEWS", "WIDTH_SEPARATOR", "ArchGraph", "embed", "graph_of"]
