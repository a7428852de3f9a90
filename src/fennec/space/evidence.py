"""Forward-pass evidence fused with the transfer space's prediction.

A forward-pass metric (LogME, PARC, a kNN probe...) scores some models on the new
task. How much to trust it, and how it errs, is learned from the known tasks,
where both the metric and the truth are stored:

- each model's systematic offset under the metric: the mean, over the known tasks,
  of its standardised metric score minus its standardised true score, shrunk towards
  0 (one pseudo-task), so a metric that over-rates a family is corrected by the
  history that shows it;
- the weight of the metric against the prediction, and which metric, chosen by inner
  cross-validation over the known tasks (each held out, its prediction from the
  other tasks, its metric scores fused, its ranking scored), with the same budget
  of scored models the fused ranking will have.

On the new task the scored models' corrected metric scores and their predictions
are each standardised among those models and blended; the blend keeps the mean and
spread the predictions had among them, so a model without a score keeps its
prediction and the scored ones are reordered where the evidence says. With every
model scored this is a full re-ranking; with a budget of the top few it re-ranks
the shortlist.

The fit also keeps each model's residual spread under the metric (the root mean
square, over the known tasks, of its standardised metric score, less its offset when
corrected, minus its standardised true score): how far a forward pass may move it,
which :mod:`fennec.space.choice` uses to choose the models a budget runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .selection import choose_simplest, weighted_tau

__all__ = ["EVIDENCE_WEIGHTS", "Evidence", "choose_evidence", "fitted_evidence", "fuse", "metric_offsets",
           "metric_residual_spread", "scored_rows", "standardize_tasks"]

EVIDENCE_WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the metric's share of the blend; 0 is "no evidence"
# How many of its own top models the fusion re-ranks (at most the budget; None: every scored one).
# A short list can beat a full re-ranking even when every model was run: a metric that orders
# the good models well may order the poor ones badly.
SHORTLISTS = (3, 5, 10, None)
MIN_METRIC_TASKS = 3  # known tasks a metric must score before it is a candidate
OFFSET_SHRINKAGE = 1.0  # pseudo-tasks at offset 0


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    out: np.ndarray = (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)
    return out


def standardize_tasks(matrix: np.ndarray) -> np.ndarray:
    """Each task's (column's) measured values standardised; NaN where not measured."""
    out = np.full(matrix.shape, np.nan)
    for j in range(matrix.shape[1]):
        seen = np.isfinite(matrix[:, j])
        if seen.sum() >= 2:
            out[seen, j] = _standardized(matrix[seen, j])
    return out


def metric_offsets(metric_z: np.ndarray, truth_z: np.ndarray, exclude: int | np.ndarray | None = None) -> np.ndarray:
    """Per model, the shrunk mean of (standardised metric - standardised truth) over the known
    tasks where both are measured (``exclude``: a task, or tasks, left out)."""
    both = np.isfinite(metric_z) & np.isfinite(truth_z)
    if exclude is not None:
        both[:, exclude] = False
    difference = np.where(both, metric_z - truth_z, 0.0)
    offsets: np.ndarray = difference.sum(1) / (both.sum(1) + OFFSET_SHRINKAGE)
    return offsets


def metric_residual_spread(metric_z: np.ndarray, truth_z: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Per model, the root mean square over the known tasks of its residual as the fusion sees it
    (standardised metric, less ``offsets`` when corrected, minus standardised truth), shrunk towards
    the pooled one by the same pseudo-task as the offsets. Uncorrected, a model's mean residual is
    part of its spread: the fit found that correcting it does not help."""
    both = np.isfinite(metric_z) & np.isfinite(truth_z)
    shift = 0.0 if offsets is None else np.asarray(offsets, dtype=float)[:, None]
    squared = np.where(both, metric_z - shift - truth_z, 0.0) ** 2
    pooled = squared.sum() / both.sum() if both.any() else 0.0
    spread: np.ndarray = np.sqrt((squared.sum(1) + OFFSET_SHRINKAGE * pooled) / (both.sum(1) + OFFSET_SHRINKAGE))
    return spread


