"""The record of past fine-tuning results, and the side information that goes with it.

A *history* is a set of (model, task, score) results, one per (model, task, kind)
where ``kind`` says how the score was measured (``finetune``, ``linear_probe``,
``logme`` ...). It is read from CSV in one of two layouts:

long form (``read_history(path)``)
    a header with at least the columns ``model``, ``task``, ``score``; optional
    ``kind`` (default ``finetune``) and ``source`` (where the number comes from);
    every other column is ignored, so run logs such as TransferGraph's
    ``records.csv`` (leading unnamed index column, hyper-parameters, times) can be
    read as they are by naming their columns::

        read_history("records.csv", task_col="finetuned_dataset", score_col="eval_accuracy")

wide form (``read_history(path, wide=True)``)
    first column the model name, header row the task names, one score per cell,
    an empty cell where a model was not fine-tuned on a task.

Every error is a :class:`HistoryError` (a ``ValueError``) naming the file, the
line as a text editor numbers it (the header is line 1) and the problem.
Blank lines, and rows whose cells are all empty, are skipped (but counted).
Repeated (model, task, kind) rows in long form are averaged with a
:class:`HistoryWarning` (``strict=True``: an error naming both lines). A task
that only one model was scored on cannot order any pair of models: it is kept
with a warning (``strict=True``: an error), because the model's score may still
help fit the model's vector.

Side information comes as one row per model (or per task) with any columns:
:func:`read_model_table` / :func:`read_task_table` return a :class:`SideTable`
and :meth:`SideTable.design_matrix` turns it into numbers. Distances between
datasets come as a square CSV read by :func:`read_distance_matrix`.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_KIND",
    "History",
    "HistoryError",
    "HistoryFileNotFoundError",
    "HistoryWarning",
    "SideTable",
    "read_distance_matrix",
    "read_history",
    "read_model_table",
    "read_task_table",
]

DEFAULT_KIND = "finetune"
# Cells that mean "no value" in a side-information table, besides the empty cell.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "?"})
# A non-negative column whose positive values span more than this many powers of
# ten (parameter counts, dataset sizes across benchmarks) is taken as log1p.
LOG_SPAN_DECADES = 3.0


class HistoryError(ValueError):
    """A history or side-information file that cannot be read as it is."""


class HistoryFileNotFoundError(HistoryError, FileNotFoundError):
    """The file to read does not exist (catchable as either parent)."""


class HistoryWarning(UserWarning):
    """Something in a history file that was repaired or that limits what it can teach."""


# ---------------------------------------------------------------------------
# The History record


def _str_tuple(values, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{what}: expected a sequence of names, got a single string {values!r}")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what}: expected names as str, got {type(v).__name__} {v!r}")
    return out


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def _first_duplicate(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _unknown_names_error(what: str, unknown: list[str], known: Sequence[str]) -> ValueError:
    hint = difflib.get_close_matches(unknown[0], list(known), n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    return ValueError(f"{what}: unknown name(s) {shown}{suffix}")


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

    def __post_init__(self):
        models = _str_tuple(self.models, "models")
        tasks = _str_tuple(self.tasks, "tasks")
        for what, names in (("models", models), ("tasks", tasks)):
            if any(not n or n != n.strip() for n in names):
                raise ValueError(f"{what}: names must be non-empty without surrounding spaces")
            dup = _first_duplicate(names)
            if dup is not None:
                raise ValueError(f"{what}: {dup!r} is listed twice")
        model_index = np.asarray(self.model_index)
        task_index = np.asarray(self.task_index)
        scores = np.asarray(self.scores)
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
        kind = self.kind
        if kind is not None:
            kind = _str_tuple(kind, "kind")
            if len(kind) != n:
                raise ValueError(f"kind: expected one entry per row ({n}), got {len(kind)}")
            if any(not k for k in kind):
                raise ValueError("kind: entries must be non-empty")
            if all(k == DEFAULT_KIND for k in kind):
                kind = None
        source = self.source
        if source is not None:
            source = _str_tuple(source, "source")
            if len(source) != n:
                raise ValueError(f"source: expected one entry per row ({n}), got {len(source)}")
            if not any(source):
                source = None
        kinds = kind if kind is not None else (DEFAULT_KIND,) * n
        keys = set(zip(model_index.tolist(), task_index.tolist(), kinds))
        if len(keys) != n:
            seen = set()
            for m, t, k in zip(model_index.tolist(), task_index.tolist(), kinds):
                if (m, t, k) in seen:
                    raise ValueError(
                        f"({models[m]!r}, {tasks[t]!r}, kind {k!r}) has more than one row"
                    )
                seen.add((m, t, k))
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "model_index", _readonly(model_index))
        object.__setattr__(self, "task_index", _readonly(task_index))
        object.__setattr__(self, "scores", _readonly(scores))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "source", source)

    def __eq__(self, other):
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

    def _check_task_names(self, names, what: str) -> tuple[str, ...]:
        names = _str_tuple(names, what)
        dup = _first_duplicate(names)
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
        matrix,
        *,
        kind: str = DEFAULT_KIND,
    ) -> History:
        """From an n_models x n_tasks array; NaN marks a missing result."""
        models = _str_tuple(models, "models")
        tasks = _str_tuple(tasks, "tasks")
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
        rows: Iterable[Sequence],
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

    def to_long_csv(self, path: str | os.PathLike) -> None:
        """Writes ``model,task,score`` (plus ``kind``/``source`` when present), atomically."""
        header = ["model", "task", "score"]
        if self.kind is not None:
            header.append("kind")
        if self.source is not None:
            header.append("source")

        def write(fh):
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
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
                writer.writerow(row)

        _write_atomically(path, write)

    def to_wide_csv(self, path: str | os.PathLike, kind: str | None = None) -> None:
        """Writes a models x tasks table, empty cells where not measured, atomically.

        Only one kind fits in a table: name it when the history mixes several.
        """
        matrix = self.matrix(kind)

        def write(fh):
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["model", *self.tasks])
            for name, row in zip(self.models, matrix):
                writer.writerow([name, *("" if np.isnan(v) else repr(float(v)) for v in row)])

        _write_atomically(path, write)


def _write_atomically(path: str | os.PathLike, write: Callable[[io.TextIOBase], None]) -> None:
    """Writes a text file through a temporary file in the same folder, then renames it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------------
