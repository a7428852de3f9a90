"""The torch front ends: torch.fx tracing, and the autograd graph of one forward pass where fx fails.

torch is imported only when a module is given, so the rest of archi2vec works
without it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .canonical import canonical_graph
from .graph import ArchGraph
from .raw import RawNode, conv_attrs, int_tuple, pool_attrs
from .vocabulary import canonical_op

__all__ = ["autograd_graph", "fx_graph", "is_module", "module_graph"]

_TORCH_HINT = 'archi2vec needs torch for modules: pip install "fennec[torch]"'


def is_module(item: object) -> bool:
    """Whether ``item`` is a ``torch.nn.Module``, without importing torch when nobody has."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(item, torch_module.nn.Module)


def module_graph(model: Any, example_input: Any, name: str) -> ArchGraph:
    """The graph of a torch module: torch.fx, else the autograd walk of one forward pass on ``example_input``."""
    try:
        return fx_graph(model, name)
    except ValueError as exc:
        if "is empty" in str(exc):
            raise
        fx_error: Exception = exc
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... on dynamic code
        fx_error = exc
    fx_reason = _reason(fx_error)
    if example_input is None:
        raise ValueError(f"torch.fx could not trace {name} ({fx_reason}); pass example_input so that the "
                         "autograd graph of one forward pass can be walked instead")
    try:
        return autograd_graph(model, example_input, name)
    except Exception as exc:
        raise ValueError(f"could not extract the graph of {name}: torch.fx failed ({fx_reason}) and the "
                         f"autograd walk of one forward pass failed ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    return torch


def _is_global(output_size: Any) -> bool:
    return output_size is not None and all(v == 1 for v in int_tuple(output_size))


def _module_node(module: Any, inputs: list[int]) -> list[RawNode]:
    """Nodes for an fx leaf module (usually one; nn.MultiheadAttention gives in-proj, attention, out-proj)."""
    torch = _import_torch()
    nn = torch.nn
    kind = type(module).__name__
    if isinstance(module, (nn.modules.conv._ConvNd,)):
        transposed = bool(getattr(module, "transposed", False))
        op = "convtranspose" if transposed else "conv"
        return [RawNode(op, conv_attrs(module.weight.shape, module.stride, module.dilation, module.groups,
                                       transposed), inputs)]
    if isinstance(module, nn.Linear):
        return [RawNode("linear", {"width": module.out_features}, inputs)]
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        rank = int(kind[-2])
        op = "maxpool" if kind.startswith("Max") else "avgpool"
        return [RawNode(op, pool_attrs(module.kernel_size, module.stride, rank), inputs)]
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return [RawNode("globalavgpool" if _is_global(module.output_size) else "adaptiveavgpool", {}, inputs)]
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return [RawNode("globalmaxpool" if _is_global(module.output_size) else "adaptivemaxpool", {}, inputs)]
    if isinstance(module, nn.MultiheadAttention):
        return [RawNode("linear", {"width": 3 * module.embed_dim}, inputs),
                RawNode("attention", {"heads": module.num_heads}, [-1]),
                RawNode("linear", {"width": module.out_proj.out_features}, [-1])]
    if isinstance(module, nn.Embedding):
        return [RawNode("embedding", {"width": module.embedding_dim}, inputs, source=True)]
    return [RawNode(canonical_op(kind), {}, inputs)]


def _arg(node: Any, position: int, name: str, default: Any = None) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _function_attrs(op: str, node: Any, shape_of: Callable[[Any], tuple[int, ...] | None]) -> dict[str, Any]:
    """Attributes of an fx call_function / call_method node, read from its arguments."""
    if op == "conv":
        weight = shape_of(_arg(node, 1, "weight"))
        if weight is None:
            return {}
        return conv_attrs(weight, _arg(node, 3, "stride", 1), _arg(node, 5, "dilation", 1),
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
        return pool_attrs(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"))
    if op == "mean":
        axes = _arg(node, 1, "dim")
        return {"axes": int_tuple(axes) if axes is not None else None}
    return {}


def fx_graph(model: Any, name: str) -> ArchGraph:
    """The graph torch.fx traces of ``model``; raises what fx raises on code it cannot trace."""
    _import_torch()
    import torch.fx as fx

    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())

    def shape_of(arg: Any) -> tuple[int, ...] | None:
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            target: Any = arg.target  # a get_attr node's target is the attribute's dotted name
            value: Any
            try:
                value = traced.get_parameter(target)
            except AttributeError:
                try:
                    value = traced.get_buffer(target)
                except AttributeError:
                    return None
            return tuple(value.shape)
        return None

    raw: list[RawNode] = []
    index: dict[Any, int] = {}
    for node in traced.graph.nodes:
        if node.op == "output":
            continue
        inputs = [index[a] for a in node.all_input_nodes if a in index]
        for raw_node in _fx_nodes(node, inputs, modules, shape_of):
            # -1 stands for the node just before, inside a module's own chain (multi-head attention).
            raw_node.inputs = [len(raw) - 1 if u == -1 else u for u in raw_node.inputs]
            raw.append(raw_node)
        index[node] = len(raw) - 1
    return canonical_graph(raw, name, "fx")


def _fx_nodes(node: Any, inputs: list[int], modules: dict[str, Any],
              shape_of: Callable[[Any], tuple[int, ...] | None]) -> list[RawNode]:
    """The raw nodes of one fx node other than the output."""
    if node.op == "placeholder":
        return [RawNode("input", {}, [], source=True)]
    if node.op == "get_attr":
        return [RawNode("param", {}, [], static=True)]
    if node.op == "call_module":
        return _module_node(modules[node.target], inputs)
    target = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    op = canonical_op(target)
    if op == "adaptiveavgpool":
        op = "globalavgpool" if _is_global(_arg(node, 1, "output_size")) else op
    return [RawNode(op, _function_attrs(op, node, shape_of), inputs)]


def autograd_graph(model: Any, example_input: Any, name: str) -> ArchGraph:
    """The graph of the autograd history of one forward pass of ``model`` on ``example_input``."""
    torch = _import_torch()
    prepared, output = _forward(torch, model, example_input)
    outputs: list[Any] = []
    _collect_tensors(torch, output, outputs)
    roots = [t.grad_fn for t in outputs if t.grad_fn is not None]
    if not roots:
        raise ValueError(f"the output of {name} has no autograd history: no operation depends on the input")
    input_ids = {id(t) for t in prepared if isinstance(t, torch.Tensor)}
    order, seen = _post_order(roots)
    raw = [_autograd_node(fn, seen, input_ids) for fn in order]
    return canonical_graph(raw, name, "autograd")


def _forward(torch: Any, model: Any, example_input: Any) -> tuple[list[Any], Any]:
    """The inputs as given to the model (float tensors made to require grad) and its output, in eval mode."""
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
    return prepared, output


def _collect_tensors(torch: Any, value: Any, out: list[Any]) -> None:
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_tensors(torch, item, out)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _collect_tensors(torch, item, out)


def _post_order(roots: Sequence[Any]) -> tuple[list[Any], dict[int, int]]:
    """The autograd nodes producers first, and each node's position by id.

    Iterative, not recursive: the history of a deep model overflows Python's recursion limit.
    """
    order: list[Any] = []
    seen: dict[int, int] = {}
    stack = [(fn, False) for fn in reversed(roots)]
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
    return order, seen


def _autograd_node(fn: Any, seen: dict[int, int], input_ids: set[int]) -> RawNode:
    inputs = [seen[id(c)] for c, _ in fn.next_functions if c is not None]
    kind = type(fn).__name__
    if kind == "AccumulateGrad":
        is_input = id(fn.variable) in input_ids
        return RawNode("input", {}, [], source=True) if is_input else RawNode("param", {}, [], static=True)
    base = re.sub(r"Backward\d*$", "", kind)
    op = canonical_op(base)
    attrs = _autograd_attrs(op, fn)
    if op == "conv" and getattr(fn, "_saved_transposed", False):
        op = "convtranspose"
        attrs = conv_attrs(fn._saved_weight.shape, fn._saved_stride, fn._saved_dilation, fn._saved_groups, True)
    return RawNode(op, attrs, inputs, source=op == "embedding")


def _autograd_attrs(op: str, fn: Any) -> dict[str, Any]:
    try:
        if op == "conv":
            return conv_attrs(fn._saved_weight.shape, fn._saved_stride, fn._saved_dilation, fn._saved_groups)
        if op in ("linear", "matmul") and hasattr(fn, "_saved_mat2_sym_sizes"):
            return {"width": fn._saved_mat2_sym_sizes[-1]}
        if op in ("maxpool", "avgpool"):
            return pool_attrs(fn._saved_kernel_size, fn._saved_stride, len(fn._saved_kernel_size))
        if op == "mean" and hasattr(fn, "_saved_dim"):
            return {"axes": tuple(fn._saved_dim)}
        if op == "embedding" and hasattr(fn, "_saved_weight_sym_argsize_1"):
            return {"width": fn._saved_weight_sym_argsize_1}
    except (AttributeError, RuntimeError):
        pass  # a saved value freed or absent in this torch version: the op keeps its name
    return {}
