"""The :class:`History` record: past results, one row per (model, task, kind)."""

from __future__ import annotations

import csv
import difflib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._atomic import write_atomically
from .common import DEFAULT_KIND, first_duplicate, readonly, str_tuple

__all__ = ["History"]


def _unknown_names_error(what: str, unknown: list[str], known: Sequence[str]) -> ValueError:
    hint = difflib.get_close_matches(unknown[0], list(known), n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    return ValueError(f"{what}: unknown name(s) {shown}{suffix}")


def _check_names(models: Iterable[str], tasks: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The model and task names as tuples: non-empty, unpadded, each listed once."""
    models = str_tuple(models, "models")
    tasks = str_tuple(tasks, "tasks")
    for what, names in (("models", models), ("tasks", tasks)):
        if any(not n or n != n.strip() for n in names):
            raise ValueError(f"{what}: names must be non-empty without surrounding spaces")
        dup = first_duplicate(names)
        if dup is not None:
            raise ValueError(f"{what}: {dup!r} is listed twice")
    return models, tasks


def _check_rows(
    models: tuple[str, ...],
    tasks: tuple[str, ...],
    model_index: ArrayLike,
    task_index: ArrayLike,
    scores: ArrayLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The row arrays as int64, int64, float64: one entry per row, indices in range, finite scores."""
    model_index = np.asarray(model_index)
    task_index = np.asarray(task_index)
    scores = np.asarray(scores)
    for what, arr in (("model_index", model_index), ("task_index", task_index)):
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise TypeError(f"{what}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
    if scores.ndim != 1 or (scores.size and scores.dtype.kind not in "iuf"):
        raise TypeError(f"scores: expected a 1-D float array, got {scores.dtype} {scores.shape}")
    n = len(scores)
    if len(model_index) != n or len(task_index) != n:
        raise ValueError(
            f"model_index, task_index and scores must have one entry per row: "
            f"got {len(model_index)}, {len(task_index)} and {n}"
        )
    model_index = model_index.astype(np.int64)
    task_index = task_index.astype(np.int64)
    scores = scores.astype(np.float64)
    if n and (model_index.min() < 0 or model_index.max() >= len(models)):
        raise ValueError(f"model_index: values must lie in [0, {len(models)})")
    if n and (task_index.min() < 0 or task_index.max() >= len(tasks)):
        raise ValueError(f"task_index: values must lie in [0, {len(tasks)})")
    if not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"scores: row {bad} ({models[model_index[bad]]!r}, {tasks[task_index[bad]]!r}) "
            f"is {scores[bad]}; scores must be finite (leave missing results out)"
        )
    return model_index, task_index, scores


def _check_kind(kind: Iterable[str] | None, n: int) -> tuple[str, ...] | None:
    """One non-empty kind per row, or None when every row is ``finetune``."""
    if kind is None:
        return None
    kind = str_tuple(kind, "kind")
    if len(kind) != n:
        raise ValueError(f"kind: expected one entry per row ({n}), got {len(kind)}")
    if any(not k for k in kind):
        raise ValueError("kind: entries must be non-empty")
    return None if all(k == DEFAULT_KIND for k in kind) else kind


def _check_source(source: Iterable[str] | None, n: int) -> tuple[str, ...] | None:
    """One source per row, or None when none is known."""
    if source is None:
        return None
    source = str_tuple(source, "source")
    if len(source) != n:
        raise ValueError(f"source: expected one entry per row ({n}), got {len(source)}")
    return source if any(source) else None


def _check_unique_keys(
    models: tuple[str, ...], tasks: tuple[str, ...], model_index: np.ndarray, task_index: np.ndarray,
    kind: tuple[str, ...] | None,
) -> None:
    n = len(model_index)
    kinds = kind if kind is not None else (DEFAULT_KIND,) * n
    keys = set(zip(model_index.tolist(), task_index.tolist(), kinds))
    if len(keys) == n:
        return
    seen = set()
    for m, t, k in zip(model_index.tolist(), task_index.tolist(), kinds):
        if (m, t, k) in seen:
            raise ValueError(f"({models[m]!r}, {tasks[t]!r}, kind {k!r}) has more than one row")
        seen.add((m, t, k))


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    """The rows as CSV text, one ``\\n`` per line."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


@dataclass(frozen=True, eq=False)
class History:
    """Past results, one row per (model, task, kind).

    ``model_index[i]``, ``task_index[i]`` point into ``models`` and ``tasks``;
    ``scores[i]`` is the result. ``kind`` is ``None`` when every row is a
    fine-tuning result (the canonical form: a tuple of only ``"finetune"`` is
    stored as ``None``); ``source`` is ``None`` or one string per row, ``""``
    where unknown. Models or tasks without any row may be listed: a model with
    no results can still be ranked from its side information. Arrays are
    read-only copies.
    """

    models: tuple[str, ...]
    tasks: tuple[str, ...]
    model_index: np.ndarray
    task_index: np.ndarray
    scores: np.ndarray
    kind: tuple[str, ...] | None = None
    source: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        models, tasks = _check_names(self.models, self.tasks)
        model_index, task_index, scores = _check_rows(models, tasks, self.model_index, self.task_index,
                                                      self.scores)
        kind = _check_kind(self.kind, len(scores))
        source = _check_source(self.source, len(scores))
        _check_unique_keys(models, tasks, model_index, task_index, kind)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "model_index", readonly(model_index))
        object.__setattr__(self, "task_index", readonly(task_index))
        object.__setattr__(self, "scores", readonly(scores))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "source", source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return (
            self.models == other.models
            and self.tasks == other.tasks
            and np.array_equal(self.model_index, other.model_index)
            and np.array_equal(self.task_index, other.task_index)
            and np.array_equal(self.scores, other.scores)
            and self.kind == other.kind
            and self.source == other.source
        )

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return (
            f"History({self.n_models} models, {self.n_tasks} tasks, {len(self)} results, "
            f"kinds {list(self.kinds)})"
        )

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct kinds present, in order of first appearance."""
        if self.kind is None:
            return (DEFAULT_KIND,) if len(self) else ()
        return tuple(dict.fromkeys(self.kind))

    def row_kinds(self) -> tuple[str, ...]:
        """The kind of every row (``"finetune"`` where :attr:`kind` is ``None``)."""
        return self.kind if self.kind is not None else (DEFAULT_KIND,) * len(self)

    def select_kind(self, kind: str) -> History:
        """The rows of one kind; every model and task stays listed."""
        keep = np.array([k == kind for k in self.row_kinds()], dtype=bool)
        return self._take(keep, self.models, self.tasks)

    def _single_kind(self, kind: str | None) -> History:
        if kind is not None:
            return self.select_kind(kind)
        if len(self.kinds) > 1:
            raise ValueError(
                f"kind: this history mixes kinds {list(self.kinds)}; name the one to use"
            )
        return self

    def matrix(self, kind: str | None = None) -> np.ndarray:
        """Scores as an n_models x n_tasks float64 array, NaN where not measured.

        ``kind`` picks one kind of result; it may be left out when there is only one.
        """
        history = self._single_kind(kind)
        out = np.full((self.n_models, self.n_tasks), np.nan)
        out[history.model_index, history.task_index] = history.scores
        return out

    def observed_mask(self, kind: str | None = None) -> np.ndarray:
        """Boolean n_models x n_tasks array, True where a score was measured."""
        history = self._single_kind(kind)
        out = np.zeros((self.n_models, self.n_tasks), dtype=bool)
        out[history.model_index, history.task_index] = True
        return out

    def _take(self, keep: np.ndarray, models: tuple[str, ...], tasks: tuple[str, ...]) -> History:
        """Rows where ``keep`` holds, re-indexed against ``models`` and ``tasks``."""
        model_pos = {name: i for i, name in enumerate(models)}
        task_pos = {name: i for i, name in enumerate(tasks)}
        model_map = np.array([model_pos.get(m, -1) for m in self.models], dtype=np.int64)
        task_map = np.array([task_pos.get(t, -1) for t in self.tasks], dtype=np.int64)
        rows = np.flatnonzero(keep)
        return History(
            models=models,
            tasks=tasks,
            model_index=model_map[self.model_index[rows]],
            task_index=task_map[self.task_index[rows]],
            scores=self.scores[rows],
            kind=None if self.kind is None else tuple(self.kind[i] for i in rows),
            source=None if self.source is None else tuple(self.source[i] for i in rows),
        )

    def _check_task_names(self, names: Iterable[str], what: str) -> tuple[str, ...]:
        names = str_tuple(names, what)
        dup = first_duplicate(names)
        if dup is not None:
            raise ValueError(f"{what}: {dup!r} is listed twice")
        known = set(self.tasks)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise _unknown_names_error(what, unknown, self.tasks)
        return names

    def subset_tasks(self, names: Iterable[str]) -> History:
        """Only the tasks named, in the order given; every model stays listed."""
        names = self._check_task_names(names, "names")
        wanted = set(names)
        keep = np.array([self.tasks[t] in wanted for t in self.task_index], dtype=bool)
        return self._take(keep, self.models, names)

    def drop_tasks(self, names: Iterable[str]) -> History:
        """Without the tasks named (each must exist, so a typo is not silently ignored).

        Models left without any row stay listed: side information may still rank them.
        """
        names = set(self._check_task_names(names, "names"))
        return self.subset_tasks([t for t in self.tasks if t not in names])

    @classmethod
    def from_matrix(
        cls,
        models: Sequence[str],
        tasks: Sequence[str],
        matrix: ArrayLike,
        *,
        kind: str = DEFAULT_KIND,
    ) -> History:
        """From an n_models x n_tasks array; NaN marks a missing result."""
        models = str_tuple(models, "models")
        tasks = str_tuple(tasks, "tasks")
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (len(models), len(tasks)):
            raise ValueError(
                f"matrix: expected shape ({len(models)}, {len(tasks)}) for the models and tasks "
                f"given, got {matrix.shape}"
            )
        if np.any(np.isinf(matrix)):
            raise ValueError("matrix: contains inf; use NaN for a missing result")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind: expected a non-empty string, got {kind!r}")
        m, t = np.nonzero(~np.isnan(matrix))
        return cls(models, tasks, m, t, matrix[m, t], kind=(kind,) * len(m))

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Sequence[Any]],
    ) -> History:
        """From ``(model, task, score)`` rows, optionally ``(model, task, score, kind)`` or
        ``(model, task, score, kind, source)``; models and tasks are listed in order of first
        appearance. A row without a kind is ``finetune``; a ``None`` source is ``""``."""
        rows = [tuple(row) for row in rows]
        for i, row in enumerate(rows):
            if not 3 <= len(row) <= 5:
                raise ValueError(
                    f"rows: row {i} has {len(row)} fields; expected (model, task, score[, kind[, source]])"
                )
        models = tuple(dict.fromkeys(row[0] for row in rows))
        tasks = tuple(dict.fromkeys(row[1] for row in rows))
        model_at = {m: i for i, m in enumerate(models)}
        task_at = {t: j for j, t in enumerate(tasks)}
        kinds = tuple(row[3] if len(row) > 3 and row[3] is not None else DEFAULT_KIND for row in rows)
        sources = tuple((row[4] or "") if len(row) > 4 else "" for row in rows)
        return cls(
            models=models,
            tasks=tasks,
            model_index=np.array([model_at[row[0]] for row in rows], dtype=np.int64),
            task_index=np.array([task_at[row[1]] for row in rows], dtype=np.int64),
            scores=np.array([row[2] for row in rows], dtype=np.float64),
            kind=kinds,
            source=sources,
        )

    def to_long_csv(self, path: str | os.PathLike[str]) -> None:
        """Writes ``model,task,score`` (plus ``kind``/``source`` when present), atomically."""
        header = ["model", "task", "score"]
        if self.kind is not None:
            header.append("kind")
        if self.source is not None:
            header.append("source")
        rows = [header]
        for i in range(len(self)):
            row = [
                self.models[self.model_index[i]],
                self.tasks[self.task_index[i]],
                repr(float(self.scores[i])),  # repr round-trips every float exactly
            ]
            if self.kind is not None:
                row.append(self.kind[i])
            if self.source is not None:
                row.append(self.source[i])
            rows.append(row)
        write_atomically(path, _csv_text(rows), what="path")

    def to_wide_csv(self, path: str | os.PathLike[str], kind: str | None = None) -> None:
        """Writes a models x tasks table, empty cells where not measured, atomically.

        Only one kind fits in a table: name it when the history mixes several.
        """
        matrix = self.matrix(kind)
        rows = [["model", *self.tasks]]
        rows += [[name, *("" if np.isnan(v) else repr(float(v)) for v in row)]
                 for name, row in zip(self.models, matrix)]
        write_atomically(path, _csv_text(rows), what="path")