# CSV reading with line numbers


def _read_rows(path: str | os.PathLike) -> tuple[str, list[tuple[int, list[str]]]]:
    """Every non-blank record of a CSV file with the line it starts on (1-based)."""
    label = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise HistoryFileNotFoundError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise HistoryError(f"{label}: is a folder, not a CSV file") from None
    except OSError as err:
        raise HistoryError(f"{label}: cannot be read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise HistoryError(
            f"{label}: line {line}: not UTF-8 text (byte {raw[err.start]:#04x} at offset "
            f"{err.start}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise HistoryError(f"{label}: file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    start = 1
    try:
        for record in reader:
            if record and any(cell.strip() for cell in record):
                rows.append((start, record))
            start = reader.line_num + 1
    except csv.Error as err:
        raise HistoryError(f"{label}: line {start}: {err}") from None
    return label, rows


def _find_column(label: str, header: list[str], name: str, argument: str) -> int:
    """Index of column ``name`` in the header, or an error suggesting the closest one."""
    hits = [i for i, cell in enumerate(header) if cell == name]
    if len(hits) > 1:
        raise HistoryError(
            f"{label}: line 1: column {name!r} appears {len(hits)} times "
            f"(columns {', '.join(str(i + 1) for i in hits)})"
        )
    if hits:
        return hits[0]
    named = [c for c in header if c]
    close = difflib.get_close_matches(name, named, n=1, cutoff=0.6)
    if not close:
        close = [c for c in named if c.lower() == name.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else f" (columns: {', '.join(named)})"
    default = {"model_col": "model", "task_col": "task", "score_col": "score"}.get(argument)
    how = f"; pass {argument}= to name another" if default == name else ""
    raise HistoryError(f"{label}: line 1: no column {name!r}{hint}{how}")


def _check_ragged(label: str, line: int, record: list[str], width: int) -> None:
    if len(record) != width:
        raise HistoryError(
            f"{label}: line {line}: {len(record)} fields, but the header has {width}"
        )


def _parse_score(label: str, line: int, cell: str, where: str, score_range) -> float:
    text = cell.strip()
    if not text:
        raise HistoryError(f"{label}: line {line}: {where}empty score")
    try:
        value = float(text)
    except ValueError:
        raise HistoryError(f"{label}: line {line}: {where}score {cell!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise HistoryError(
            f"{label}: line {line}: {where}score is {text}; scores must be finite "
            "(leave a missing result out)"
        )
    if score_range is not None and not (score_range[0] <= value <= score_range[1]):
        raise HistoryError(
            f"{label}: line {line}: {where}score {value!r} is outside score_range "
            f"[{score_range[0]}, {score_range[1]}]"
        )
    return value


def _check_score_range(score_range):
    if score_range is None:
        return None
    try:
        low, high = (float(v) for v in score_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"score_range: expected (low, high) numbers or None, got {score_range!r}"
        ) from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"score_range: expected low <= high, got {score_range!r}")
    return low, high


def read_history(
    path: str | os.PathLike,
    *,
    wide: bool = False,
    strict: bool = False,
    score_range: tuple[float, float] | None = None,
    model_col: str = "model",
    task_col: str = "task",
    score_col: str = "score",
    kind_col: str | None = None,
    source_col: str | None = None,
) -> History:
    """Reads a history CSV (see the module docstring for both layouts).

    ``score_range`` (low, high), inclusive, rejects any score outside it.
    ``strict=True`` turns repairs into errors: repeated (model, task, kind) rows
    and tasks scored on a single model. Column-name arguments apply to the long
    form. ``kind_col``/``source_col`` left as None use columns ``kind`` /
    ``source`` when the file has them (otherwise every row is ``finetune``
    with no source); named explicitly, the column must exist.
    """
    score_range = _check_score_range(score_range)
    label, rows = _read_rows(path)
    if wide:
        history, task_lines = _read_wide(label, rows, score_range)
    else:
        history, task_lines = _read_long(
            label, rows, strict, score_range, model_col, task_col, score_col, kind_col, source_col
        )
    _check_single_model_tasks(label, history, task_lines, strict)
    return history


def _read_long(label, rows, strict, score_range, model_col, task_col, score_col, kind_col, source_col):
    for argument, value, optional in (
        ("model_col", model_col, False),
        ("task_col", task_col, False),
        ("score_col", score_col, False),
        ("kind_col", kind_col, True),
        ("source_col", source_col, True),
    ):
        if not (optional and value is None) and (not isinstance(value, str) or not value):
            raise ValueError(f"{argument}: expected a column name, got {value!r}")
    _, header = rows[0]
    header = [cell.strip() for cell in header]
    width = len(header)
    model_at = _find_column(label, header, model_col, "model_col")
    task_at = _find_column(label, header, task_col, "task_col")
    score_at = _find_column(label, header, score_col, "score_col")
    kind_at = source_at = None
    if kind_col is not None or "kind" in header:
        kind_at = _find_column(label, header, kind_col or "kind", "kind_col")
    if source_col is not None or "source" in header:
        source_at = _find_column(label, header, source_col or "source", "source_col")
    if len(rows) == 1:
        raise HistoryError(f"{label}: no data rows after the header (empty history)")

    models: dict[str, int] = {}
    tasks: dict[str, int] = {}
    first_line: dict[tuple[str, str, str], int] = {}
    sums: dict[tuple[str, str, str], list] = {}  # key -> [total, count, source, lines]
    task_lines: dict[str, int] = {}
    for line, record in rows[1:]:
        _check_ragged(label, line, record, width)
        model = record[model_at].strip()
        task = record[task_at].strip()
        if not model:
            raise HistoryError(f"{label}: line {line}: empty model name (column {model_col!r})")
        if not task:
            raise HistoryError(f"{label}: line {line}: empty task name (column {task_col!r})")
        score = _parse_score(label, line, record[score_at], "", score_range)
        kind = record[kind_at].strip() if kind_at is not None else ""
        kind = kind or DEFAULT_KIND
        source = record[source_at].strip() if source_at is not None else ""
        key = (model, task, kind)
        if key in sums:
            if strict:
                raise HistoryError(
                    f"{label}: line {line}: model {model!r}, task {task!r}, kind {kind!r} "
                    f"repeats line {first_line[key]}"
                )
            entry = sums[key]
            entry[0] += score
            entry[1] += 1
            entry[3].append(line)
            continue
        models.setdefault(model, len(models))
        tasks.setdefault(task, len(tasks))
        task_lines.setdefault(task, line)
        first_line[key] = line
        sums[key] = [score, 1, source, [line]]

    repeated = [(key, entry[3]) for key, entry in sums.items() if entry[1] > 1]
    if repeated:
        (model, task, kind), lines = repeated[0]
        warnings.warn(
            f"{label}: {len(repeated)} (model, task) pair(s) appear on more than one row and "
            f"were averaged; first: ({model!r}, {task!r}) on lines "
            f"{', '.join(str(n) for n in lines)}",
            HistoryWarning,
            stacklevel=3,
        )
    keys = list(sums)
    history = History(
        models=tuple(models),
        tasks=tuple(tasks),
        model_index=np.array([models[k[0]] for k in keys], dtype=np.int64),
        task_index=np.array([tasks[k[1]] for k in keys], dtype=np.int64),
        scores=np.array([sums[k][0] / sums[k][1] for k in keys], dtype=np.float64),
        kind=tuple(k[2] for k in keys),
        source=tuple(sums[k][2] for k in keys),
    )
    return history, task_lines


def _read_wide(label, rows, score_range):
    _, header = rows[0]
    width = len(header)
    if width < 2:
        raise HistoryError(
            f"{label}: line 1: a wide history needs a model column and at least one task column"
        )
    tasks = [cell.strip() for cell in header[1:]]
    seen: dict[str, int] = {}
    for col, task in enumerate(tasks, start=2):
        if not task:
            raise HistoryError(f"{label}: line 1: column {col} has no task name")
        if task in seen:
            raise HistoryError(
                f"{label}: line 1: task {task!r} names columns {seen[task]} and {col}"
            )
        seen[task] = col
    if len(rows) == 1:
        raise HistoryError(f"{label}: no data rows after the header (empty history)")
    models: list[str] = []
    model_line: dict[str, int] = {}
    model_index, task_index, scores = [], [], []
    for line, record in rows[1:]:
        _check_ragged(label, line, record, width)
        model = record[0].strip()
        if not model:
            raise HistoryError(f"{label}: line {line}: empty model name (column 1)")
        if model in model_line:
            raise HistoryError(
                f"{label}: line {line}: model {model!r} already has a row on line {model_line[model]}"
            )
        model_line[model] = line
        for t, cell in enumerate(record[1:]):
            if cell.strip():
                where = f"task {tasks[t]!r}: "
                scores.append(_parse_score(label, line, cell, where, score_range))
                model_index.append(len(models))
                task_index.append(t)
        models.append(model)
    if not scores:
        raise HistoryError(f"{label}: every score cell is empty (empty history)")
    history = History(
        models=tuple(models),
        tasks=tuple(tasks),
        model_index=np.array(model_index, dtype=np.int64),
        task_index=np.array(task_index, dtype=np.int64),
        scores=np.array(scores, dtype=np.float64),
    )
    return history, {task: 1 for task in tasks}


def _check_single_model_tasks(label, history: History, task_lines, strict: bool) -> None:
    single = []  # (task, kind)
    for kind in history.kinds:
        counts = np.bincount(history.select_kind(kind).task_index, minlength=history.n_tasks)
        single += [(history.tasks[t], kind) for t in np.flatnonzero(counts == 1)]
    if not single:
        return
    task, kind = single[0]
    what = "a score" if kind == DEFAULT_KIND else f"a {kind} score"
    message = (
        f"{label}: line {task_lines[task]}: task {task!r} has {what} for only one model, "
        "which cannot rank anything"
    )
    if strict:
        raise HistoryError(message)
    if len(single) > 1:
        shown = ", ".join(repr(t) for t, _ in single[:5])
        message += f" ({len(single)} such tasks: {shown}{' ...' if len(single) > 5 else ''})"
    warnings.warn(message + "; kept", HistoryWarning, stacklevel=3)


# ---------------------------------------------------------------------------
# Side information


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

    def __post_init__(self):
        keys = _str_tuple(self.keys, "keys")
        dup = _first_duplicate(keys)
        if dup is not None:
            raise ValueError(f"keys: {dup!r} is listed twice")
        numeric = {}
        for name, values in self.numeric.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (len(keys),):
                raise ValueError(f"numeric[{name!r}]: expected {len(keys)} values, got shape {values.shape}")
            numeric[name] = _readonly(values)
        categorical = {}
        for name, values in self.categorical.items():
            values = _str_tuple(values, f"categorical[{name!r}]")
            if len(values) != len(keys):
                raise ValueError(f"categorical[{name!r}]: expected {len(keys)} values, got {len(values)}")
            categorical[name] = values
        both = set(numeric) & set(categorical)
        if both:
            raise ValueError(f"column {sorted(both)[0]!r} is both numeric and categorical")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "categorical", categorical)
        object.__setattr__(self, "missing", _str_tuple(self.missing, "missing"))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.numeric) + tuple(self.categorical)

    @classmethod
    def from_cells(
        cls, keys: Sequence[str], columns: dict[str, Sequence], *, key_name: str = "model"
    ) -> SideTable:
        """From raw cells per column (str, numbers or None), typed as a CSV would be.

        A column is numeric when every non-missing cell is a number.
        """
        keys = _str_tuple(keys, "keys")
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
        names = _str_tuple(names, "names")
        dup = _first_duplicate(names)
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
        if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
            raise ValueError(f"max_categories: expected an integer >= 1, got {max_categories!r}")
        table = self.align(names)
        n = len(table)
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
        matrix = np.column_stack(blocks) if blocks else np.zeros((n, 0))
        return matrix.astype(np.float64, copy=False), labels


