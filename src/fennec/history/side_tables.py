"""Side information: one row per model (or task), read from CSV and turned into numbers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._checks import integer
from .common import HistoryError, first_duplicate, readonly, str_tuple
from .csv_rows import check_first_row, check_id, check_ragged, find_column, read_rows

__all__ = ["LOG_SPAN_DECADES", "MISSING_TOKENS", "SideTable", "read_model_table", "read_task_table"]

# Cells that mean "no value" in a side-information table, besides the empty cell.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "?"})
# A non-negative column whose positive values span more than this many powers of
# ten (parameter counts, dataset sizes across benchmarks) is taken as log1p.
LOG_SPAN_DECADES = 3.0


def _parse_float_cell(cell: str) -> float | None:
    """The cell's number, NaN for a missing-value token, None when it is text."""
    text = cell.strip()
    if text.lower() in MISSING_TOKENS:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    # inf cannot be averaged or scaled; treat it as not measured.
    return value if math.isfinite(value) else math.nan


def _numeric_columns(table: SideTable) -> tuple[list[np.ndarray], list[str]]:
    """The design-matrix columns of the numeric side information, and their names."""
    blocks: list[np.ndarray] = []
    labels: list[str] = []
    for col, values in table.numeric.items():
        present = ~np.isnan(values)
        if not present.any():
            continue
        x = values.copy()
        label = col
        positive = x[present & (x > 0)]
        if (
            np.all(x[present] >= 0)
            and positive.size
            and np.log10(positive.max()) - np.log10(positive.min()) > LOG_SPAN_DECADES
        ):
            x = np.log1p(x)
            label = f"log1p({col})"
        x[~present] = x[present].mean()
        if np.ptp(x[present]) > 0:
            blocks.append(x)
            labels.append(label)
        if not present.all():
            blocks.append((~present).astype(np.float64))
            labels.append(f"{col}:missing")
    return blocks, labels


def _categorical_columns(table: SideTable, max_categories: int) -> tuple[list[np.ndarray], list[str]]:
    """The 0/1 design-matrix columns of the categorical side information, and their names."""
    n = len(table)
    blocks: list[np.ndarray] = []
    labels: list[str] = []
    for col, values in table.categorical.items():
        counts: dict[str, int] = {}
        for v in values:
            if v:
                counts[v] = counts.get(v, 0) + 1
        if not counts:
            continue
        # Most frequent first; ties in order of first appearance, so the columns are stable.
        levels = sorted(counts, key=lambda v: -counts[v])[:max_categories]
        rest = len(counts) > len(levels)
        onehot = np.zeros((n, len(levels) + rest))
        at = {v: i for i, v in enumerate(levels)}
        for r, v in enumerate(values):
            if v:
                onehot[r, at.get(v, len(levels))] = 1.0
        names_here = [f"{col}={v}" for v in levels] + ([f"{col}=other"] if rest else [])
        for j in range(onehot.shape[1]):
            if np.ptp(onehot[:, j]) > 0:
                blocks.append(onehot[:, j])
                labels.append(names_here[j])
    return blocks, labels


