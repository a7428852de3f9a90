"""Reading histories (long and wide CSV) and distance matrices, with line-numbered errors."""

from __future__ import annotations

import difflib
import math
import os
import warnings
from typing import Any

import numpy as np

from .common import DEFAULT_KIND, HistoryError, HistoryWarning
from .csv_rows import check_first_row, check_id, check_ragged, find_column, read_rows
from .record import History

__all__ = ["read_distance_matrix", "read_history"]

Rows = list[tuple[int, list[str]]]
ScoreRange = tuple[float, float]


def _parse_score(label: str, line: int, cell: str, where: str, score_range: ScoreRange | None) -> float:
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


def _check_score_range(score_range: object) -> ScoreRange | None:
    if score_range is None:
        return None
    try:
        low, high = (float(v) for v in score_range)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(
            f"score_range: expected (low, high) numbers or None, got {score_range!r}"
        ) from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"score_range: expected low <= high, got {score_range!r}")
    return low, high


def read_history(
    path: str | os.PathLike[str],
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
    """Reads a history CSV (see :mod:`fennec.history` for both layouts).

    ``score_range`` (low, high), inclusive, rejects any score outside it.
    ``strict=True`` turns repairs into errors: repeated (model, task, kind) rows
    and tasks scored on a single model. Column-name arguments apply to the long
    form. ``kind_col``/``source_col`` left as None use columns ``kind`` /
    ``source`` when the file has them (otherwise every row is ``finetune``
    with no source); named explicitly, the column must exist.
    """
    score_range = _check_score_range(score_range)
    label, rows = read_rows(path)
    if wide:
        history, task_lines = _read_wide(label, rows, score_range)
    else:
        history, task_lines = _read_long(
            label, rows, strict, score_range, model_col, task_col, score_col, kind_col, source_col
        )
    _check_single_model_tasks(label, history, task_lines, strict)
    return history


def _long_columns(
    label: str, header: list[str], model_col: str, task_col: str, score_col: str, kind_col: str | None,
    source_col: str | None,
) -> tuple[int, int, int, int | None, int | None]:
    """Where the model, task, score, kind and source columns are (None: no such column)."""
    for argument, value, optional in (
        ("model_col", model_col, False),
        ("task_col", task_col, False),
        ("score_col", score_col, False),
        ("kind_col", kind_col, True),
        ("source_col", source_col, True),
    ):
        if not (optional and value is None) and (not isinstance(value, str) or not value):
            raise ValueError(f"{argument}: expected a column name, got {value!r}")
    model_at = find_column(label, header, model_col, "model_col")
    task_at = find_column(label, header, task_col, "task_col")
    score_at = find_column(label, header, score_col, "score_col")
    kind_at = source_at = None
    if kind_col is not None or "kind" in header:
        kind_at = find_column(label, header, kind_col or "kind", "kind_col")
    if source_col is not None or "source" in header:
        source_at = find_column(label, header, source_col or "source", "source_col")
    return model_at, task_at, score_at, kind_at, source_at


def _read_long(
    label: str, rows: Rows, strict: bool, score_range: ScoreRange | None, model_col: str, task_col: str,
    score_col: str, kind_col: str | None, source_col: str | None,
) -> tuple[History, dict[str, int]]:
    _, header = rows[0]
    header = [cell.strip() for cell in header]
    width = len(header)
    model_at, task_at, score_at, kind_at, source_at = _long_columns(
        label, header, model_col, task_col, score_col, kind_col, source_col
    )
    if len(rows) == 1:
        raise HistoryError(f"{label}: no data rows after the header (empty history)")

    first_line: dict[tuple[str, str, str], int] = {}
    sums: dict[tuple[str, str, str], list[Any]] = {}  # key -> [total, count, source, lines]
    task_lines: dict[str, int] = {}
    for line, record in rows[1:]:
        check_ragged(label, line, record, width)
        model = record[model_at].strip()
        task = record[task_at].strip()
        if not model:
            raise HistoryError(f"{label}: line {line}: empty model name (column {model_col!r})")
        if not task:
            raise HistoryError(f"{label}: line {line}: empty task name (column {task_col!r})")
        check_id(label, line, "model id", model)
        check_id(label, line, "task id", task)
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
    # Models and tasks in order of first appearance, as from_rows lists them.
    history = History.from_rows(
        (model, task, total / count, kind, source)
        for (model, task, kind), (total, count, source, _) in sums.items()
    )
    return history, task_lines


def _read_wide(label: str, rows: Rows, score_range: ScoreRange | None) -> tuple[History, dict[str, int]]:
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
        check_id(label, 1, f"column {col}: task id", task)
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
        check_ragged(label, line, record, width)
        model = record[0].strip()
        if not model:
            raise HistoryError(f"{label}: line {line}: empty model name (column 1)")
        check_id(label, line, "model id", model)
        check_first_row(label, line, "model", model, model_line)
        for t, cell in enumerate(record[1:]):
            if cell.strip():
                where = f"task {tasks[t]!r}: "
                scores.append(_parse_score(label, line, cell, where, score_range))
                model_index.append(len(models))
                task_index.append(t)
        models.append(model)
    if not scores:
        raise HistoryError(f"{label}: every score cell is empty (empty history)")
    # Built by index, not from_rows: a model row or a task column without any score stays listed.
    history = History(
        models=tuple(models),
        tasks=tuple(tasks),
        model_index=np.array(model_index, dtype=np.int64),
        task_index=np.array(task_index, dtype=np.int64),
        scores=np.array(scores, dtype=np.float64),
    )
    return history, {task: 1 for task in tasks}


def _check_single_model_tasks(label: str, history: History, task_lines: dict[str, int], strict: bool) -> None:
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


def _distance_header(label: str, header: list[str]) -> tuple[list[str], dict[str, int]]:
    """The dataset names of a distance matrix's header, and the column (1-based) of each."""
    names = [cell.strip() for cell in header[1:]]
    if not names:
        raise HistoryError(f"{label}: line 1: no dataset names in the header")
    col_of: dict[str, int] = {}
    for col, name in enumerate(names, start=2):
        if not name:
            raise HistoryError(f"{label}: line 1: column {col} has no name")
        check_id(label, 1, f"column {col}: dataset id", name)
        if name in col_of:
            raise HistoryError(f"{label}: line 1: {name!r} names columns {col_of[name]} and {col}")
        col_of[name] = col
    return names, col_of


def _distance_row(label: str, line: int, record: list[str], names: list[str]) -> np.ndarray:
    """A row's distances: finite, non-negative numbers."""
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
    return out


def read_distance_matrix(
    path: str | os.PathLike[str], *, diagonal_tol: float = 1e-6
) -> tuple[tuple[str, ...], np.ndarray]:
    """A square table of distances between datasets: names in the header and first column.

    Names are kept verbatim (some are list literals such as ``"['corgi', 'pug']"``).
    Rows may come in another order than the header; they are reordered to it.
    Values must be finite and non-negative; symmetry is not required. A diagonal
    further than ``diagonal_tol`` (relative to the largest distance) from zero
    gives a :class:`~fennec.history.HistoryWarning`.
    """
    label, rows = read_rows(path)
    _, header = rows[0]
    width = len(header)
    names, col_of = _distance_header(label, header)
    if len(rows) - 1 != len(names):
        raise HistoryError(
            f"{label}: not square: {len(names)} names in the header but {len(rows) - 1} rows"
        )
    values: dict[str, np.ndarray] = {}
    row_line: dict[str, int] = {}
    for line, record in rows[1:]:
        check_ragged(label, line, record, width)
        name = record[0].strip()
        if name not in col_of:
            hint = difflib.get_close_matches(name, names, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise HistoryError(f"{label}: line {line}: row {name!r} is not in the header{suffix}")
        if name in row_line:
            raise HistoryError(f"{label}: line {line}: row {name!r} repeats line {row_line[name]}")
        row_line[name] = line
        values[name] = _distance_row(label, line, record, names)
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
