"""Reading an evaluation's data: a history from files with its side information, or a zoo.

A zoo's side information is exactly what :func:`fennec.fit` uses (through
:mod:`fennec.features`); its forward-pass kinds (``logme``, ``leep``...) become
baselines under their own names.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..features import (GROUND_TRUTH_KINDS, KnownTasks, identifier_like, known_tasks, model_side_information,
                        related_tasks, stored_forward_scores)
from ..history import read_distance_matrix, read_history, read_model_table, read_task_table
from ..space import DescriptorEncoder, DistanceEmbedding

if TYPE_CHECKING:
    from ..zoo import Zoo

__all__ = ["EvalData", "FORWARD_METHOD_NAMES", "GROUND_TRUTH_KINDS", "embed_distances", "forward_method_name",
           "load_eval_data", "load_zoo_eval_data", "read_forward_scores", "related_tasks"]


@dataclass
class EvalData:
    """Everything a protocol needs: the score matrix and optional side information."""

    scores: np.ndarray  # models x tasks, NaN where not measured
    models: list[str]
    tasks: list[str]
    model_features: np.ndarray | None = None  # models x p, numeric
    model_types: list[str] | None = None  # architecture family / model type per model
    task_features: np.ndarray | None = None  # tasks x q, numeric (distances already embedded)
    task_distances: np.ndarray | None = None  # tasks x tasks: proxy-descriptor or domain distances
    # A zoo's tasks as fennec.fit reads them (named features, proxy descriptors): when set,
    # every held-out fold fits on its training tasks' information as fennec.fit does and
    # places the held-out task as fennec.rank does; task_features and task_distances
    # (computed from every task) then serve the pictures only.
    known_tasks: KnownTasks | None = None
    forward_scores: dict[str, np.ndarray] | None = None  # method -> models x tasks, NaN where absent
    # tasks x tasks, True where two tasks share data (a class of the same dataset): with
    # exclude_related, a held-out task's related tasks leave the fit with it
    related: np.ndarray | None = None


FORWARD_METHOD_NAMES = {"log_me": "logme", "logme": "logme", "reg_h_score": "hscore_reg",
                        "h_score": "hscore", "leep": "leep", "nleep": "nleep", "nce": "nce",
                        "sfda": "sfda", "parc": "parc", "gbc": "gbc", "transrate": "transrate"}
DISTANCE_EMBEDDING_DIMS = 2


def forward_method_name(raw: str) -> str:
    short = raw.strip().split(".")[-1].lower()
    return FORWARD_METHOD_NAMES.get(short, short)


def read_forward_scores(path: str | os.PathLike[str], models: list[str], tasks: list[str]) -> dict[str, np.ndarray]:
    """Forward-pass transferability scores from a long CSV: model, task, method, score.

    Column names may also be TransferGraph's (``target_dataset`` for the task,
    ``metric`` for the method). Repeated (model, task, method) rows are averaged.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []

        def column(*names: str) -> str:
            for name in names:
                if name in header:
                    return name
            raise ValueError(f"{path}: line 1: none of the columns {names} is present")

        model_col, task_col = column("model", "model_name"), column("task", "target_dataset")
        method_col, score_col = column("method", "metric"), column("score")
        model_at = {m: i for i, m in enumerate(models)}
        task_at = {t: j for j, t in enumerate(tasks)}
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        malformed: list[int] = []
        for line, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                malformed.append(line)  # a row with too many or too few fields
                continue
            i, j = model_at.get(row[model_col]), task_at.get(row[task_col])
            if i is None or j is None:
                continue
            try:
                value = float(row[score_col])
            except ValueError:
                raise ValueError(f"{path}: line {line}: score {row[score_col]!r} is not a number") from None
            if not np.isfinite(value):
                continue
            method = forward_method_name(row[method_col])
            sums.setdefault(method, np.zeros((len(models), len(tasks))))[i, j] += value
            counts.setdefault(method, np.zeros((len(models), len(tasks))))[i, j] += 1
    if malformed:
        warnings.warn(f"{path}: skipped {len(malformed)} row(s) whose number of fields does not match "
                      f"the header (first on line {malformed[0]})", stacklevel=2)
    with np.errstate(invalid="ignore"):
        return {m: np.where(counts[m] > 0, sums[m] / counts[m], np.nan) for m in sums}


def embed_distances(distance: np.ndarray, dims: int = DISTANCE_EMBEDDING_DIMS) -> np.ndarray:
    """Classical multidimensional scaling: coordinates whose distances follow ``distance``."""
    return DistanceEmbedding.fit(distance, dims).coordinates


