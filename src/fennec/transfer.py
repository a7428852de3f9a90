"""The transfer space: model vectors and task vectors learned from past results.

Scores are first normalised within each task, since only the order of models
on a task matters to the user: ``gauss`` maps each task's scores to normal
quantiles of their ranks (robust to a task where a few models fail badly),
``z`` standardises them. A model's vector is then

    [prior_m, x_m]

where ``prior_m`` is its mean normalised score over the tasks it was tried on
(shrunk towards 0 when it was tried on few) and ``x_m`` its side information
(architecture family, size, source data...). A task's vector is

    [w_prior, W t_t]

where ``t_t`` is the task's side information (size, class count...) and
``w_prior``, ``W`` are learned by ridge regression across the known tasks, each
predicted from the others (a leave-one-task-out prior), so the learned
interaction says how side information moves a model away from its prior. With
no task information the task vector is ``[1, 0...]`` and the ranking is the
prior. Every choice (normalisation, whether to use side information, ridge
strength) is made by inner cross-validation over the training tasks only.

Observed scores on the new task ("we already fine-tuned these three") re-weight
the known tasks by how well each one agrees with what was observed, with a
sharpness chosen by inner cross-validation (0 keeps the prior), and the
observed models are placed in their measured order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata, weightedtau

__all__ = [
    "TransferModel",
    "fit_transfer",
    "normalize_scores",
    "predict_cold_models",
]

NORMALIZATIONS = ("gauss", "z")
# Ranks mapped to normal quantiles: as good as or better than the raw or z-scored
# prior on every table tried, and one knob fewer for inner cross-validation to
# get wrong with ten-odd tasks.
NORMALIZATION = "gauss"
RIDGE_STRENGTHS = (1.0, 10.0, 100.0)
AGREEMENT_SHARPNESS = (0.0, 1.0, 2.0, 4.0)
PRIOR_SHRINKAGE = 1.0  # pseudo-observations at 0 in each model's prior
MAX_INNER_TASKS = 24  # inner cross-validation looks at most at this many held-out tasks


def normalize_scores(matrix: np.ndarray, method: str = "gauss") -> np.ndarray:
    """Per-task normalisation of a models x tasks matrix (NaN = not measured)."""
    out = np.full(matrix.shape, np.nan)
    for j in range(matrix.shape[1]):
        seen = ~np.isnan(matrix[:, j])
        values = matrix[seen, j]
        if values.size == 0:
            continue
        if method == "gauss":
            out[seen, j] = ndtri((rankdata(values) - 0.5) / values.size)
        elif method == "z":
            spread = values.std()
            out[seen, j] = (values - values.mean()) / spread if spread > 0 else 0.0
        else:
            raise ValueError(f"normalisation must be one of {NORMALIZATIONS}, got {method!r}")
    return out


def _prior(normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seen = ~np.isnan(normalized)
    total = np.where(seen, normalized, 0.0).sum(1)
    count = seen.sum(1).astype(float)
    return total / (count + PRIOR_SHRINKAGE), total, count


def _pair_features(prior: np.ndarray, model_x: np.ndarray | None, task_x_row: np.ndarray | None) -> np.ndarray:
    if model_x is None or task_x_row is None:
        return prior[:, None]
    return np.column_stack([prior, (model_x[:, :, None] * task_x_row[None, None, :]).reshape(len(prior), -1)])


def _standardize_columns(x: np.ndarray) -> np.ndarray:
    """Centres every column; scales the non-binary ones (indicator columns keep their 0/1 step)."""
    x = np.asarray(x, dtype=float)
    binary = np.all((x == 0) | (x == 1), axis=0)
    spread = x.std(0)
    spread[(spread == 0) | binary] = 1.0
    return (x - x.mean(0)) / spread


@dataclass
class TransferModel:
    """A fitted transfer space. Rank a new task with :meth:`task_vector` and ``model_vectors``."""

    normalization: str
    ridge: float | None  # None: side information unused
    model_vectors: np.ndarray  # n_models x (1 + model features), float32
    interaction: np.ndarray | None  # (1 + p*q): weights of [prior, x_m (x) t_t]
    task_features: np.ndarray | None  # known tasks' standardised side information
    task_mean: np.ndarray | None
    task_scale: np.ndarray | None
    normalized: np.ndarray  # models x tasks, NaN where not measured
    sharpness: float = 0.0
    choices: dict = field(default_factory=dict)

    def task_vector(self, task_features: np.ndarray | None = None) -> np.ndarray:
        """The vector of a new task; with no side information it ranks by the prior."""
        dim = self.model_vectors.shape[1]
        if self.interaction is None or task_features is None:
            vector = np.zeros(dim, dtype=np.float32)
            vector[0] = 1.0
            return vector
        t = (np.asarray(task_features, dtype=float) - self.task_mean) / self.task_scale
        p = dim - 1
        weights = self.interaction[1:].reshape(p, -1)
        return np.concatenate([[self.interaction[0]], weights @ t]).astype(np.float32)

    def predict(self, task_features: np.ndarray | None = None) -> np.ndarray:
        return self.model_vectors.astype(np.float64) @ self.task_vector(task_features).astype(np.float64)

    def predict_with_observations(self, observed_models: np.ndarray, observed_scores: np.ndarray,
                                  task_features: np.ndarray | None = None) -> np.ndarray:
        """Re-rank after some models' scores on the new task became known."""
        base = self.predict(task_features)
        return _update_with_observations(base, self.normalized, observed_models, observed_scores, self.sharpness)


