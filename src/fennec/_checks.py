"""The argument checks every entry point shares, so one bad value reads the same everywhere.

A value of the wrong type raises TypeError, a value out of range ValueError; both
name the argument and what it expected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["MAX_ID_LENGTH", "brief", "identifier", "integer", "real"]

# The longest model or task id, in characters. Ids are stored as fixed-width text
# (one fitted array row per model), so one very long id would widen every row.
MAX_ID_LENGTH = 256


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


def identifier(value: object, name: str) -> str:
    """``value`` as a model or task id: 1 to :data:`MAX_ID_LENGTH` printable characters (no
    control or format characters, NUL included), no whitespace at either end.

    Every entry point that takes an id checks it here, so a bad id reads the same
    from the library, the command line and the service.
    """
    # The common case in one pass: printable text excludes every whitespace but the ASCII space.
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable() and \
            value[0] != " " and value[-1] != " ":
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be text (an id), got {type(value).__name__} {brief(value)}")
    if not value:
        raise ValueError(f"{name} is empty; an id is 1 to {MAX_ID_LENGTH} printable characters")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{name} {value[:40]!r}... has {len(value):,} characters; an id is at most "
                         f"{MAX_ID_LENGTH}: shorten it")
    if not value.isprintable():
        at, char = next((i, c) for i, c in enumerate(value) if not c.isprintable())
        raise ValueError(f"{name} {brief(value)} holds the non-printable character U+{ord(char):04X} at "
                         f"position {at}; an id is printable text: remove it")
    if value != value.strip():
        raise ValueError(f"{name} {brief(value)} begins or ends with whitespace; remove it")
    return value


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters so that a message stays readable."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}..."


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
