"""The baselines every protocol runs beside fennec: the published recipe (NMF), the observed
models reordered, and the family mean for a model with no history."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NMF_RANK", "nmf", "nmf_predict", "reorder_observed", "type_mean"]

NMF_RANK = 5  # the original Fennec recipe


def reorder_observed(prediction: np.ndarray, observed: np.ndarray, observed_scores: np.ndarray) -> np.ndarray:
    """The observed models keep their group's predicted values, in measured order."""
    prediction = prediction.copy()
    values = np.sort(prediction[observed])[::-1]
    prediction[observed[np.argsort(-observed_scores, kind="stable")]] = values
    return prediction


def nmf(matrix: np.ndarray, rank: int, seed: int, iterations: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative factorisation of the observed entries (multiplicative updates)."""
    seen = ~np.isnan(matrix)
    x = np.where(seen, matrix, 0.0)
    x = x - min(0.0, x.min())
    rng = np.random.default_rng(seed)
    scale = np.sqrt(x[seen].mean() / rank) if seen.any() else 1.0
    w = rng.uniform(0.5, 1.5, (matrix.shape[0], rank)) * scale
    h = rng.uniform(0.5, 1.5, (rank, matrix.shape[1])) * scale
    eps = 1e-9
    for _ in range(iterations):
        wh = w @ h
        h *= (w.T @ (seen * x)) / (w.T @ (seen * wh) + eps)
        wh = w @ h
        w *= ((seen * x) @ h.T) / ((seen * wh) @ h.T + eps)
    return w, h


def nmf_predict(train: np.ndarray, train_features: np.ndarray | None, target_features: np.ndarray | None,
                seed: int) -> np.ndarray:
    """Fennec's published recipe: NMF of rank 5; the new task's vector from its side information."""
    rank = min(NMF_RANK, min(train.shape))
    w, h = nmf(train, rank, seed)
    prediction: np.ndarray
    if train_features is None or target_features is None:
        prediction = w @ h.mean(1)
        return prediction
    # Ridge from task side information to the task's NMF coordinates.
    mean, spread = train_features.mean(0), train_features.std(0)
    spread[spread == 0] = 1.0
    x = (train_features - mean) / spread
    x1 = np.column_stack([np.ones(len(x)), x])
    coef = np.linalg.solve(x1.T @ x1 + np.diag([0.0] + [1.0] * x.shape[1]), x1.T @ h.T)
    target = np.concatenate([[1.0], (target_features - mean) / spread]) @ coef
    prediction = w @ np.maximum(target, 0.0)
    return prediction



def type_mean(normalized_train: np.ndarray, model_types: Sequence[str], train: np.ndarray,
              held_out: np.ndarray) -> np.ndarray:
    """Mean normalised score of the training models that share each held-out model's type."""
    types_train = np.array([model_types[i] for i in train])
    with np.errstate(invalid="ignore"):
        overall = np.nanmean(normalized_train, 0)
        out = np.empty((len(held_out), normalized_train.shape[1]))
        for row, model in enumerate(held_out):
            same = types_train == model_types[model]
            out[row] = np.nanmean(normalized_train[same], 0) if same.any() and model_types[model] else overall
    return np.where(np.isnan(out), overall, out)
