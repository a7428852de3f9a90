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

from .common import DEFAULT_KIND, HistoryError, HistoryFileNotFoundError, HistoryWarning
from .readers import read_distance_matrix, read_history
from .record import History
from .side_tables import SideTable, read_model_table, read_task_table

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