def load_eval_data(history_path: str | os.PathLike[str], *, wide: bool = False, model_col: str = "model",
                   task_col: str = "task", score_col: str = "score",
                   models_path: str | os.PathLike[str] | None = None, model_key: str = "model",
                   type_col: str | None = None, tasks_path: str | os.PathLike[str] | None = None,
                   task_key: str = "task", task_distance_path: str | os.PathLike[str] | None = None,
                   forward_scores_path: str | os.PathLike[str] | None = None,
                   exclude_tasks: Iterable[str] = ()) -> EvalData:
    """Reads a history and its optional side information into an :class:`EvalData`."""
    history = read_history(history_path, wide=wide, model_col=model_col, task_col=task_col,
                           score_col=score_col)
    if exclude_tasks:
        history = history.drop_tasks(exclude_tasks)
    models, tasks = list(history.models), list(history.tasks)
    data = EvalData(history.matrix(), models, tasks)
    if models_path is not None:
        table = read_model_table(models_path, key=model_key)
        kept = {name: values for name, values in table.categorical.items() if not identifier_like(values)}
        table = type(table)(table.keys, table.numeric, kept, key_name=table.key_name)
        data.model_features, _ = table.design_matrix(models)
        aligned = table.align(models)
        type_col = type_col or next((c for c in ("model_type", "family", "architecture", "architectures")
                                     if c in aligned.categorical), None)
        if type_col is not None:
            if type_col not in aligned.categorical:
                raise ValueError(f"{models_path}: no categorical column {type_col!r} for the model type")
            data.model_types = list(aligned.categorical[type_col])
    blocks: list[np.ndarray] = []
    if tasks_path is not None:
        features, _ = read_task_table(tasks_path, key=task_key).design_matrix(tasks)
        blocks.append(features)
    if task_distance_path is not None:
        names, distance = read_distance_matrix(task_distance_path)
        at = {n: i for i, n in enumerate(names)}
        absent = [t for t in tasks if t not in at]
        if absent:
            raise ValueError(f"{task_distance_path}: no distances for task(s) {absent}")
        index = [at[t] for t in tasks]
        data.task_distances = distance[np.ix_(index, index)]
        blocks.append(embed_distances(data.task_distances))
    if blocks:
        data.task_features = np.column_stack(blocks)
    if forward_scores_path is not None:
        data.forward_scores = read_forward_scores(forward_scores_path, models, tasks)
    return data


def load_zoo_eval_data(zoo: Zoo, *, kind: str | None = None, exclude_tasks: Iterable[str] = (),
                       embeddings: bool = True) -> EvalData:
    """A zoo's history and side information as an :class:`EvalData`.

    ``kind`` is the history kind taken as the truth (default: ``finetune``, else
    ``linear_probe``); every other kind stored (``logme``, ``leep``...) is a
    forward-pass score and becomes a baseline under its own name. Side
    information is what :func:`fennec.fit` uses: model metadata, archi2vec
    embeddings (unless ``embeddings=False``), task size and class count, and the
    proxy descriptors' coordinates.
    """
    kinds = zoo.history_kinds()
    if kind is None:
        kind = next((k for k in GROUND_TRUTH_KINDS if k in kinds), None)
        if kind is None:
            raise ValueError(f"{zoo.path}: no {' or '.join(GROUND_TRUTH_KINDS)} results to evaluate against "
                             f"(kinds stored: {kinds}); pass kind=")
    elif kind not in kinds:
        raise ValueError(f"{zoo.path}: no {kind!r} results (kinds stored: {kinds})")
    history = zoo.history(kind)
    if exclude_tasks:
        history = history.drop_tasks(exclude_tasks)
    models, tasks = list(history.models), list(history.tasks)
    data = EvalData(history.matrix(), models, tasks)
    data.model_features, _ = model_side_information(zoo, models, embeddings=embeddings)
    families: dict[str, Any] = {row["id"]: row.get("family") for row in zoo.models()}
    if all(families.get(m) for m in models):
        data.model_types = [families[m] for m in models]
    data.known_tasks = known_tasks(zoo, tasks)
    data.related = data.known_tasks.related  # None: exclude_related refuses
    blocks = [] if data.known_tasks.features is None else [data.known_tasks.features]
    if data.known_tasks.descriptors is not None:
        encoder = DescriptorEncoder.fit(data.known_tasks.descriptors)
        blocks.append(encoder.coordinates)
        data.task_distances = encoder.known_distances()
    data.task_features = np.column_stack(blocks) if blocks else None
    forward = {forward_method_name(k): v for k, v in stored_forward_scores(zoo, models, tasks, kind).items()}
    data.forward_scores = forward or None
    return data