def fuse(prediction: np.ndarray, rows: np.ndarray, values: np.ndarray, weight: float,
         offsets: np.ndarray | None = None) -> np.ndarray:
    """``prediction`` with the models at ``rows`` re-ranked by their metric ``values`` (see the
    module's docstring); rows with a non-finite value keep their prediction."""
    out = np.array(prediction, dtype=np.float64, copy=True)
    rows = np.asarray(rows, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    rows, values = rows[keep], values[keep]
    if weight <= 0 or len(rows) < 2 or np.ptp(values) == 0:
        return out
    evidence = _standardized(values)
    if offsets is not None:
        evidence = _standardized(evidence - offsets[rows])
    own = out[rows]
    blend = (1.0 - weight) * _standardized(own) + weight * evidence
    spread = blend.std()
    if spread == 0:
        return out
    # The blend on the scale the predictions had among these models (a tiny one where they
    # were all equal, so the order still follows the evidence).
    scale = own.std() if own.std() > 0 else 1e-6 * max(1.0, float(np.abs(own).max()))
    out[rows] = own.mean() + scale * blend / spread
    return out


@dataclass(frozen=True)
class Evidence:
    """The fitted fusion: which metric, its weight, each model's offset under it (None: not
    corrected)."""

    metric: str
    weight: float
    offsets: np.ndarray | None
    shortlist: int | None = None  # re-rank only this many of the scored models, the best predicted
    # Each model's residual spread under the metric (see the module's docstring); None: a fit that
    # predates it.
    residual_spread: np.ndarray | None = None

    def fuse(self, prediction: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if self.shortlist is not None and len(rows) > self.shortlist:
            keep = np.argsort(-np.asarray(prediction)[rows], kind="stable")[:self.shortlist]
            rows, values = rows[keep], values[keep]
        return fuse(prediction, rows, values, self.weight, self.offsets)


def fitted_evidence(metric: str, weight: float, corrected: bool, shortlist: int | None, metric_z: np.ndarray,
                    truth_z: np.ndarray) -> Evidence:
    """The fusion of ``metric`` with ``weight`` and ``shortlist``, its offsets (when ``corrected``)
    and residual spreads from the known tasks' standardised metric scores and truth (models x
    tasks, :func:`standardize_tasks`)."""
    offsets = metric_offsets(metric_z, truth_z) if corrected else None
    return Evidence(metric, weight, offsets, shortlist, metric_residual_spread(metric_z, truth_z, offsets))


def scored_rows(metric_column: np.ndarray, prediction: np.ndarray, budget: int | None) -> np.ndarray:
    """The models whose metric the fusion sees on a task: every scored one, or the
    ``budget`` best predicted among them."""
    rows = np.flatnonzero(np.isfinite(metric_column))
    if budget is not None and len(rows) > budget:
        rows = rows[np.argsort(-prediction[rows], kind="stable")[:budget]]
    return rows


def choose_evidence(history: np.ndarray, normalized: np.ndarray, held_out: Sequence[int],
                    predictions: Mapping[int, np.ndarray], forward: Mapping[str, np.ndarray], *,
                    budget: int | None = None, metrics: Sequence[str] | None = None,
                    dropped: Mapping[int, np.ndarray] | None = None,
                    ) -> tuple[Evidence | None, dict[str, float]]:
    """The fusion inner cross-validation picks, and every candidate's mean inner weighted tau.

    ``predictions`` are the held-out known tasks' predictions (each from the other known
    tasks), ``forward`` the metrics' scores on the known tasks (models x tasks, NaN where
    absent), ``budget`` how many models the fusion will see on a new task (None: all
    scored), ``metrics`` the metrics allowed (None: every one stored), ``dropped`` per held-out
    task the tasks its fold left out (None: itself; its offsets are learned without them
    too, as its prediction was). Candidates: no
    evidence; then per metric, each weight (lightest first), without and with offsets, each
    shortlist.
    """
    truth_z = standardize_tasks(normalized)
    allowed = [m for m in forward if metrics is None or m in metrics]
    metric_z = {m: standardize_tasks(np.asarray(forward[m], dtype=float)) for m in allowed}
    usable = [m for m in allowed if np.sum(np.isfinite(metric_z[m]).any(0)) >= MIN_METRIC_TASKS]
    held = [t for t in held_out if t in predictions]
    Candidate = tuple[str, float, bool, int | None]
    shortlists = [n for n in SHORTLISTS if n is not None and (budget is None or n < budget)] + [None]
    candidates: list[Candidate | None] = [None]
    candidates += [(m, w, corrected, n) for m in usable for w in EVIDENCE_WEIGHTS for corrected in (False, True)
                   for n in shortlists]
    if len(held) < 2 or not usable:
        return None, {}

    def taus(candidate: Candidate | None) -> np.ndarray:
        out = []
        for t in held:
            prediction = predictions[t]
            if candidate is not None:
                metric, weight, corrected, shortlist = candidate
                column = np.asarray(forward[metric], dtype=float)[:, t]
                rows = scored_rows(column, prediction, budget)
                gone = t if dropped is None else dropped[t]
                offsets = metric_offsets(metric_z[metric], truth_z, exclude=gone) if corrected else None
                prediction = Evidence(metric, weight, offsets, shortlist).fuse(prediction, rows, column[rows])
            out.append(weighted_tau(prediction, history[:, t]))
        return np.array(out, dtype=float)

    # The one-standard-error rule, "no evidence" the simplest: among this many candidates the
    # best inner mean of a metric that is noise would otherwise win by chance.
    best, scores = choose_simplest(candidates, taus, one_standard_error=True)
    if best is None:
        return None, scores
    metric, weight, corrected, shortlist = best
    return fitted_evidence(metric, weight, corrected, shortlist, metric_z[metric], truth_z), scores
