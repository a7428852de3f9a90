"""The zoo store: a folder holding ``zoo.sqlite`` and the fitted arrays.

Layout::

    <zoo>/zoo.sqlite        models, tasks, history, task descriptors (WAL mode)
    <zoo>/fitted.json       pointer: {"version": n, "dir": "fitted-<n>", "arrays": [names]}
    <zoo>/fitted-<n>/       one <name>.npy per array (no pickle) and meta.json

Atomicity. Every SQLite write runs in one ``BEGIN IMMEDIATE`` transaction
committed by ``with con:``, and all checks that can fail run inside it before
the commit; any exception, KeyboardInterrupt or process death before the commit
leaves the previous contents. Fitted state is never overwritten in place:
:meth:`Zoo.write_fitted` writes a fresh hidden folder, fsyncs every file and
the folder, renames it to ``fitted-<n>``, then replaces ``fitted.json`` by a
rename (the commit point). A reader reads the pointer once and loads only from
the folder it names, so it sees the old state or the new one, never a mix.
The folder before the current one is kept so a reader that read the pointer a
moment ago still finds its files; older ones are removed (arrays already
memory-mapped survive removal on POSIX).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import fsync_folder, write_atomically
from ._checks import identifier
from .history import DEFAULT_KIND, History, SideTable, read_history

try:
    import fcntl
except ImportError:  # Windows: writers are not serialised across processes there
    fcntl = None  # type: ignore[assignment]

__all__ = ["SCHEMA_VERSION", "Zoo", "ZooError"]

SCHEMA_VERSION = 1
MODEL_EMBEDDINGS_TABLE = (
    "CREATE TABLE IF NOT EXISTS model_embeddings (model TEXT PRIMARY KEY, vector BLOB NOT NULL,"
    " dim INTEGER NOT NULL, FOREIGN KEY (model) REFERENCES models(id))"
)
# Zoos made before these tables existed get them on first write (readers treat a missing one as empty);
# the change is additive, so the schema version stays and older fennec versions still open the zoo.
TASK_IMAGES_TABLE = (
    "CREATE TABLE IF NOT EXISTS task_images (task TEXT PRIMARY KEY, source TEXT NOT NULL,"
    " FOREIGN KEY (task) REFERENCES tasks(id))"
)
MODEL_RUNTIMES_TABLE = (
    "CREATE TABLE IF NOT EXISTS model_runtimes (model TEXT PRIMARY KEY, spec TEXT NOT NULL,"
    " FOREIGN KEY (model) REFERENCES models(id))"
)
# Made on the first failed measure; a zoo without it has none.
MEASURE_FAILURES_TABLE = (
    "CREATE TABLE IF NOT EXISTS measure_failures (model TEXT NOT NULL, task TEXT NOT NULL, kind TEXT NOT NULL,"
    " reason TEXT NOT NULL, source TEXT, PRIMARY KEY (model, task, kind),"
    " FOREIGN KEY (model) REFERENCES models(id), FOREIGN KEY (task) REFERENCES tasks(id))"
)
DB_NAME = "zoo.sqlite"
POINTER_NAME = "fitted.json"
LOCK_NAME = "fitted.lock"
# How long a write of fitted state waits for another process's (seconds), and when it says so: the
# lock covers only writing the arrays, seconds even for a large zoo, so a long wait means a stuck holder.
DEFAULT_LOCK_TIMEOUT = 300.0
LOCK_NOTICE_AFTER = 2.0
FITTED_PREFIX = "fitted-"
ARRAY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    architecture TEXT,
    family TEXT,
    n_params REAL,
    source_dataset TEXT,
    input_size INTEGER,
    license TEXT,
    extra TEXT  -- JSON object
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    n_classes INTEGER,
    n_train INTEGER,
    extra TEXT  -- JSON object
);
CREATE TABLE history (
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    score REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'finetune',
    source TEXT,
    PRIMARY KEY (model, task, kind),
    FOREIGN KEY (model) REFERENCES models(id),
    FOREIGN KEY (task) REFERENCES tasks(id)
);
CREATE TABLE model_embeddings (
    model TEXT PRIMARY KEY,
    vector BLOB NOT NULL,  -- float32 little-endian (archi2vec)
    dim INTEGER NOT NULL,
    FOREIGN KEY (model) REFERENCES models(id)
);
CREATE TABLE task_descriptors (
    task TEXT PRIMARY KEY,
    vector BLOB NOT NULL,  -- float32 little-endian
    dim INTEGER NOT NULL,
    FOREIGN KEY (task) REFERENCES tasks(id)
);
CREATE TABLE task_images (
    task TEXT PRIMARY KEY,
    source TEXT NOT NULL,  -- JSON: the images folder, its content digest, how it was sampled and embedded
    FOREIGN KEY (task) REFERENCES tasks(id)
);
CREATE TABLE model_runtimes (
    model TEXT PRIMARY KEY,
    spec TEXT NOT NULL,  -- JSON: how to run the model (ONNX file + sha256, or torch module:factory), preprocessing
    FOREIGN KEY (model) REFERENCES models(id)
);
"""

MODEL_COLUMNS: dict[str, type] = {
    "architecture": str,
    "family": str,
    "n_params": float,
    "source_dataset": str,
    "input_size": int,
    "license": str,
}
TASK_COLUMNS: dict[str, type] = {"n_classes": int, "n_train": int}


