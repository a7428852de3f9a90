"""What every part of :mod:`fennec.history` shares: the default kind, the errors, name checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "DEFAULT_KIND",
    "HistoryError",
    "HistoryFileNotFoundError",
    "HistoryWarning",
    "first_duplicate",
    "readonly",
    "str_tuple",
]

DEFAULT_KIND = "finetune"


class HistoryError(ValueError):
    """A history or side-information file that cannot be read as it is."""


class HistoryFileNotFoundError(HistoryError, FileNotFoundError):
    """The file to read does not exist (catchable as either parent)."""


class HistoryWarning(UserWarning):
    """Something in a history file that was repaired or that limits what it can teach."""


def str_tuple(values: Iterable[str], what: str) -> tuple[str, ...]:
    """``values`` as a tuple of str; a single string or a non-str entry is a TypeError naming ``what``."""
    if isinstance(values, str):
        raise TypeError(f"{what}: expected a sequence of names, got a single string {values!r}")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what}: expected names as str, got {type(v).__name__} {v!r}")
    return out


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only copy of ``array``."""
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def first_duplicate(names: Sequence[str]) -> str | None:
    """The first name listed a second time, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None
