"""CSV reading with line numbers, shared by the history, side-table and distance readers.

Every error is a :class:`~fennec.history.HistoryError` naming the file and the
line as a text editor numbers it (the header is line 1).
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from pathlib import Path

from .._checks import identifier
from .common import HistoryError, HistoryFileNotFoundError

__all__ = ["check_first_row", "check_id", "check_ragged", "find_column", "read_rows"]


def read_rows(path: str | os.PathLike[str]) -> tuple[str, list[tuple[int, list[str]]]]:
    """The file's label and every non-blank record of it with the line it starts on (1-based)."""
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


def find_column(label: str, header: list[str], name: str, argument: str) -> int:
    """Index of column ``name`` in the header, or an error suggesting the closest one.

    ``argument`` is the reader's keyword that names the column, suggested when
    the default name is missing.
    """
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


def check_ragged(label: str, line: int, record: list[str], width: int) -> None:
    """An error unless the record has as many fields as the header."""
    if len(record) != width:
        raise HistoryError(
            f"{label}: line {line}: {len(record)} fields, but the header has {width}"
        )


def check_id(label: str, line: int, what: str, name: str) -> str:
    """``name`` as a model or task id (the one id check, :func:`fennec._checks.identifier`),
    or an error naming the file and line."""
    try:
        return identifier(name, what)
    except ValueError as err:
        raise HistoryError(f"{label}: line {line}: {err}") from None


def check_first_row(label: str, line: int, what: str, name: str, first_line: dict[str, int]) -> None:
    """Records that ``name`` has its row on ``line``, refusing a second row for it (naming both lines)."""
    if name in first_line:
        raise HistoryError(f"{label}: line {line}: {what} {name!r} already has a row on line {first_line[name]}")
    first_line[name] = line
