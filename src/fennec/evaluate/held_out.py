"""A held-out task predicted as a new task meets fennec: a space fitted without it, the task
placed in it, every model scored, by the same functions ``fennec.fit`` and ``fennec.rank`` run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..features import TaskPlacement, place_task
from ..space import TransferSpace, fit_space
from .data import EvalData

__all__ = ["fit_on_tasks", "held_out_prediction", "place_held_out"]


def fit_on_tasks(data: EvalData, train: np.ndarray, seed: int = 0, *, evidence: bool = False,
                 budget: int | None = None, metrics: Sequence[str] | None = None,
                 exclude_related: bool = False) -> TransferSpace:
    """The space fitted on the ``train`` tasks only (their scores and side information), as
    ``fennec.fit`` fits a zoo holding just those tasks; with ``evidence``, their forward-pass
    scores too (for a new task with ``budget`` models scored, among ``metrics``).

    The fit is told what the protocol makes of the held-out task: with ``exclude_related``
    its related tasks are not among ``train`` (new data), and the inner folds hold out each
    training task's related tasks with it, as ``fennec.fit(zoo)`` does by default; without,
    the held-out task's related tasks are known, and each inner fold holds one task out, as
    ``fennec.fit(zoo, new_data=False)`` does."""
    tasks = [data.tasks[j] for j in train]
    related = None
    if exclude_related:
        assert data.related is not None  # evaluate() refuses exclude_related without it
        related = np.asarray(data.related, dtype=bool)[np.ix_(train, train)]
    forward = None
    if evidence and data.forward_scores:
        forward = {m: v[:, train] for m, v in data.forward_scores.items()}
    if data.known_tasks is not None:
        known = data.known_tasks.subset(train)
        return fit_space(data.scores[:, train], data.models, tasks, model_features=data.model_features,
                         task_features=known.features, task_columns=known.columns,
                         task_descriptors=known.descriptors, seed=seed, forward_scores=forward, budget=budget,
                         metrics=metrics, related=related)
    features, distances = data.task_features, data.task_distances
    return fit_space(data.scores[:, train], data.models, tasks, model_features=data.model_features,
                     task_features=None if features is None else features[train],
                     task_distances=None if distances is None else distances[np.ix_(train, train)], seed=seed,
                     forward_scores=forward, budget=budget, metrics=metrics, related=related)


def place_held_out(data: EvalData, space: TransferSpace, target: int, train: np.ndarray) -> TaskPlacement:
    """Task ``target`` placed in a space fitted on ``train``: from the features a new task would
    be given by (a zoo's tasks), or from its row of the data's task features and distances."""
    if data.known_tasks is not None:
        task = data.known_tasks.as_new_task(target)
        if not space.takes_descriptor:  # too few training tasks to place a descriptor
            task.pop("descriptor", None)
        return place_task(space, task)
    features, distances = data.task_features, data.task_distances
    return TaskPlacement(None if features is None else features[target],
                         None if distances is None else distances[target, train], "task features")


def held_out_prediction(data: EvalData, target: int, seed: int = 0) -> np.ndarray:
    """fennec's prediction for task ``target`` from a fit on the other tasks (the ``lodo`` protocol)."""
    train = np.array([j for j in range(len(data.tasks)) if j != target])
    space = fit_on_tasks(data, train, seed)
    placed = place_held_out(data, space, target, train)
    return space.predict(placed.features, placed.distances)
