"""The raw graph every route builds, and the attributes routes read off weights and arguments.

Routes emit :class:`RawNode` lists in topological order; :mod:`.canonical`
turns them into an :class:`~.graph.ArchGraph`. The attribute helpers live here
so that torch and ONNX describe a conv or a pool with the same keys.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["RawNode", "conv_attrs", "int_tuple", "pool_attrs"]


class RawNode:
    """A node of the raw graph every route builds: a canonical op, attributes and operand nodes."""

    __slots__ = ("op", "attrs", "inputs", "static", "source")

    def __init__(self, op: str, attrs: dict[str, Any] | None = None, inputs: Sequence[int] = (), *,
                 static: bool = False, source: bool = False):
        self.op = op
        self.attrs = attrs or {}
        self.inputs = list(inputs)
        self.static = static  # its value depends only on weights, constants or shapes
        self.source = source  # a model input, or an op that reads one (an embedding lookup)


def int_tuple(value: Any, rank: int | None = None) -> tuple[int, ...]:
    """A per-axis setting as a tuple of ints; a single int is repeated ``rank`` times, None is ()."""
    if value is None:
        return ()
    if isinstance(value, numbers.Integral):
        return (int(value),) * (rank or 1)
    return tuple(int(v) for v in value)


def conv_attrs(weight_shape: Iterable[int], stride: Any, dilation: Any, groups: Any,
               transposed: bool = False) -> dict[str, Any]:
    """A conv's label attributes from its weight's shape and its settings."""
    shape = tuple(int(s) for s in weight_shape)
    rank = max(len(shape) - 2, 1)
    groups = int(groups or 1)
    # A transposed conv's weight is (in, out / groups, k...).
    width = shape[1] * groups if transposed else shape[0]
    in_per_group = shape[0] // groups if transposed else shape[1]
    return {"kernel": shape[2:], "stride": int_tuple(stride, rank) or (1,) * rank,
            "dilation": int_tuple(dilation, rank) or (1,) * rank, "groups": groups,
            "in_per_group": in_per_group, "width": width}


def pool_attrs(kernel: Any, stride: Any, rank: int = 2) -> dict[str, Any]:
    """A pool's label attributes; a missing stride is the kernel, as in torch and ONNX."""
    kernel = int_tuple(kernel, rank)
    return {"kernel": kernel, "stride": int_tuple(stride, rank) or kernel}
