"""The ONNX front end: an ONNX file or ``onnx.ModelProto`` as a raw graph.

Weights are never loaded (``load_external_data=False``): only their shapes,
which the initializers carry, label the nodes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .canonical import canonical_graph
from .graph import ArchGraph
from .raw import RawNode, conv_attrs, pool_attrs
from .vocabulary import canonical_op

__all__ = ["load_onnx", "onnx_graph"]

_ONNX_HINT = 'archi2vec needs onnx for ONNX files: pip install "fennec[proxy]"'


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """The ``onnx.ModelProto`` in ``path``, without its external weights."""
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


def onnx_graph(model: Any, name: str) -> ArchGraph:
    """The graph of an ``onnx.ModelProto``; control-flow ops stay single nodes, their bodies unwalked."""
    graph = model.graph
    shapes = _constant_shapes(graph)
    producer: dict[str, int] = {}
    raw: list[RawNode] = []
    for value in graph.input:
        if value.name in shapes:
            continue  # an initializer listed among the inputs (older exporters)
        raw.append(RawNode("input", {}, [], source=True))
        producer[value.name] = len(raw) - 1
    for tensor in shapes:
        raw.append(RawNode("param", {}, [], static=True))
        producer.setdefault(tensor, len(raw) - 1)
    for node in graph.node:
        op_type = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        inputs = [producer[t] for t in node.input if t and t in producer]
        op, attrs = _op_and_attrs(graph, node, op_type, shapes)
        raw.append(RawNode(op, attrs, inputs, static=op_type == "Shape"))
        for tensor in node.output:
            if tensor:
                producer[tensor] = len(raw) - 1
    return canonical_graph(raw, name, "onnx")


def _constant_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """The shape of every initializer and Constant output, by tensor name."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attribute(node, "value")
            if value is not None and hasattr(value, "dims"):
                shapes[node.output[0]] = tuple(value.dims)
    return shapes


def _op_and_attrs(graph: Any, node: Any, op_type: str,
                  shapes: dict[str, tuple[int, ...]]) -> tuple[str, dict[str, Any]]:
    """A node's canonical op and label attributes, read from its attributes and its weights' shapes."""
    op = canonical_op(op_type)
    attrs: dict[str, Any] = {}
    if op in ("conv", "convtranspose") and len(node.input) > 1 and node.input[1] in shapes:
        weight = shapes[node.input[1]]
        attrs = conv_attrs(weight, _attribute(node, "strides"), _attribute(node, "dilations"),
                           _attribute(node, "group", 1), op == "convtranspose")
        kernel = _attribute(node, "kernel_shape")
        if kernel:
            attrs["kernel"] = tuple(kernel)
    elif op == "linear" and len(node.input) > 1 and node.input[1] in shapes:
        weight = shapes[node.input[1]]
        attrs = {"width": weight[0] if _attribute(node, "transB", 0) else weight[-1]}
    elif op == "matmul":
        for tensor in node.input[1:2] or ():
            if tensor in shapes and shapes[tensor]:
                attrs = {"width": shapes[tensor][-1]}
    elif op in ("maxpool", "avgpool"):
        kernel = _attribute(node, "kernel_shape")
        attrs = pool_attrs(kernel, _attribute(node, "strides"), len(kernel or (0, 0)))
    elif op == "mean":
        axes = _attribute(node, "axes")
        if axes is None and len(node.input) > 1:
            axes = _constant_ints(graph, node.input[1])
        attrs = {"axes": tuple(axes) if axes is not None else None}
    elif op_type == "Gather" and node.input and node.input[0] in shapes:
        op = "embedding"  # a lookup into a weight table by computed indices
        attrs = {"width": shapes[node.input[0]][-1]} if shapes[node.input[0]] else {}
    return op, attrs


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            from onnx import helper

            return helper.get_attribute_value(attribute)
    return default


def _constant_ints(graph: Any, tensor_name: str) -> list[int] | None:
    """The values of an initializer or Constant as ints (opset 18 gives ReduceMean its axes this way)."""
    from onnx import numpy_helper

    for tensor in graph.initializer:
        if tensor.name == tensor_name:
            ints: list[int] = numpy_helper.to_array(tensor).astype(np.int64).ravel().tolist()
            return ints
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == tensor_name:
            value = _attribute(node, "value")
            if value is not None:
                ints = numpy_helper.to_array(value).astype(np.int64).ravel().tolist()
                return ints
    return None
