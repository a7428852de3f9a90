"""How one ranking is scored against the measured truth, and how two methods are compared.

Weighted Kendall tau exactly as the field computes it
(``scipy.stats.weightedtau(score, truth)[0]``, defaults), Kendall tau, Pearson,
top-1 regret (best score minus the score of the model ranked first) and top-3
hit (the best model is among the three ranked first).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.stats import NearConstantInputWarning, kendalltau, pearsonr, weightedtau

__all__ = ["METRICS", "average_metrics", "paired_differences", "ranking_metrics"]

METRICS = ("wtau", "kendall", "pearson", "regret", "top3")


def ranking_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Metrics of one task's predicted scores against the measured ones (NaN entries ignored)."""
    seen = ~np.isnan(truth) & ~np.isnan(prediction)
    p, y = prediction[seen], truth[seen]
    if len(y) < 2:
        return {name: float("nan") for name in METRICS}
    constant = np.ptp(p) == 0 or np.ptp(y) == 0
    first = int(np.argmax(p))  # ties: the first listed model, as a ranked table shows it
    top3 = np.argsort(-p, kind="stable")[:3]
    with warnings.catch_warnings():
        # accuracies of 100.0, 100.0, 99.9...: the coefficient is still computed, and defined
        warnings.simplefilter("ignore", NearConstantInputWarning)
        pearson = float("nan") if constant else float(pearsonr(p, y)[0])
    return {
        "wtau": float(weightedtau(p, y)[0]) if np.ptp(y) > 0 else float("nan"),
        "kendall": float("nan") if constant else float(kendalltau(p, y)[0]),
        "pearson": pearson,
        "regret": float(y.max() - y[first]),
        "top3": float(int(np.argmax(y)) in set(top3.tolist())),
    }


def average_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows], dtype=float)
        out[name] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    return out


def paired_differences(per_task: Mapping[str, Mapping[str, Mapping[str, float]]], method: str = "fennec",
                       metric: str = "wtau") -> dict[str, dict[str, float]]:
    """``method``'s ``metric`` minus every other method's, over the tasks where both are defined.

    Per other method: ``diff`` (the mean difference), ``se`` (its standard error,
    the tasks' spread over the square root of their count; NaN with one task),
    ``n`` tasks, and ``wins`` / ``losses`` (tasks where ``method`` is above /
    below). A ``diff`` within about two ``se`` of 0 is a gap these tasks do not
    establish.
    """
    others = sorted({m for rows in per_task.values() for m in rows} - {method})
    out: dict[str, dict[str, float]] = {}
    for other in others:
        gaps = np.array([rows[method][metric] - rows[other][metric] for rows in per_task.values()
                         if method in rows and other in rows], dtype=float)
        gaps = gaps[~np.isnan(gaps)]
        if len(gaps) == 0:
            continue
        se = float(gaps.std(ddof=1) / np.sqrt(len(gaps))) if len(gaps) >= 2 else float("nan")
        out[other] = {"diff": float(gaps.mean()), "se": se, "n": int(len(gaps)),
                      "wins": int(np.sum(gaps > 0)), "losses": int(np.sum(gaps < 0))}
    return out