def _update_with_observations(base, normalized, observed, scores, sharpness):
    observed = np.asarray(observed, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    prediction = base.copy()
    if sharpness > 0 and len(observed) >= 2 and np.ptp(scores) > 0:
        agreement = np.zeros(normalized.shape[1])
        for j in range(normalized.shape[1]):
            column = normalized[observed, j]
            seen = ~np.isnan(column)
            if seen.sum() >= 2 and np.ptp(column[seen]) > 0 and np.ptp(scores[seen]) > 0:
                agreement[j] = np.corrcoef(column[seen], scores[seen])[0, 1]
        weights = np.exp(sharpness * agreement)
        seen_all = ~np.isnan(normalized)
        mass = (seen_all * weights).sum(1)
        weighted = np.where(seen_all, normalized, 0.0) @ weights / np.maximum(mass, 1e-12)
        # Keep the prior's own scale so the shift from side information still applies.
        prior = np.where(seen_all, normalized, 0.0).sum(1) / np.maximum(seen_all.sum(1), 1)
        prediction = base + (weighted - prior)
    # The measured models keep the predicted values of their group, in measured order.
    values = np.sort(prediction[observed])[::-1]
    prediction[observed[np.argsort(-scores, kind="stable")]] = values
    return prediction


def _ridge_interaction(normalized, model_x, task_x, tasks, ridge):
    """Learns [w_prior, W] from the known tasks, each against its leave-one-out prior."""
    _, total, count = _prior(normalized[:, tasks])
    rows, targets = [], []
    for j in tasks:
        column = normalized[:, j]
        seen = ~np.isnan(column)
        loo = (total - np.where(seen, column, 0.0)) / (count - seen + PRIOR_SHRINKAGE)
        rows.append(_pair_features(loo, model_x, task_x[j] if task_x is not None else None)[seen])
        targets.append(column[seen])
    x = np.vstack(rows)
    y = np.concatenate(targets)
    penalty = ridge * np.eye(x.shape[1])
    penalty[0, 0] = 0.0  # the prior's weight is not shrunk
    return np.linalg.solve(x.T @ x + penalty, x.T @ y)


def _weighted_tau(prediction, truth):
    seen = ~np.isnan(truth) & ~np.isnan(prediction)
    if seen.sum() < 2 or np.ptp(truth[seen]) == 0:
        return np.nan
    return weightedtau(prediction[seen], truth[seen])[0]


def _inner_tasks(n_tasks, rng):
    order = rng.permutation(n_tasks)
    return np.sort(order[: min(n_tasks, MAX_INNER_TASKS)])


def fit_transfer(history: np.ndarray, model_features: np.ndarray | None = None,
                 task_features: np.ndarray | None = None, *, seed: int = 0,
                 probe_shots: int = 3) -> TransferModel:
    """Fits the transfer space on a models x tasks matrix of scores (NaN = not measured).

    ``model_features`` (n_models x p) and ``task_features`` (n_tasks x q) are
    numeric side information; both are needed for the side-information term.
    Choices are made by inner leave-one-task-out cross-validation.
    """
    history = np.asarray(history, dtype=float)
    n_models, n_tasks = history.shape
    rng = np.random.default_rng(seed)
    model_x = _standardize_columns(model_features) if model_features is not None else None
    task_mean = task_scale = task_x = None
    if task_features is not None:
        task_features = np.asarray(task_features, dtype=float)
        task_mean = task_features.mean(0)
        task_scale = task_features.std(0)
        task_scale[task_scale == 0] = 1.0
        task_x = (task_features - task_mean) / task_scale
    use_side = model_x is not None and task_x is not None and n_tasks >= 3

    ridges = [None] + (list(RIDGE_STRENGTHS) if use_side else [])  # None: no side information
    held_out = _inner_tasks(n_tasks, rng) if n_tasks >= 3 else np.array([], dtype=int)
    normalized = normalize_scores(history, NORMALIZATION)

    def inner_taus(ridge, sharpness=None):
        taus = []
        for t in held_out:
            train = np.array([j for j in range(n_tasks) if j != t])
            prior, _, _ = _prior(normalized[:, train])
            if ridge is None:
                prediction = prior
            else:
                weights = _ridge_interaction(normalized, model_x, task_x, train, ridge)
                prediction = _pair_features(prior, model_x, task_x[t]) @ weights
            truth = history[:, t]
            if sharpness is not None and probe_shots:
                seen = np.flatnonzero(~np.isnan(truth))
                probe = seen[np.argsort(-prediction[seen], kind="stable")[:probe_shots]]
                prediction = _update_with_observations(prediction, normalized[:, train], probe,
                                                       truth[probe], sharpness)
            taus.append(_weighted_tau(prediction, truth))
        return np.array(taus, dtype=float)

    def choose(candidates, taus_of):
        """The candidate with the best mean inner weighted tau; the simplest on ties."""
        means = {c: np.nanmean(taus_of(c)) for c in candidates}
        best = candidates[0]
        for c in candidates[1:]:
            if means[c] > means[best]:
                best = c
        return best, {str(c): float(v) for c, v in means.items()}

    ridge, sharpness = None, 0.0
    inner_side, inner_sharpness = {}, {}
    if len(held_out) >= 2:
        ridge, inner_side = choose(ridges, inner_taus)
        sharpness, inner_sharpness = choose(list(AGREEMENT_SHARPNESS), lambda b: inner_taus(ridge, b))

    prior, _, _ = _prior(normalized)
    interaction = None
    if ridge is not None:
        interaction = _ridge_interaction(normalized, model_x, task_x, np.arange(n_tasks), ridge)
    vectors = prior[:, None] if interaction is None else np.column_stack([prior, model_x])
    return TransferModel(
        normalization=NORMALIZATION,
        ridge=ridge,
        model_vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        interaction=interaction,
        task_features=task_x,
        task_mean=task_mean,
        task_scale=task_scale,
        normalized=normalized,
        sharpness=float(sharpness),
        choices={"inner_wtau": inner_side, "inner_wtau_sharpness": inner_sharpness},
    )


COLD_RIDGE_STRENGTHS = (0.1, 1.0, 10.0, 100.0)
COLD_INNER_FOLDS = 5


def _ridge_per_task(x, normalized, ridge):
    """Per task, ridge of the measured normalised scores on model features (with intercept)."""
    x1 = np.column_stack([np.ones(len(x)), x])
    penalty = ridge * np.eye(x1.shape[1])
    penalty[0, 0] = 0.0
    coef = np.zeros((x1.shape[1], normalized.shape[1]))
    for j in range(normalized.shape[1]):
        seen = ~np.isnan(normalized[:, j])
        if seen.sum() == 0:
            continue
        xs = x1[seen]
        coef[:, j] = np.linalg.solve(xs.T @ xs + penalty, xs.T @ normalized[seen, j])
    return coef


def predict_cold_models(history: np.ndarray, model_features: np.ndarray, new_model_features: np.ndarray,
                        *, seed: int = 0) -> np.ndarray:
    """Normalised scores of models with no history, from their side information alone.

    Returns n_new x n_tasks. The ridge strength is chosen by inner k-fold over the
    known models (weighted tau per task on the held-out models).
    """
    normalized = normalize_scores(np.asarray(history, dtype=float), NORMALIZATION)
    features = np.asarray(model_features, dtype=float)
    new = np.asarray(new_model_features, dtype=float)
    binary = np.all((features == 0) | (features == 1), axis=0)
    mean, spread = features.mean(0), features.std(0)
    spread[(spread == 0) | binary] = 1.0
    x, x_new = (features - mean) / spread, (new - mean) / spread
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(len(x)), min(COLD_INNER_FOLDS, len(x)))
    best, best_score = COLD_RIDGE_STRENGTHS[-1], -np.inf
    for ridge in COLD_RIDGE_STRENGTHS:
        taus = []
        for fold in folds:
            train = np.setdiff1d(np.arange(len(x)), fold)
            coef = _ridge_per_task(x[train], normalized[train], ridge)
            prediction = np.column_stack([np.ones(len(fold)), x[fold]]) @ coef
            taus += [_weighted_tau(prediction[:, j], normalized[fold, j]) for j in range(normalized.shape[1])]
        score = np.nanmean(taus) if np.any(~np.isnan(taus)) else -np.inf
        if score > best_score:
            best, best_score = ridge, score
    coef = _ridge_per_task(x, normalized, best)
    return np.column_stack([np.ones(len(x_new)), x_new]) @ coef
