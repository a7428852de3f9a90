"""How the fit's inner cross-validation scores a candidate and chooses among candidates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from scipy.stats import weightedtau

__all__ = ["MIN_FOLD_TASKS", "choose_simplest", "foldable", "held_with", "usable_related", "weighted_tau"]

MIN_FOLD_TASKS = 2  # an inner fold predicts its task from at least this many others

_Candidate = TypeVar("_Candidate")


def held_with(n_tasks: int, held_out: Sequence[int] | np.ndarray,
              related: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per inner held-out task, the known tasks its fold leaves out: itself and, with ``related``
    (tasks x tasks, True where two tasks share data), every task related to it. An inner fold
    so mirrors an outer protocol that holds a new task's related tasks out of the fit."""
    out = {}
    for t in np.asarray(held_out, dtype=np.int64).tolist():
        dropped = np.zeros(n_tasks, dtype=bool) if related is None else np.array(related[t], dtype=bool)
        dropped[t] = True
        out[int(t)] = np.flatnonzero(dropped)
    return out


def foldable(tasks: Sequence[int] | np.ndarray, related: np.ndarray) -> np.ndarray:
    """The tasks among ``tasks`` whose fold, once each is held out with its ``related`` tasks,
    keeps at least :data:`MIN_FOLD_TASKS` others to predict it from."""
    tasks = np.asarray(tasks, dtype=np.int64)
    held = np.asarray(related, dtype=bool) | np.eye(len(related), dtype=bool)
    kept: np.ndarray = tasks[len(related) - held[tasks].sum(1) >= MIN_FOLD_TASKS]
    return kept


def usable_related(related: np.ndarray | None) -> np.ndarray | None:
    """``related`` where at least two tasks are :func:`foldable`; else None (too few tasks are
    unrelated to choose anything on: each fold holds one task out)."""
    if related is None or len(foldable(np.arange(len(related)), related)) < 2:
        return None
    return related


def weighted_tau(prediction: np.ndarray, truth: np.ndarray) -> float:
    """The field's weighted Kendall tau of a prediction against the truth (NaN: too few to rank)."""
    seen = ~np.isnan(truth) & ~np.isnan(prediction)
    if seen.sum() < 2 or np.ptp(truth[seen]) == 0:
        return np.nan
    tau: float = weightedtau(prediction[seen], truth[seen])[0]
    return tau


def choose_simplest(candidates: list[_Candidate], taus_of: Callable[[_Candidate], np.ndarray],
                    one_standard_error: bool = True) -> tuple[_Candidate, dict[str, float]]:
    """The simplest candidate whose inner weighted tau is within one standard error of the best's.

    ``candidates`` go from the simplest; the standard error is that of the paired
    per-task differences to the best, so a gain the held-out tasks do not agree on
    does not buy complexity (the one-standard-error rule). Without the rule: the best.
    Returns the choice and every candidate's mean inner weighted tau.
    """
    taus = {c: taus_of(c) for c in candidates}
    means = {c: np.nanmean(taus[c]) for c in candidates}
    best = max(candidates, key=lambda c: means[c])
    for c in candidates if one_standard_error else ():
        diff = taus[best] - taus[c]
        diff = diff[~np.isnan(diff)]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) >= 2 else 0.0
        if means[c] >= means[best] - se:
            return c, {str(c): float(v) for c, v in means.items()}
    return best, {str(c): float(v) for c, v in means.items()}
