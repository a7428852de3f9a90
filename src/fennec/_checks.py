"""The argument checks every entry point shares, so one bad value reads the same everywhere.

A value of the wrong type raises TypeError, a value out of range ValueError; both
name the argument and what it expected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["integer", "real"]


def integer(value: object, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int, refusing bools, floats and anything outside ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{_bounds(low, high)}, got {value!r}")
    out = int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        raise ValueError(f"{name} must be an integer{_bounds(low, high)}, got {out}")
    return out


def real(value: object, name: str, *, low: float | None = None, high: float | None = None,
         finite: bool = True) -> float:
    """``value`` as a float, refusing bools, non-numbers, NaN/inf (with ``finite``) and anything
    outside ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number{_bounds(low, high)}, got {value!r}")
    out = float(value)
    if (finite and not math.isfinite(out)) or (low is not None and out < low) or (
            high is not None and out > high):
        raise ValueError(f"{name} must be a finite number{_bounds(low, high)}, got {out}")
    return out


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