class ZooError(ValueError):
    """A zoo that cannot be opened or an operation refused; nothing stored was changed."""


def _connect(db: Path) -> sqlite3.Connection:
    # Autocommit at the driver level: transactions are opened explicitly in _write().
    con = sqlite3.connect(db, isolation_level=None, timeout=30.0)
    con.execute("PRAGMA foreign_keys = ON")
    return con


class Zoo:
    """A zoo folder; open one with :meth:`create` or :meth:`open`, close it with :meth:`close`.

    One object per thread (it holds one SQLite connection); any number of
    processes may open the same zoo: SQLite serialises writers, a lock file
    serialises :meth:`write_fitted`.
    """

    def __init__(self, path: Path, con: sqlite3.Connection) -> None:
        self.path = path
        self._con = con

    # -- opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Zoo:
        """A new, empty zoo at ``path`` (a new or existing folder without a zoo in it)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ZooError(f"{path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        db = path / DB_NAME
        if db.exists():
            raise ZooError(f"{path}: a zoo already exists there")
        # Built under a temporary name and linked into place, so a half-made zoo is
        # never seen and two creators cannot both win.
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{DB_NAME}.", suffix=".tmp")
        os.close(fd)
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("BEGIN IMMEDIATE")
                with con:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            finally:
                con.close()
            try:
                os.link(tmp, db)
            except FileExistsError:
                raise ZooError(f"{path}: a zoo already exists there") from None
            except OSError:
                # A file system without hard links: a rename, after one more look.
                if db.exists():
                    raise ZooError(f"{path}: a zoo already exists there") from None
                os.replace(tmp, db)
        finally:
            Path(tmp).unlink(missing_ok=True)
        fsync_folder(path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Zoo:
        """An existing zoo; an error names the path when it is none, or is newer than this code."""
        path = Path(path)
        db = path / DB_NAME
        if not path.is_dir():
            raise ZooError(f"{path}: no such folder, so not a zoo")
        if not db.is_file():
            raise ZooError(f"{path}: not a zoo (no {DB_NAME} in it)")
        con = _connect(db)
        try:
            con.execute("PRAGMA journal_mode = WAL")
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            con.close()
            raise ZooError(f"{path}: not a zoo ({DB_NAME}: {err})") from None
        if row is None:
            con.close()
            raise ZooError(f"{path}: not a zoo (no schema version in {DB_NAME})")
        version = int(row[0])
        if version > SCHEMA_VERSION:
            con.close()
            raise ZooError(
                f"{path}: zoo schema version {version} is newer than this fennec "
                f"understands ({SCHEMA_VERSION}); upgrade fennec"
            )
        return cls(path, con)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Zoo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Zoo({str(self.path)!r})"

    @property
    def schema_version(self) -> int:
        return int(self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def setting(self, key: str, default: str | None = None) -> str | None:
        """A zoo-wide setting (e.g. ``proxy``: the proxy its task descriptors were made with)."""
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",)).fetchone()
        return default if row is None else row[0]

    def set_setting(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise TypeError("setting: key and value must be strings")
        with self._write() as con:
            con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                        "excluded.value", (f"setting:{key}", value))

    def data_signal(self) -> tuple[int, int]:
        """Changes whenever the database changed: another connection's commits (SQLite's
        data_version) and this connection's own (its total_changes)."""
        return (int(self._con.execute("PRAGMA data_version").fetchone()[0]), self._con.total_changes)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")  # take the write lock now: checks and writes see one state
        with con:
            yield con

    # -- models and tasks ----------------------------------------------------

    def add_models(self, rows: Iterable[Mapping[str, Any]], *, replace: bool = False) -> None:
        """Adds models: each row needs ``id``; known columns are architecture, family,
        n_params, source_dataset, input_size, license; every other key (and an
        ``extra`` dict) is kept as JSON. An id already stored is an error unless
        ``replace=True``, which overwrites that model's side information."""
        self._add_rows("models", "add_models", rows, MODEL_COLUMNS, replace)

    def add_tasks(self, rows: Iterable[Mapping[str, Any]], *, replace: bool = False) -> None:
        """Adds tasks: each row needs ``id``; known columns n_classes, n_train; others as JSON."""
        self._add_rows("tasks", "add_tasks", rows, TASK_COLUMNS, replace)

    def _add_rows(self, table: str, argument: str, rows: Iterable[Mapping[str, Any]], columns: dict[str, type],
                  replace: bool) -> None:
        if isinstance(rows, Mapping):
            raise TypeError(f"{argument}: expected a list of dicts, got a single dict")
        records = [_normalise_row(argument, i, row, columns) for i, row in enumerate(rows)]
        seen: set[str] = set()
        for record in records:
            if record[0] in seen:
                raise ZooError(f"{argument}: id {record[0]!r} appears twice")
            seen.add(record[0])
        names = ["id", *columns, "extra"]
        insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        if replace:
            updates = ", ".join(f"{c} = excluded.{c}" for c in names[1:])
            insert += f" ON CONFLICT(id) DO UPDATE SET {updates}"
        with self._write() as con:
            if not replace:
                for record in records:
                    if con.execute(f"SELECT 1 FROM {table} WHERE id = ?", (record[0],)).fetchone():
                        raise ZooError(
                            f"{argument}: id {record[0]!r} is already in the zoo "
                            "(pass replace=True to update it)"
                        )
            con.executemany(insert, records)

    def models(self) -> list[dict[str, Any]]:
        """Every model with its side information, in the order they were added."""
        return self._rows("models", MODEL_COLUMNS)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task with its side information, in the order they were added."""
        return self._rows("tasks", TASK_COLUMNS)

    def models_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The rows of the models named (unknown ids are left out), keyed by id."""
        ids = list(ids)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):  # SQLite caps the number of bound parameters
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            for row in self._rows("models", MODEL_COLUMNS, f"WHERE id IN ({marks})", chunk):
                found[row["id"]] = row
        return found

    def _rows(self, table: str, columns: dict[str, type], condition: str = "",
              parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        names = ["id", *columns, "extra"]
        out = []
        query = f"SELECT {', '.join(names)} FROM {table} {condition} ORDER BY rowid"
        for values in self._con.execute(query, parameters):
            row = dict(zip(names, values))
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
            out.append(row)
        return out

    def model_table(self) -> SideTable:
        """Model side information as a :class:`SideTable` (known columns, then JSON extras)."""
        return _side_table(self.models(), MODEL_COLUMNS, "model")

    def task_table(self) -> SideTable:
        """Task side information as a :class:`SideTable`."""
        return _side_table(self.tasks(), TASK_COLUMNS, "task")

    # -- history -------------------------------------------------------------

    def add_history(
        self,
        history: History,
        *,
        kind: str | None = None,
        source: str | None = None,
        replace: bool = False,
        strict: bool = False,
    ) -> int:
        """Stores every result of ``history`` in one transaction; returns the row count.

        ``kind`` labels rows the history leaves as ``finetune`` (``None``: keep the
        history's own kinds); a history with other kinds must not be relabelled.
        ``source`` fills rows without one. A result already stored for the same
        (model, task, kind) is an error unless ``replace=True``. Unknown model or
        task ids are added as bare rows, or refused with ``strict=True``.
        """
        _check_add_history(history, kind, source)
        kinds = history.row_kinds() if kind is None else (kind,) * len(history)
        with self._write() as con:
            # Models without any row are added too: side information may still rank them.
            _add_unknown_ids(con, "models", history.models, "model", strict)
            _add_unknown_ids(con, "tasks", history.tasks, "task", strict)
            rows = _history_rows(history, kinds, source)
            if replace:
                con.executemany(_history_insert(True), rows)
            else:
                _insert_new(con, rows)
        return len(history)

    def import_history_csv(
        self,
        path: str | os.PathLike[str],
        *,
        wide: bool = False,
        kind: str | None = None,
        source: str | None = None,
        replace: bool = False,
        strict: bool = False,
        **read_options: Any,
    ) -> History:
        """Reads ``path`` with :func:`~fennec.history.read_history` (``wide``, ``strict``
        and ``read_options`` such as ``score_range`` or ``task_col``) and stores it
        with :meth:`add_history`: the whole file or nothing. Returns what was read."""
        history = read_history(path, wide=wide, strict=strict, **read_options)
        self.add_history(history, kind=kind, source=source, replace=replace, strict=strict)
        return history

    def history(self, kind: str = DEFAULT_KIND) -> History:
        """The stored results of one kind. Every model is listed (a model with no
        results can still be ranked from side information); tasks are those with
        at least one result of this kind."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind: expected a non-empty string, got {kind!r}")
        con = self._con
        # One read transaction, so the three queries see the same snapshot.
        con.execute("BEGIN")
        try:
            models = [r[0] for r in con.execute("SELECT id FROM models ORDER BY rowid")]
            tasks = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM tasks WHERE id IN (SELECT task FROM history WHERE kind = ?)"
                    " ORDER BY rowid",
                    (kind,),
                )
            ]
            rows = con.execute(
                "SELECT model, task, score, source FROM history WHERE kind = ? ORDER BY rowid", (kind,)
            ).fetchall()
        finally:
            con.execute("COMMIT")
        model_pos = {m: i for i, m in enumerate(models)}
        task_pos = {t: i for i, t in enumerate(tasks)}
        return History(
            models=tuple(models),
            tasks=tuple(tasks),
            model_index=np.array([model_pos[r[0]] for r in rows], dtype=np.int64),
            task_index=np.array([task_pos[r[1]] for r in rows], dtype=np.int64),
            scores=np.array([r[2] for r in rows], dtype=np.float64),
            kind=(kind,) * len(rows),
            source=tuple(r[3] or "" for r in rows),
        )

    def history_kinds(self) -> list[str]:
        """The kinds of result stored, in order of first appearance."""
        return [r[0] for r in self._con.execute("SELECT kind FROM history GROUP BY kind ORDER BY MIN(rowid)")]

    def history_counts(self) -> dict[str, tuple[int, int]]:
        """For each kind stored, in order of first appearance: (results, tasks with a result)."""
        rows = self._con.execute(
            "SELECT kind, COUNT(*), COUNT(DISTINCT task) FROM history GROUP BY kind ORDER BY MIN(rowid)"
        )
        return {kind: (int(results), int(tasks)) for kind, results, tasks in rows}

    def kind_of_new_results(self) -> str:
        """The kind given to results that name none, at the command line and over HTTP.

        The kind the current fitted state was learnt from; without one, the zoo's
        only kind, or ``finetune`` while it holds no results. A zoo holding several
        kinds and no fit has no such kind: an error asks for one. Costs a small file
        read on a fitted zoo, so a write stays the size of what it writes.
        """
        pointer = self._read_pointer()
        if pointer is not None:
            try:
                meta = json.loads((self.path / pointer["dir"] / "meta.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                meta = {}  # replaced while being read, or damaged: fall back to what is stored
            fitted_kind = meta.get("kind") if isinstance(meta, dict) else None
            if isinstance(fitted_kind, str) and fitted_kind:
                return fitted_kind
        first = self._con.execute("SELECT kind FROM history LIMIT 1").fetchone()
        if first is None:
            return DEFAULT_KIND
        if self._con.execute("SELECT 1 FROM history WHERE kind <> ? LIMIT 1", (first[0],)).fetchone() is None:
            return str(first[0])
        counts = ", ".join(f"{k} ({n} results)" for k, (n, _) in self.history_counts().items())
        raise ZooError(
            f"{self.path}: the zoo holds several kinds of result ({counts}) and no fit to follow; "
            "say which kind these results are (--kind KIND, or \"kind\" in each row)"
        )

    def export_history_csv(
        self, path: str | os.PathLike[str], *, wide: bool = False, kind: str = DEFAULT_KIND
    ) -> None:
        """Writes the results of one kind as a long (or wide) CSV, atomically."""
        history = self.history(kind)
        if wide:
            history.to_wide_csv(path)
        else:
            history.to_long_csv(path)

    def _optional_rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of a query on a table that older zoos (or zoos that never needed it) lack:
        none when it is not there."""
        try:
            return self._con.execute(query).fetchall()
        except sqlite3.OperationalError:
            return []

    # -- measure failures ----------------------------------------------------

    def measure_failures(self) -> dict[tuple[str, str, str], str]:
        """Cells ``fennec zoo measure`` could not compute: (model, task, kind) -> why."""
        # the table is made by the first failure
        rows = self._optional_rows("SELECT model, task, kind, reason FROM measure_failures ORDER BY rowid")
        return {(m, t, k): reason for m, t, k, reason in rows}

    def add_measure_failure(self, model: str, task: str, kind: str, reason: str, source: str = "") -> None:
        """Records (or updates) why one cell could not be measured, in one transaction."""
        with self._write() as con:
            con.execute(MEASURE_FAILURES_TABLE)
            con.execute("INSERT INTO measure_failures (model, task, kind, reason, source) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT(model, task, kind) DO UPDATE SET reason = excluded.reason, "
                        "source = excluded.source", (model, task, kind, reason, source))

    def clear_measure_failure(self, model: str, task: str, kind: str) -> None:
        """Forgets a recorded failure (the cell was measured after all)."""
        if (model, task, kind) in self.measure_failures():
            with self._write() as con:
                con.execute("DELETE FROM measure_failures WHERE model = ? AND task = ? AND kind = ?",
                            (model, task, kind))

    # -- task descriptors ----------------------------------------------------

    def set_task_descriptor(self, task: str, vector: Any) -> None:
        """Stores (or replaces) a task's descriptor: a 1-D finite float vector, kept as float32."""
        vector = _check_descriptor(vector)
        with self._write() as con:
            if not con.execute("SELECT 1 FROM tasks WHERE id = ?", (task,)).fetchone():
                raise ZooError(f"task: unknown task {task!r} (add it with add_tasks first)")
            con.execute(
                "INSERT INTO task_descriptors (task, vector, dim) VALUES (?, ?, ?) "
                "ON CONFLICT(task) DO UPDATE SET vector = excluded.vector, dim = excluded.dim",
                (task, vector.astype("<f4").tobytes(), len(vector)),
            )

    def task_descriptor(self, task: str) -> np.ndarray:
        """A task's descriptor as float32; an error when the task has none."""
        row = self._con.execute("SELECT vector, dim FROM task_descriptors WHERE task = ?", (task,)).fetchone()
        if row is None:
            known = self._con.execute("SELECT 1 FROM tasks WHERE id = ?", (task,)).fetchone()
            why = "has no descriptor" if known else "is not in the zoo"
            raise ZooError(f"task: {task!r} {why}")
        return _decode_descriptor(task, row[0], row[1])

    def task_descriptors(self) -> dict[str, np.ndarray]:
        """Every stored descriptor, by task, in the order the tasks were added."""
        rows = self._con.execute(
            "SELECT d.task, d.vector, d.dim FROM task_descriptors d"
            " JOIN tasks t ON t.id = d.task ORDER BY t.rowid"
        )
        return {task: _decode_descriptor(task, blob, dim) for task, blob, dim in rows}

    # -- task images ---------------------------------------------------------

    def task_images(self) -> dict[str, dict[str, Any]]:
        """Every task added from an images folder: task -> its source (``path``, ``digest``,
        ``files``, ``per_class``, ``seed``, ``proxy``), in the order the tasks were added."""
        rows = self._optional_rows(  # absent from a zoo made before task images existed
            "SELECT i.task, i.source FROM task_images i JOIN tasks t ON t.id = i.task ORDER BY t.rowid")
        return {task: json.loads(text) for task, text in rows}

    def set_task_images(self, task: str, *, n_classes: int, n_train: int, descriptor: Any,
                        source: Mapping[str, Any], proxy: str, replace: bool = False) -> str:
        """Stores a task described from its images, in one transaction: its row (added, or a row
        without a descriptor filled in), class and image counts, descriptor and ``source``; sets the
        zoo's ``proxy`` setting when it has none. Returns ``"added"``, ``"filled"`` or ``"replaced"``.

        Refused unless ``replace=True``: a task already added from images, or one whose stored
        descriptor or counts the new ones would overwrite."""
        task = identifier(task, "task")
        vector = _check_descriptor(descriptor)
        counts = {"n_classes": n_classes, "n_train": n_train}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        try:
            source_text = json.dumps(dict(source), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"source: must be JSON-serialisable: {err}") from None
        with self._write() as con:
            con.execute(TASK_IMAGES_TABLE)
            row = con.execute("SELECT value FROM meta WHERE key = 'setting:proxy'").fetchone()
            if row is not None and row[0] != proxy:
                raise ZooError(f"task {task!r}: embedded by the {proxy} proxy, but the zoo's descriptors come from "
                               f"the {row[0]} proxy; descriptors of two proxies cannot be compared")
            if row is None:
                con.execute("INSERT INTO meta (key, value) VALUES ('setting:proxy', ?)", (proxy,))
            stored = con.execute("SELECT n_classes, n_train FROM tasks WHERE id = ?", (task,)).fetchone()
            outcome = "added"
            if stored is None:
                con.execute("INSERT INTO tasks (id, n_classes, n_train) VALUES (?, ?, ?)",
                            (task, int(n_classes), int(n_train)))
            else:
                outcome = "replaced" if replace else "filled"
                if not replace:
                    _refuse_overwrite(con, task, dict(zip(counts, stored)), counts)
                con.execute("UPDATE tasks SET n_classes = ?, n_train = ? WHERE id = ?",
                            (int(n_classes), int(n_train), task))
            con.execute(
                "INSERT INTO task_descriptors (task, vector, dim) VALUES (?, ?, ?) "
                "ON CONFLICT(task) DO UPDATE SET vector = excluded.vector, dim = excluded.dim",
                (task, vector.astype("<f4").tobytes(), len(vector)),
            )
            con.execute("INSERT INTO task_images (task, source) VALUES (?, ?) "
                        "ON CONFLICT(task) DO UPDATE SET source = excluded.source", (task, source_text))
        return outcome

    # -- model runtimes ------------------------------------------------------

    def model_runtimes(self) -> dict[str, dict[str, Any]]:
        """How each model with a runnable reference is run: model -> its spec (see
        :mod:`fennec.runnable`), in the order the models were added."""
        rows = self._optional_rows(  # absent from a zoo made before runnable references existed
            "SELECT r.model, r.spec FROM model_runtimes r JOIN models m ON m.id = r.model ORDER BY m.rowid")
        return {model: json.loads(text) for model, text in rows}

    def set_model_runtime(self, model: str, spec: Mapping[str, Any] | None) -> None:
        """Stores (or replaces) how a model is run; ``None`` removes it. The model must be in the zoo."""
        try:
            text = None if spec is None else json.dumps(dict(spec), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"spec: must be JSON-serialisable: {err}") from None
        with self._write() as con:
            con.execute(MODEL_RUNTIMES_TABLE)
            if not con.execute("SELECT 1 FROM models WHERE id = ?", (model,)).fetchone():
                raise ZooError(f"model: unknown model {model!r} (add it with add_models first)")
            if text is None:
                con.execute("DELETE FROM model_runtimes WHERE model = ?", (model,))
            else:
                con.execute("INSERT INTO model_runtimes (model, spec) VALUES (?, ?) "
                            "ON CONFLICT(model) DO UPDATE SET spec = excluded.spec", (model, text))

    # -- model embeddings (archi2vec) ----------------------------------------

    def set_model_embeddings(self, vectors: Mapping[str, Any]) -> None:
        """Stores (or replaces) models' architecture embeddings in one transaction.

        ``vectors`` maps model id -> 1-D finite float vector (kept as float32);
        every model must already be in the zoo and every vector of one width.
        """
        checked = {model: _check_descriptor(v) for model, v in vectors.items()}
        widths = {len(v) for v in checked.values()}
        if len(widths) > 1:
            raise ValueError(f"vectors: embeddings of different widths {sorted(widths)}")
        with self._write() as con:
            # Zoos made before embeddings existed get the table on first use.
            con.execute(MODEL_EMBEDDINGS_TABLE)
            stored = {r[0] for r in con.execute("SELECT dim FROM model_embeddings")}
            if stored and widths and stored != widths:
                raise ValueError(f"vectors: width {widths.pop()} differs from the stored embeddings' "
                                 f"{stored.pop()}")
            for model, vector in checked.items():
                if not con.execute("SELECT 1 FROM models WHERE id = ?", (model,)).fetchone():
                    raise ZooError(f"model: unknown model {model!r} (add it with add_models first)")
                con.execute(
                    "INSERT INTO model_embeddings (model, vector, dim) VALUES (?, ?, ?) "
                    "ON CONFLICT(model) DO UPDATE SET vector = excluded.vector, dim = excluded.dim",
                    (model, vector.astype("<f4").tobytes(), len(vector)),
                )

    def model_embeddings(self) -> dict[str, np.ndarray]:
        """Every stored architecture embedding, by model, in the order the models were added."""
        rows = self._optional_rows(  # absent from a zoo made before embeddings existed
            "SELECT e.model, e.vector, e.dim FROM model_embeddings e"
            " JOIN models m ON m.id = e.model ORDER BY m.rowid")
        return {model: _decode_descriptor(model, blob, dim) for model, blob, dim in rows}

    # -- fitted state --------------------------------------------------------

    def write_fitted(self, state: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                     lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> int:
        """Stores a new fitted state and makes it current in one step; returns its version.

        ``state`` maps names (letters, digits, ``_.-``) to numeric arrays; ``meta`` is a
        JSON-serialisable dict. Readers see the previous state until the switch.
        Writers take ``fitted.lock`` in turn: one that finds it held says so on stderr
        after two seconds, and gives up with a :class:`ZooError` after ``lock_timeout``
        seconds (default 300; ``math.inf`` waits for ever).
        """
        arrays = _check_state(state)
        meta_text = _check_meta(meta)
        lock_timeout = _check_lock_timeout(lock_timeout)
        with self._fitted_lock(lock_timeout):
            previous = self.fitted_version()
            version = max([*self._fitted_versions(), previous or 0]) + 1
            final = self.path / f"{FITTED_PREFIX}{version}"
            staging = Path(
                tempfile.mkdtemp(dir=self.path, prefix=f".{FITTED_PREFIX}{version}.", suffix=".tmp")
            )
            try:
                for name, array in arrays.items():
                    with open(staging / f"{name}.npy", "wb") as fh:
                        np.save(fh, array, allow_pickle=False)
                        fh.flush()
                        os.fsync(fh.fileno())
                with open(staging / "meta.json", "w", encoding="utf-8") as fh:
                    fh.write(meta_text)
                    fh.flush()
                    os.fsync(fh.fileno())
                fsync_folder(staging)
                os.rename(staging, final)
                fsync_folder(self.path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _switch_pointer(self.path, version, final.name, sorted(arrays))
            self._remove_old_fitted(keep={version, previous})
        return version

    def read_fitted(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The current fitted arrays (memory-mapped, read-only) and their meta."""
        for _ in range(5):
            pointer = self._read_pointer()
            if pointer is None:
                raise ZooError(f"{self.path}: no fitted state yet (write_fitted has not run)")
            folder = self.path / pointer["dir"]
            try:
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
                # Exactly the arrays the pointer lists: a folder being removed may show a subset.
                arrays = {name: _load_array(folder / f"{name}.npy") for name in pointer["arrays"]}
            except FileNotFoundError as err:
                if self._read_pointer() == pointer:
                    raise ZooError(
                        f"{folder}: named by {POINTER_NAME} but {err.filename} is missing"
                    ) from None
                # Newer states were written since the pointer was read and this one was
                # removed: read the pointer again rather than mix folders.
                continue
            return arrays, meta
        raise ZooError(f"{self.path}: fitted state kept changing while being read; try again")

    def fitted_version(self) -> int | None:
        """The current fitted version (one small file read), or None before the first fit."""
        pointer = self._read_pointer()
        return None if pointer is None else int(pointer["version"])

    def _read_pointer(self) -> dict[str, Any] | None:
        try:
            text = (self.path / POINTER_NAME).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            pointer: dict[str, Any] = json.loads(text)
            int(pointer["version"])
            if not all(isinstance(a, str) and ARRAY_NAME.match(a) for a in pointer["arrays"]):
                raise ValueError(pointer["arrays"])
            folder = str(pointer["dir"])
            if not folder.startswith(FITTED_PREFIX) or "/" in folder or "\\" in folder:
                raise ValueError(folder)
        except (ValueError, KeyError, TypeError):
            raise ZooError(f"{self.path / POINTER_NAME}: damaged pointer file: {text[:200]!r}") from None
        return pointer

    def _fitted_versions(self) -> list[int]:
        out: list[int] = []
        for entry in self.path.iterdir():
            name = entry.name
            if name.startswith(FITTED_PREFIX) and name[len(FITTED_PREFIX):].isdigit() and entry.is_dir():
                out.append(int(name[len(FITTED_PREFIX):]))
        return out

    def _remove_old_fitted(self, keep: set[int | None]) -> None:
        """Removes fitted folders but the current and the previous one, and any debris."""
        for version in self._fitted_versions():
            if version not in keep:
                shutil.rmtree(self.path / f"{FITTED_PREFIX}{version}", ignore_errors=True)
        # Staging folders left by a writer that died; writers hold the lock, so none is live.
        for entry in self.path.iterdir():
            if entry.name.startswith(f".{FITTED_PREFIX}") and entry.name.endswith(".tmp"):
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.path.iterdir():
            if entry.name.startswith(f".{POINTER_NAME}.") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    @contextmanager
    def _fitted_lock(self, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Generator[None, None, None]:
        with open(self.path / LOCK_NAME, "a+b") as fh:
            if fcntl is not None:
                _wait_for_lock(fh.fileno(), self.path / LOCK_NAME, timeout)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -- helpers -------------------------------------------------------------------


def _check_lock_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"lock_timeout: expected a number of seconds >= 0 (math.inf: no limit), got {timeout!r}")
    return float(timeout)


def _wait_for_lock(fd: int, lock: Path, timeout: float) -> None:
    """Takes the exclusive lock on ``fd``, polling, so that a wait can be reported and bounded
    (a blocking flock can do neither)."""
    started = time.monotonic()
    told = False
    pause = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        if waited >= timeout:
            raise ZooError(
                f"{lock}: another process has held this lock for over {timeout:g} s, so the fitted state "
                "was not written; if no other fit is running, the holder is stuck (find it with "
                f"`fuser {lock}`, then stop it), or pass lock_timeout= with more seconds to wait longer"
            )
        if not told and waited >= LOCK_NOTICE_AFTER:
            print(f"fennec: waiting for {lock}: another process holds it (it is writing a fitted state); "
                  + ("waiting with no limit" if math.isinf(timeout) else f"giving up after {timeout:g} s"),
                  file=sys.stderr, flush=True)
            told = True
        time.sleep(min(pause, timeout - waited))
        pause = min(2 * pause, 0.2)


def _refuse_overwrite(con: sqlite3.Connection, task: str, stored: dict[str, Any], new: dict[str, int]) -> None:
    """Refuses to overwrite a task's stored descriptor or counts that differ from the new ones."""
    if con.execute("SELECT 1 FROM task_images WHERE task = ?", (task,)).fetchone():
        raise ZooError(f"task {task!r}: already added from an images folder (pass replace=True to replace it)")
    if con.execute("SELECT 1 FROM task_descriptors WHERE task = ?", (task,)).fetchone():
        raise ZooError(f"task {task!r}: already has a descriptor (pass replace=True to replace it)")
    differ = [f"{name} {stored[name]} stored, {value} in the images" for name, value in new.items()
              if stored[name] is not None and stored[name] != value]
    if differ:
        raise ZooError(f"task {task!r}: {'; '.join(differ)} (pass replace=True to take the images' counts)")


def _check_history_row(i: int, row: tuple[Any, ...]) -> None:
    """Last check of one row as it is written (a hook the crash-safety tests replace)."""
    if not math.isfinite(row[2]):
        raise ZooError(f"history: row {i} ({row[0]!r}, {row[1]!r}) has score {row[2]}; scores must be finite")


def _check_add_history(history: History, kind: str | None, source: str | None) -> None:
    """The checks of :meth:`Zoo.add_history` that need no database."""
    if not isinstance(history, History):
        raise TypeError(f"history: expected a History, got {type(history).__name__}")
    if len(history) == 0:
        raise ZooError("history: is empty; nothing to add")
    for name in history.models:
        identifier(name, "history: model id")
    for name in history.tasks:
        identifier(name, "history: task id")
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise ValueError(f"kind: expected a non-empty string or None, got {kind!r}")
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source: expected a string or None, got {type(source).__name__}")
    if kind is not None and history.kind is not None and set(history.kinds) != {kind}:
        raise ZooError(
            f"kind: {kind!r} would relabel rows of kinds {list(history.kinds)}; "
            "leave kind=None to keep the history's own"
        )


def _history_rows(
    history: History, kinds: Sequence[str], source: str | None
) -> Iterator[tuple[str, str, float, str, str | None]]:
    """The history's rows as stored, each checked as it is written."""
    sources = history.source or ("",) * len(history)
    for i in range(len(history)):
        row = (
            history.models[history.model_index[i]],
            history.tasks[history.task_index[i]],
            float(history.scores[i]),
            kinds[i],
            sources[i] or source,
        )
        _check_history_row(i, row)
        yield row


def _history_insert(replace: bool) -> str:
    insert = "INSERT INTO history (model, task, score, kind, source) VALUES (?, ?, ?, ?, ?)"
    if replace:
        # An upsert keeps the row's place, so export order stays the import order.
        insert += (
            " ON CONFLICT(model, task, kind)"
            " DO UPDATE SET score = excluded.score, source = excluded.source"
        )
    return insert


def _add_unknown_ids(con: sqlite3.Connection, table: str, names: Sequence[str], what: str, strict: bool) -> None:
    """Adds bare rows to ``table`` for the ``names`` it lacks, or refuses them with ``strict``.

    One primary-key lookup per name: a write costs what it writes, not what the table holds.
    """
    if not strict:
        con.executemany(f"INSERT INTO {table} (id) VALUES (?) ON CONFLICT(id) DO NOTHING", [(n,) for n in names])
        return
    lookup = f"SELECT 1 FROM {table} WHERE id = ?"
    unknown = [n for n in names if con.execute(lookup, (n,)).fetchone() is None]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ZooError(
            f"history: {len(unknown)} unknown {what} id(s): {shown} "
            f"(add them with add_{what}s first, or pass strict=False)"
        )


def _insert_new(con: sqlite3.Connection, rows: Iterable[tuple[str, str, float, str, str | None]]) -> None:
    """Inserts ``rows``, refusing the first whose (model, task, kind) is already stored.

    The primary key finds a stored result as the row is written, so the check
    costs one index probe per row rather than a read of the whole history. The
    rows are consumed one at a time, so the last one handed over is the one refused.
    """
    last: list[tuple[str, str, float, str, str | None]] = []

    def tracked() -> Iterator[tuple[str, str, float, str, str | None]]:
        for row in rows:
            last[:] = [row]
            yield row

    try:
        con.executemany(_history_insert(False), tracked())
    except sqlite3.IntegrityError as err:
        # Unknown ids were added (or refused) before, so a conflict is the primary key's.
        if not last or "UNIQUE" not in str(err):
            raise
        model, task, _, kind, _ = last[0]
        raise ZooError(
            f"history: a {kind} result for model {model!r} on task {task!r} "
            "is already stored (pass replace=True to overwrite)"
        ) from None


def _switch_pointer(folder: Path, version: int, name: str, arrays: list[str]) -> None:
    """Makes fitted-<version> current: the single rename that commits a fitted state."""
    text = json.dumps({"version": version, "dir": name, "arrays": arrays})
    write_atomically(folder / POINTER_NAME, text)


def _load_array(path: Path) -> np.ndarray:
    try:
        mapped: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return mapped
    except ValueError:
        # Older numpy cannot map an empty array; it costs nothing to read it.
        array: np.ndarray = np.load(path, allow_pickle=False)
        array.flags.writeable = False
        return array


def _check_state(state: object) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a dict of name -> array, got {type(state).__name__}")
    if not state:
        raise ValueError("state: is empty; nothing to store")
    arrays: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not ARRAY_NAME.match(name):
            raise ValueError(
                f"state: array name {name!r} must be letters, digits, '_', '.', '-' "
                "(not starting with '.' or '-')"
            )
        array = np.asarray(value)
        # Fixed-width text (model ids) saves without pickle, like numbers.
        if array.dtype.kind not in "biufcU":
            raise TypeError(f"state[{name!r}]: expected a numeric or text array, got dtype {array.dtype}")
        arrays[name] = np.ascontiguousarray(array)
    return arrays


def _check_meta(meta: object) -> str:
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta: expected a dict, got {type(meta).__name__}")
    try:
        return json.dumps(dict(meta), sort_keys=True, allow_nan=False, indent=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta: must be JSON-serialisable without NaN/inf: {err}") from None


def _check_descriptor(vector: Any) -> np.ndarray:
    array = np.asarray(vector)
    if array.dtype.kind != "f":
        raise TypeError(f"vector: expected a float array, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"vector: expected a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("vector: contains NaN or inf")
    if np.any(np.abs(array) > np.finfo(np.float32).max):
        raise ValueError("vector: values beyond float32 range")
    return array


def _decode_descriptor(owner: str, blob: bytes, dim: int) -> np.ndarray:
    if len(blob) != 4 * dim:
        raise ZooError(f"stored vector of {owner!r}: {len(blob)} bytes stored for dim {dim}")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _normalise_row(argument: str, i: int, row: object, columns: dict[str, type]) -> tuple[Any, ...]:
    if not isinstance(row, Mapping):
        raise TypeError(f"{argument}: row {i} is a {type(row).__name__}, expected a dict")
    try:
        ident = identifier(row.get("id"), "id")
    except (TypeError, ValueError) as err:
        raise ZooError(f"{argument}: row {i} needs an 'id': {err}") from None
    values: list[str | int | float | None] = []
    for column, kind in columns.items():
        value = row.get(column)
        if value is None:
            values.append(None)
        elif kind is str:
            if not isinstance(value, str):
                raise ZooError(f"{argument}: {ident!r}: {column} must be text, got {value!r}")
            values.append(value)
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ZooError(
                    f"{argument}: {ident!r}: {column} must be a non-negative integer, got {value!r}"
                )
            values.append(int(value))
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ZooError(f"{argument}: {ident!r}: {column} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ZooError(
                    f"{argument}: {ident!r}: {column} must be finite and non-negative, got {value!r}"
                )
            values.append(float(value))
    extra = dict(row.get("extra") or {})
    extra.update({k: v for k, v in row.items() if k not in columns and k not in ("id", "extra")})
    try:
        extra_text = json.dumps(extra, sort_keys=True, allow_nan=False) if extra else None
    except (TypeError, ValueError) as err:
        raise ZooError(f"{argument}: {ident!r}: extra fields must be JSON-serialisable: {err}") from None
    return (ident, *values, extra_text)


def _side_table(rows: list[dict[str, Any]], columns: dict[str, type], key_name: str) -> SideTable:
    extras = list(dict.fromkeys(k for row in rows for k in row["extra"]))
    cells: dict[str, list[Any]] = {c: [row[c] for row in rows] for c in columns}
    for name in extras:
        if name in cells:
            continue
        values = [row["extra"].get(name) for row in rows]
        # Nested values (lists, dicts) are categorical as their JSON text.
        cells[name] = [json.dumps(v) if isinstance(v, (list, dict)) else v for v in values]
    cells = {c: v for c, v in cells.items() if any(x is not None for x in v)}
    return SideTable.from_cells([row["id"] for row in rows], cells, key_name=key_name)