def _read_side_table(path, key: str, argument: str) -> SideTable:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{argument}: expected a column name, got {key!r}")
    label, rows = _read_rows(path)
    _, header = rows[0]
    header = [cell.strip() for cell in header]
    key_at = _find_column(label, header, key, argument)
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
        _check_ragged(label, line, record, len(header))
        name = record[key_at].strip()
        if not name:
            raise HistoryError(f"{label}: line {line}: empty {key!r}")
        if name in key_line:
            raise HistoryError(
                f"{label}: line {line}: {key} {name!r} already has a row on line {key_line[name]}"
            )
        key_line[name] = line
        keys.append(name)
        for i, col in columns:
            cells[col].append(record[i])
    return SideTable.from_cells(keys, cells, key_name=key)


def read_model_table(path: str | os.PathLike, key: str = "model") -> SideTable:
    """Per-model side information (architecture, parameter count, source data ...)."""
    return _read_side_table(path, key, "key")


def read_task_table(path: str | os.PathLike, key: str = "task") -> SideTable:
    """Per-task side information (training-set size, number of classes ...)."""
    return _read_side_table(path, key, "key")


def read_distance_matrix(
    path: str | os.PathLike, *, diagonal_tol: float = 1e-6
) -> tuple[tuple[str, ...], np.ndarray]:
    """A square table of distances between datasets: names in the header and first column.

    Names are kept verbatim (some are list literals such as ``"['corgi', 'pug']"``).
    Rows may come in another order than the header; they are reordered to it.
    Values must be finite and non-negative; symmetry is not required. A diagonal
    further than ``diagonal_tol`` (relative to the largest distance) from zero
    gives a :class:`HistoryWarning`.
    """
    label, rows = _read_rows(path)
    _, header = rows[0]
    names = [cell.strip() for cell in header[1:]]
    width = len(header)
    if not names:
        raise HistoryError(f"{label}: line 1: no dataset names in the header")
    col_of: dict[str, int] = {}
    for col, name in enumerate(names, start=2):
        if not name:
            raise HistoryError(f"{label}: line 1: column {col} has no name")
        if name in col_of:
            raise HistoryError(f"{label}: line 1: {name!r} names columns {col_of[name]} and {col}")
        col_of[name] = col
    if len(rows) - 1 != len(names):
        raise HistoryError(
            f"{label}: not square: {len(names)} names in the header but {len(rows) - 1} rows"
        )
    values: dict[str, np.ndarray] = {}
    row_line: dict[str, int] = {}
    for line, record in rows[1:]:
        _check_ragged(label, line, record, width)
        name = record[0].strip()
        if name not in col_of:
            hint = difflib.get_close_matches(name, names, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise HistoryError(f"{label}: line {line}: row {name!r} is not in the header{suffix}")
        if name in row_line:
            raise HistoryError(f"{label}: line {line}: row {name!r} repeats line {row_line[name]}")
        row_line[name] = line
        out = np.empty(len(names))
        for j, cell in enumerate(record[1:]):
            try:
                out[j] = float(cell)
            except ValueError:
                raise HistoryError(
                    f"{label}: line {line}: distance to {names[j]!r} is {cell!r}, not a number"
                ) from None
            if not math.isfinite(out[j]) or out[j] < 0:
                raise HistoryError(
                    f"{label}: line {line}: distance to {names[j]!r} is {cell.strip()}; "
                    "distances must be finite and non-negative"
                )
        values[name] = out
    matrix = np.stack([values[name] for name in names])
    diagonal = np.abs(np.diag(matrix))
    scale = max(float(matrix.max()), 1.0)
    if np.any(diagonal > diagonal_tol * scale):
        worst = int(np.argmax(diagonal))
        warnings.warn(
            f"{label}: line {row_line[names[worst]]}: distance of {names[worst]!r} to itself is "
            f"{diagonal[worst]}, not 0",
            HistoryWarning,
            stacklevel=2,
        )
    return tuple(names), matrix
