"""The one entry point to graph extraction: which route reads a given model."""

from __future__ import annotations

import os
from typing import Any

from .graph import ArchGraph
from .onnx_route import load_onnx, onnx_graph
from .torch_route import is_module, module_graph

__all__ = ["graph_of"]


def graph_of(model: Any, example_input: Any = None, *, name: str | None = None) -> ArchGraph:
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
        onnx_model = load_onnx(model)
        stem = os.path.splitext(os.path.basename(os.fspath(model)))[0]
        return onnx_graph(onnx_model, name or stem)
    # Recognised by name so that a ModelProto is read without importing onnx first.
    if type(model).__name__ == "ModelProto" and hasattr(model, "graph"):
        return onnx_graph(model, name or model.graph.name or "onnx model")
    if not is_module(model):
        raise TypeError("model must be a torch.nn.Module, a path to an ONNX file, an onnx.ModelProto or an "
                        f"ArchGraph, got {type(model).__name__}")
    return module_graph(model, example_input, name or type(model).__name__)