@dataclass(frozen=True, eq=False)
class SideTable:
    """Side information: one row per model (or task), numeric and categorical columns.

    ``numeric[col]`` is a float64 array aligned with ``keys`` (NaN where missing);
    ``categorical[col]`` a tuple of strings (``""`` where missing). ``missing``
    lists the names :meth:`align` was asked for that the table did not have.
    """

    keys: tuple[str, ...]
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)
    key_name: str = "model"
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = str_tuple(self.keys, "keys")
        dup = first_duplicate(keys)
        if dup is not None:
            raise ValueError(f"keys: {dup!r} is listed twice")
        numeric = {}
        for name, values in self.numeric.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (len(keys),):
                raise ValueError(f"numeric[{name!r}]: expected {len(keys)} values, got shape {values.shape}")
            numeric[name] = readonly(values)
        categorical = {}
        for name, cells in self.categorical.items():
            levels = str_tuple(cells, f"categorical[{name!r}]")
            if len(levels) != len(keys):
                raise ValueError(f"categorical[{name!r}]: expected {len(keys)} values, got {len(levels)}")
            categorical[name] = levels
        both = set(numeric) & set(categorical)
        if both:
            raise ValueError(f"column {sorted(both)[0]!r} is both numeric and categorical")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "categorical", categorical)
        object.__setattr__(self, "missing", str_tuple(self.missing, "missing"))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.numeric) + tuple(self.categorical)

    @classmethod
    def from_cells(
        cls, keys: Sequence[str], columns: Mapping[str, Sequence[object]], *, key_name: str = "model"
    ) -> SideTable:
        """From raw cells per column (str, numbers or None), typed as a CSV would be.

        A column is numeric when every non-missing cell is a number.
        """
        keys = str_tuple(keys, "keys")
        numeric: dict[str, np.ndarray] = {}
        categorical: dict[str, tuple[str, ...]] = {}
        for name, cells in columns.items():
            texts = []
            for cell in cells:
                if cell is None:
                    texts.append("")
                elif isinstance(cell, float):
                    texts.append(repr(cell))
                else:
                    texts.append(str(cell))
            if len(texts) != len(keys):
                raise ValueError(f"columns[{name!r}]: expected {len(keys)} cells, got {len(texts)}")
            parsed = [_parse_float_cell(t) for t in texts]
            if all(v is not None for v in parsed):
                numeric[name] = np.array(parsed, dtype=np.float64)
            else:
                categorical[name] = tuple(
                    "" if t.strip().lower() in MISSING_TOKENS else t.strip() for t in texts
                )
        return cls(keys, numeric, categorical, key_name=key_name)

    def align(self, names: Iterable[str]) -> SideTable:
        """The rows for ``names`` in that order; names the table lacks get NaN / ``""``
        and are listed in the result's ``missing``."""
        names = str_tuple(names, "names")
        dup = first_duplicate(names)
        if dup is not None:
            raise ValueError(f"names: {dup!r} is listed twice")
        pos = {k: i for i, k in enumerate(self.keys)}
        take = np.array([pos.get(n, -1) for n in names], dtype=np.int64)
        found = take >= 0
        numeric = {}
        for col, values in self.numeric.items():
            out = np.full(len(names), np.nan)
            out[found] = values[take[found]]
            numeric[col] = out
        categorical = {
            col: tuple(values[i] if i >= 0 else "" for i in take.tolist())
            for col, values in self.categorical.items()
        }
        missing = tuple(n for n, i in zip(names, take.tolist()) if i < 0)
        return SideTable(names, numeric, categorical, key_name=self.key_name, missing=missing)

    def design_matrix(
        self, names: Iterable[str], *, max_categories: int = 50
    ) -> tuple[np.ndarray, list[str]]:
        """A float64 matrix, one row per name, and its column names.

        Statistics (means, log decision, frequent levels) come from the rows of
        ``names``: call it once with every name to compare and slice the rows.
        Numeric columns: ``log1p`` when non-negative and spanning more than
        ``LOG_SPAN_DECADES`` powers of ten (named ``log1p(col)``); missing values
        take the column mean and add a 0/1 column ``col:missing``. Categorical
        columns: one 0/1 column per level (``col=level``) for the
        ``max_categories`` most frequent, the rest in ``col=other``; missing
        cells are all zeros. Columns without values or constant over the rows
        are left out: they cannot tell two rows apart.
        """
        max_categories = integer(max_categories, "max_categories", low=1)
        table = self.align(names)
        numeric_blocks, numeric_labels = _numeric_columns(table)
        categorical_blocks, categorical_labels = _categorical_columns(table, max_categories)
        blocks = numeric_blocks + categorical_blocks
        matrix = np.column_stack(blocks) if blocks else np.zeros((len(table), 0))
        return matrix.astype(np.float64, copy=False), numeric_labels + categorical_labels


def _read_side_table(path: str | os.PathLike[str], key: str, argument: str) -> SideTable:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{argument}: expected a column name, got {key!r}")
    label, rows = read_rows(path)
    _, header = rows[0]
    header = [cell.strip() for cell in header]
    key_at = find_column(label, header, key, argument)
    # An unnamed column is a spreadsheet's or pandas' row number, not information.
    columns = [(i, name) for i, name in enumerate(header) if name and i != key_at]
    seen: dict[str, int] = {}
    for i, name in columns:
        if name in seen:
            raise HistoryError(
                f"{label}: line 1: column {name!r} appears twice (columns {seen[name] + 1} and {i + 1})"
            )
        seen[name] = i
    if len(rows) == 1:
        raise HistoryError(f"{label}: no data rows after the header")
    keys: list[str] = []
    key_line: dict[str, int] = {}
    cells: dict[str, list[str]] = {name: [] for _, name in columns}
    for line, record in rows[1:]:
        check_ragged(label, line, record, len(header))
        name = record[key_at].strip()
        if not name:
            raise HistoryError(f"{label}: line {line}: empty {key!r}")
        check_id(label, line, f"{key} id", name)
        check_first_row(label, line, key, name, key_line)
        keys.append(name)
        for i, col in columns:
            cells[col].append(record[i])
    return SideTable.from_cells(keys, cells, key_name=key)


def read_model_table(path: str | os.PathLike[str], key: str = "model") -> SideTable:
    """Per-model side information (architecture, parameter count, source data ...)."""
    return _read_side_table(path, key, "key")


def read_task_table(path: str | os.PathLike[str], key: str = "task") -> SideTable:
    """Per-task side information (training-set size, number of classes ...)."""
    return _read_side_table(path, key, "key")
