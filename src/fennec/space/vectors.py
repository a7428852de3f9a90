"""A task's vector in the transfer space, and the updates of a prediction that need no refit.

Both the fit (its inner cross-validation) and every ranking use these, so a
held-out task in an evaluation and a new task in a ranking meet the same
arithmetic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbour_weights", "row_sums", "row_sums_without", "seen_and_values", "task_vector",
           "update_with_observations"]


def neighbour_weights(distances: np.ndarray, bandwidth: float) -> np.ndarray:
    """Weights of the known tasks for a new task at ``distances`` from them, summing to 1.

    Gaussian in the distance beyond the nearest known task's, with a width of
    ``bandwidth`` times the median distance, so the kernel does not depend on the
    metric's scale: 1.0 spreads the weight over many tasks, 0.1 gives nearly all of
    it to the nearest ones.
    """
    d = np.asarray(distances, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"task distances: expected one distance per known task, got shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("task distances: must be finite and non-negative")
    width = bandwidth * float(np.median(d))
    if width <= 0:  # at least half the known tasks at distance 0: those share the weight
        weights = (d == d.min()).astype(float)
    else:
        weights = np.exp(-(((d - d.min()) / width) ** 2))
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def task_vector(interaction: np.ndarray | None, task_x: np.ndarray | None, n_model_features: int,
                neighbour_basis: np.ndarray | None, bandwidth: float | None,
                task_distances: np.ndarray | None) -> np.ndarray:
    """``[w_prior, W t, B^T a]``: the prior's weight and the side-information interaction
    for the standardised features ``task_x`` (``[1, 0...]`` when None: the prior), then
    the residual factors of the known tasks weighted by :func:`neighbour_weights` of
    ``task_distances`` (zeros when None: without distances a new task has no neighbours)."""
    if interaction is None or task_x is None:
        parts = [np.array([1.0]), np.zeros(n_model_features if interaction is not None else 0)]
    else:
        parts = [np.array([float(interaction[0])]),
                 interaction[1:].reshape(n_model_features, -1) @ np.asarray(task_x, dtype=float)]
    if neighbour_basis is not None:
        if task_distances is None:
            parts.append(np.zeros(neighbour_basis.shape[1]))
        else:
            if len(task_distances) != len(neighbour_basis):
                raise ValueError(f"task distances: expected {len(neighbour_basis)} (one per known task), "
                                 f"got {len(task_distances)}")
            assert bandwidth is not None  # a space with neighbour tasks has their bandwidth
            parts.append(neighbour_basis.T @ neighbour_weights(task_distances, bandwidth))
    return np.concatenate(parts).astype(np.float32)


def _agreement(normalized: np.ndarray, observed: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per known task, Pearson correlation between its scores and the observed ones (0 where undefined)."""
    column = normalized[observed]  # shots x tasks
    seen = ~np.isnan(column)
    count = seen.sum(0)
    values = np.where(seen, column, 0.0)
    truth = np.where(seen, scores[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_v = values.sum(0) / count
        mean_t = truth.sum(0) / count
        dv = np.where(seen, values - mean_v, 0.0)
        dt = np.where(seen, truth - mean_t, 0.0)
        covariance = (dv * dt).sum(0)
        norm = np.sqrt((dv**2).sum(0) * (dt**2).sum(0))
        agreement = covariance / norm
    valid = (count >= 2) & (norm > 1e-12 * np.maximum(1.0, np.abs(covariance)))
    clean: np.ndarray = np.where(valid & np.isfinite(agreement), agreement, 0.0)
    return clean


def update_with_observations(base: np.ndarray, normalized: np.ndarray, observed: np.ndarray, scores: np.ndarray,
                             sharpness: float, filled: tuple[np.ndarray, np.ndarray] | None = None,
                             exclude: int | np.ndarray | None = None,
                             sums: tuple[np.ndarray, np.ndarray] | None = None,
                             placed: np.ndarray | None = None) -> np.ndarray:
    """Re-weights the known tasks by their agreement with the observed scores (``exclude``: a task,
    or tasks, left out). The observed models then take ``placed`` (their measured scores in the prediction's
    units) or, without it, the predicted values of their group in measured order."""
    observed = np.asarray(observed, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    prediction: np.ndarray = base.copy()
    if sharpness > 0 and len(observed) >= 2 and np.ptp(scores) > 0:
        weights = np.exp(sharpness * _agreement(normalized, observed, scores))
        seen_all, values = filled if filled is not None else seen_and_values(normalized)
        count, total = sums if sums is not None else row_sums((seen_all, values))
        if exclude is not None:
            exclude = np.atleast_1d(exclude)
            weights[exclude] = 0.0
            count, total = row_sums_without((seen_all, values), (count, total), exclude)
        mass = seen_all @ weights
        weighted = values @ weights / np.maximum(mass, 1e-12)
        # Keep the prior's own scale so the shift from side information still applies.
        prior = total / np.maximum(count, 1)
        prediction = base + (weighted - prior)
    if placed is not None:
        prediction[observed] = placed
        return prediction
    # The measured models keep the predicted values of their group, in measured order.
    values = np.sort(prediction[observed])[::-1]
    prediction[observed[np.argsort(-scores, kind="stable")]] = values
    return prediction


def seen_and_values(normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen = ~np.isnan(normalized)
    return seen.astype(float), np.where(seen, normalized, 0.0)


def row_sums(filled: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per model: how many tasks measured it and the sum of its normalised scores."""
    counts: np.ndarray = filled[0].sum(1)
    totals: np.ndarray = filled[1].sum(1)
    return counts, totals


def row_sums_without(filled: tuple[np.ndarray, np.ndarray], sums: tuple[np.ndarray, np.ndarray],
                     dropped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`row_sums` of ``filled`` with the tasks at ``dropped`` left out, from ``sums`` (those of
    every task)."""
    count, total = sums
    return count - filled[0][:, dropped].sum(1), total - filled[1][:, dropped].sum(1)
