"""A transfer space fitted on a score matrix and its side information, ready to rank with.

:func:`fit_space` is the one fit behind ``fennec.fit`` (a zoo's whole history) and
behind every held-out fold of an evaluation (the history without the held-out
task): it encodes the known tasks' proxy descriptors, runs
:func:`~fennec.space.transfer.fit_transfer`, places the models that have no
history from their side information, and calibrates the normalised predictions
to the history's scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .fitted import DESCRIPTOR_COLUMN, TransferSpace
from .taskspace import EMBEDDING_DIMS, DescriptorEncoder
from .transfer import cold_ridge_strength, fit_transfer, predict_cold_models

__all__ = ["MIN_DESCRIBED_TASKS", "descriptor_columns", "fit_space"]

MIN_DESCRIBED_TASKS = 3  # fewer known tasks than this cannot place a new one by its descriptor


def descriptor_columns(n_tasks: int) -> list[str]:
    """The task columns that ``n_tasks`` known tasks' descriptors give (their coordinates)."""
    return [f"{DESCRIPTOR_COLUMN}{i}" for i in range(min(EMBEDDING_DIMS, n_tasks))]


def fit_space(scores: np.ndarray, models: Sequence[str], tasks: Sequence[str], *,
              model_features: np.ndarray | None = None, model_columns: Sequence[str] = (),
              task_features: np.ndarray | None = None, task_columns: Sequence[str] = (),
              task_descriptors: np.ndarray | None = None, task_distances: np.ndarray | None = None,
              seed: int = 0, choices: Mapping[str, Any] | None = None,
              forward_scores: Mapping[str, np.ndarray] | None = None, budget: int | None = None,
              metrics: Sequence[str] | None = None, related: np.ndarray | None = None) -> TransferSpace:
    """The transfer space of ``scores`` (models x tasks, NaN where not measured).

    ``task_features`` (tasks x q, named by ``task_columns``) are numeric task side
    information; ``task_descriptors`` (tasks x D) are the tasks' proxy descriptors,
    whose coordinates join the task features and whose distances give the
    neighbour-task term; ``task_distances`` (tasks x tasks) give that term without
    descriptors. ``choices`` (``ridge``, ``sharpness``, ``bandwidth``, ``cold_ridge``
    of an earlier fit) skip the inner cross-validation. ``forward_scores`` (metric ->
    models x tasks), ``budget`` and ``metrics``: forward-pass evidence, as
    :func:`~fennec.space.transfer.fit_transfer` takes it, as it takes ``related`` (tasks x
    tasks: the inner folds hold out each task's related tasks with it).
    """
    scores = np.asarray(scores, dtype=float)
    task_columns = list(task_columns)
    encoder = None
    if task_descriptors is not None and len(tasks) >= MIN_DESCRIBED_TASKS:
        encoder = DescriptorEncoder.fit(task_descriptors)
        blocks = ([] if task_features is None else [task_features]) + [encoder.coordinates]
        task_features = np.column_stack(blocks)
        task_columns += descriptor_columns(len(tasks))
        task_distances = encoder.known_distances()
    transfer_choices = None if choices is None else {
        "ridge": choices["ridge"], "sharpness": choices["sharpness"], "bandwidth": choices.get("bandwidth"),
        **{k: choices[k] for k in ("normalization", "evidence_metric", "evidence_weight", "evidence_corrected",
                                 "evidence_shortlist")
           if k in choices}}
    space = fit_transfer(scores, model_features, task_features, task_distances=task_distances, seed=seed,
                         choices=transfer_choices, forward_scores=forward_scores, budget=budget, metrics=metrics,
                         related=related)

    vectors = space.model_vectors.astype(np.float64)
    measured = (~np.isnan(scores)).sum(1)
    cold_ridge = None
    if model_features is not None and np.any(measured > 0):
        # Chosen even when every model has results, so that a model added later folds in.
        cold_ridge = None if choices is None else choices.get("cold_ridge")
        if cold_ridge is None:
            cold_ridge = cold_ridge_strength(scores[measured > 0], model_features[measured > 0], seed=seed,
                                             normalization=space.normalization)
    if model_features is not None and np.any(measured == 0) and np.any(measured > 0):
        # Models with no history: their prior comes from side information alone.
        cold = predict_cold_models(scores[measured > 0], model_features[measured > 0],
                                   model_features[measured == 0], seed=seed, ridge=cold_ridge,
                                   normalization=space.normalization)
        vectors[measured == 0, 0] = cold.mean(1)

    # Normalised predictions back on the history's scale (pooled least squares), and each
    # model's spread around its prior as its uncertainty.
    seen = ~np.isnan(scores)
    g = space.normalized[seen]
    slope, intercept = np.polyfit(g, scores[seen], 1) if np.ptp(g) > 0 else (0.0, float(np.nanmean(scores)))
    residual = np.where(seen, space.normalized - vectors[:, :1], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt((residual**2).sum(1) / seen.sum(1))  # NaN for a model with no results
    spread = np.nan_to_num(spread, nan=float(np.nanmean(spread)) if np.any(~np.isnan(spread)) else 0.0)
    return dataclasses.replace(
        space, model_vectors=np.ascontiguousarray(vectors, dtype=np.float32), models=tuple(models),
        calibration=_task_scales(scores, vectors[:, 0]),
        tasks=tuple(tasks), model_columns=tuple(model_columns), task_columns=tuple(task_columns),
        encoder=encoder, spread=spread, slope=float(slope), intercept=float(intercept), cold_ridge=cold_ridge)


def _task_scales(scores: np.ndarray, prior: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """Per known task, the least-squares line of its scores against the models' priors; the mean
    and spread of those lines' levels and slopes over the tasks, and the spread of the scores
    around their lines (None with fewer than 2 tasks of 3 measured models)."""
    lines, residuals = [], []
    for j in range(scores.shape[1]):
        seen = ~np.isnan(scores[:, j])
        if seen.sum() < 3 or np.ptp(prior[seen]) == 0:
            continue
        slope, level = np.polyfit(prior[seen], scores[seen, j], 1)
        lines.append((level, slope))
        residuals.append(scores[seen, j] - (level + slope * prior[seen]))
    if len(lines) < 2:
        return None
    levels, slopes = np.array(lines).T
    noise = float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))
    return float(levels.mean()), float(slopes.mean()), float(levels.std()), float(slopes.std()), noise
