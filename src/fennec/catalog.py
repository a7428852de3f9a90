"""The models' metadata as a ranking joins it, and the ``where`` masks computed from it.

A :class:`Catalog` holds every model's row as the zoo returned it, aligned with a
fitted space's model order; a ``where`` filter (``{"family": "resnet"}``, a list of
allowed values, ``("<=", 30e6)``) becomes a mask over that order, cached per
filter.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Catalog"]

_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}

_IN = object()  # marks a membership condition in a mask's cache key


def _condition_key(condition: object) -> object:
    if isinstance(condition, (list, set, frozenset)):
        return (_IN, frozenset(condition))
    hash(condition)
    return condition


class Catalog:
    """Every model's metadata row as the zoo returned it, with the masks computed from it."""

    def __init__(self, signal: object, rows: list[dict[str, Any]], cache_size: int) -> None:
        self.signal = signal
        self.rows = rows
        self.by_id = {row["id"]: row for row in rows}
        # A row's own columns win over an extra of the same name.
        self.fields = set().union(*(row["extra"] for row in rows), *(row.keys() for row in rows)) - {"extra"}
        self.aligned: list[dict[str, Any] | None] = []
        self._ids: Sequence[str] | None = None
        self._columns: dict[str, list[Any]] = {}
        self._masks: OrderedDict[tuple[tuple[str, object], ...], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def align(self, ids: Sequence[str]) -> None:
        """Orders the rows as the fitted ``ids`` (None for a fitted model the database lacks)."""
        if self._ids is ids:
            return
        with self._lock:
            if self._ids is not ids:
                self.aligned = [self.by_id.get(m) for m in ids]
                self._columns, self._masks = {}, OrderedDict()
                self._ids = ids

    def _column(self, name: str) -> list[Any]:
        values = self._columns.get(name)
        if values is None:
            values = [None if row is None else row[name] if name in row else row["extra"].get(name)
                      for row in self.aligned]
            self._columns[name] = values
        return values

    def mask(self, where: Mapping[str, Any]) -> np.ndarray:
        key: tuple[tuple[str, object], ...] | None
        try:
            key = tuple(sorted(((str(f), _condition_key(c)) for f, c in where.items()), key=lambda x: x[0]))
        except TypeError:
            key = None  # an unhashable condition: computed every time
        ids = self._ids
        if key is not None and key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        keep = np.ones(len(self.aligned), dtype=bool)
        for field_name, condition in where.items():
            if field_name not in self.fields:
                raise ValueError(f"where: unknown metadata field {field_name!r}; fields are {sorted(self.fields)}")
            keep &= _matching(field_name, self._column(field_name), condition)
        mask = ~keep
        mask.flags.writeable = False
        if key is not None:
            with self._lock:
                if self._ids is ids:
                    self._masks[key] = mask
                    while len(self._masks) > self._cache_size:
                        self._masks.popitem(last=False)
        return mask


def _matching(field_name: str, values: list[Any], condition: Any) -> np.ndarray:
    """Which values meet one condition: a comparison tuple, a collection of allowed values, or equality."""
    if isinstance(condition, tuple) and len(condition) == 2 and condition[0] in _OPERATORS:
        compare, bound = _OPERATORS[condition[0]], condition[1]
        try:
            return np.array([v is not None and bool(compare(v, bound)) for v in values], dtype=bool)
        except TypeError:
            raise ValueError(f"where: {field_name} {condition[0]} {bound!r}: values of {field_name!r} "
                             "cannot be compared with it") from None
    if isinstance(condition, (list, set, frozenset)):
        try:
            allowed = frozenset(condition)
            return np.array([v in allowed for v in values], dtype=bool)
        except TypeError:  # unhashable values: compare one by one
            return np.array([v in condition for v in values], dtype=bool)
    return np.array([v == condition for v in values], dtype=bool)
