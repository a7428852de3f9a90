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

Neighbour tasks: given distances between tasks (proxy descriptors, or a domain
distance table), a new task's prediction also moves each model from its prior by
its residuals on the known tasks nearest the new one, weighted by a Gaussian
kernel whose width (or absence) inner cross-validation picks. The model vectors
carry those residuals (their leading factors on zoos with many tasks), the task
vector the kernel weights, so ranking stays one product per model.

Observed scores on the new task ("we already fine-tuned these three") re-weight
the known tasks by how well each one agrees with what was observed, with a
sharpness chosen by inner cross-validation (0 keeps the prior), and the
observed models are placed in their measured order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from .evidence import Evidence, choose_evidence, fitted_evidence, standardize_tasks
from .fitted import TransferSpace
from .selection import choose_simplest, foldable, held_with, usable_related
from .selection import weighted_tau as _weighted_tau
from .vectors import neighbour_weights, row_sums, row_sums_without, seen_and_values, update_with_observations

__all__ = [
    "choose_normalization",
    "cold_ridge_strength",
    "fit_transfer",
    "normalize_scores",
    "predict_cold_models",
]

# Per-task normalisations of the history, each a different view of what a task says:
# ``center`` keeps how far apart the models are (scores centred per task over one pooled
# spread: a task whose models differ widely weighs more than one where all are close),
# ``z`` gives every task the same weight, ``gauss`` (normal quantiles of the ranks) also
# discards the gaps, robust to a task where a few models fail badly. No one of them is
# best on every table, so the fit chooses by inner cross-validation of the prior.
NORMALIZATIONS = ("gauss", "z", "center")
NORMALIZATION = "gauss"  # the default of :func:`normalize_scores`, and the choice with under 3 tasks
RIDGE_STRENGTHS = (100.0, 10.0, 1.0)  # from the simplest (most shrunk)
AGREEMENT_SHARPNESS = (0.0, 1.0, 2.0, 4.0)
PRIOR_SHRINKAGE = 1.0  # pseudo-observations at 0 in each model's prior
# Neighbour tasks: kernel widths relative to the median distance, from the widest; None: no neighbours.
NEIGHBOUR_BANDWIDTHS = (1.0, 0.5, 0.3, 0.1)
MAX_NEIGHBOUR_RANK = 16  # model vectors carry at most this many factors of the residual scores
MAX_INNER_TASKS = 24  # inner cross-validation looks at most at this many held-out tasks
MAX_NORMALIZATION_TASKS = 100  # ...and the choice of normalisation at this many
MAX_INNER_MODELS = 50_000  # ...and scores its rankings on at most this many models (a fixed random subset)


def normalize_scores(matrix: np.ndarray, method: str = "gauss") -> np.ndarray:
    """Per-task normalisation of a models x tasks matrix (NaN = not measured); see
    :data:`NORMALIZATIONS`."""
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalisation must be one of {NORMALIZATIONS}, got {method!r}")
    matrix = np.asarray(matrix, dtype=float)
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
            out[seen, j] = values - values.mean()
    if method == "center":
        pooled = np.sqrt(np.nanmean(out**2)) if np.any(~np.isnan(out)) else 0.0
        if pooled > 0:
            out /= pooled
    return out


def _standardize_columns(x: np.ndarray) -> np.ndarray:
    """Centres every column; scales the non-binary ones (indicator columns keep their 0/1 step)."""
    x = np.asarray(x, dtype=float)
    binary = np.all((x == 0) | (x == 1), axis=0)
    spread = x.std(0)
    spread[(spread == 0) | binary] = 1.0
    standardized: np.ndarray = (x - x.mean(0)) / spread
    return standardized


def _ridge_statistics(seen: np.ndarray, values: np.ndarray, model_x: np.ndarray | None, task_x: np.ndarray | None,
                      tasks: np.ndarray, rows: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of the ridge over every measured (model, task) pair of ``tasks``.

    The design row of a pair is [loo_prior_mt, x_m (x) t_t]; its Gram matrix and
    right-hand side are assembled from per-model and per-task sums, so the cost
    is a few dense products over models x tasks instead of one row per pair.
    Both are sums of per-model terms, each depending on that model's row only, so
    the statistics of ``rows`` can be added to or taken from those of all models.
    """
    s = seen[rows][:, tasks]
    y = values[rows][:, tasks]
    if model_x is not None:
        model_x = model_x[rows]
    count = s.sum(1, keepdims=True)
    total = y.sum(1, keepdims=True)
    loo = np.where(s > 0, (total - y) / (count - s + PRIOR_SHRINKAGE), 0.0)
    gram_pp = float((loo * loo).sum())
    rhs_p = float((loo * y).sum())
    if model_x is None or task_x is None:
        return np.array([[gram_pp]]), np.array([rhs_p])
    t = task_x[tasks]  # tasks x q
    p, q = model_x.shape[1], t.shape[1]
    # cross term: sum_pairs loo * x_m (x) t_t  = x^T (loo @ t)
    cross = (model_x.T @ (loo @ t)).reshape(-1)
    # interaction block: sum_m (x_m x_m^T) (x) (sum_t s_mt t_t t_t^T)
    tt = (t[:, :, None] * t[:, None, :]).reshape(len(tasks), q * q)
    per_model = s @ tt  # models x q^2
    xx = (model_x[:, :, None] * model_x[:, None, :]).reshape(len(model_x), p * p)
    block = (xx.T @ per_model).reshape(p, p, q, q).transpose(0, 2, 1, 3).reshape(p * q, p * q)
    rhs_x = (model_x.T @ (y @ t)).reshape(-1)
    gram = np.empty((1 + p * q, 1 + p * q))
    gram[0, 0] = gram_pp
    gram[0, 1:] = gram[1:, 0] = cross
    gram[1:, 1:] = block
    return gram, np.concatenate([[rhs_p], rhs_x])


def _predict_pairs(weights: np.ndarray, prior: np.ndarray, model_x: np.ndarray | None,
                   task_x_row: np.ndarray | None) -> np.ndarray:
    """[prior, x_m (x) t] @ weights for every model, without forming the pair features."""
    prediction: np.ndarray
    if model_x is None or task_x_row is None:
        prediction = weights[0] * prior
        return prediction
    prediction = weights[0] * prior + model_x @ (weights[1:].reshape(model_x.shape[1], -1) @ task_x_row)
    return prediction


def _solve_ridge(gram: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    penalty = ridge * np.eye(len(rhs))
    penalty[0, 0] = 0.0  # the prior's weight is not shrunk
    return np.linalg.solve(gram + penalty, rhs)


def _inner_tasks(n_tasks: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n_tasks)
    return np.sort(order[: min(n_tasks, MAX_INNER_TASKS)])


class _InnerFolds:
    """The inner leave-one-task-out folds of a fit: each held-out task's zero-shot prediction
    (per ridge strength) and neighbour shift (per bandwidth), computed once and shared by every
    candidate that needs them. ``model_x``/``task_x`` are None when side information is not
    used; every sum is taken over all models once, and a fold subtracts its tasks' share (the
    held-out task's, and with ``related`` those of the tasks related to it, as a new task of new
    data would find none of them known)."""

    def __init__(self, history: np.ndarray, normalized: np.ndarray, model_x: np.ndarray | None,
                 task_x: np.ndarray | None, task_distances: np.ndarray | None, held_out: np.ndarray,
                 scored: np.ndarray | slice, probe_shots: int, related: np.ndarray | None = None) -> None:
        self.history, self.normalized = history, normalized
        self.model_x, self.task_x, self.task_distances = model_x, task_x, task_distances
        self.held_out, self.scored, self.probe_shots = held_out, scored, probe_shots
        self.dropped = held_with(history.shape[1], held_out, related)
        self.filled = seen_and_values(normalized)
        self.sums = row_sums(self.filled)
        self.all_tasks = np.arange(history.shape[1])
        self.full_statistics = (_ridge_statistics(*self.filled, model_x, task_x, self.all_tasks)
                                if model_x is not None and task_x is not None else None)
        # (held-out task, ridge) -> prediction; one ridge system serves every strength
        self._zero_shot: dict[tuple[int, float | None], np.ndarray] = {}
        self._shifts: dict[tuple[int, float], np.ndarray] = {}  # (held-out task, bandwidth) -> neighbour shift

    def _prior_without(self, t: int) -> np.ndarray:
        count, total = row_sums_without(self.filled, self.sums, self.dropped[t])
        prior: np.ndarray = total / (count + PRIOR_SHRINKAGE)
        return prior

    def zero_shot(self, t: int, ridge: float | None) -> np.ndarray:
        if (t, ridge) not in self._zero_shot:
            dropped = self.dropped[t]
            prior = self._prior_without(t)
            self._zero_shot[(t, None)] = prior
            if self.full_statistics is not None:
                # Leaving tasks out changes the leave-one-out priors of the models measured on them only.
                assert self.task_x is not None  # the statistics exist only with side information
                rows = np.flatnonzero(self.filled[0][:, dropped].any(1))
                tasks = self.all_tasks
                without = _ridge_statistics(*self.filled, self.model_x, self.task_x,
                                            np.setdiff1d(tasks, dropped), rows)
                with_t = _ridge_statistics(*self.filled, self.model_x, self.task_x, tasks, rows)
                gram = self.full_statistics[0] - with_t[0] + without[0]
                rhs = self.full_statistics[1] - with_t[1] + without[1]
                for strength in RIDGE_STRENGTHS:
                    weights = _solve_ridge(gram, rhs, strength)
                    self._zero_shot[(t, strength)] = _predict_pairs(weights, prior, self.model_x, self.task_x[t])
        return self._zero_shot[(t, ridge)]

    def neighbour_shift(self, t: int, bandwidth: float) -> np.ndarray:
        """The models' residuals on the tasks near t (t left out), relative to their priors without t."""
        if (t, bandwidth) not in self._shifts:
            assert self.task_distances is not None  # a bandwidth is a candidate only with distances
            others = np.setdiff1d(self.all_tasks, self.dropped[t])
            weights = neighbour_weights(self.task_distances[t, others], bandwidth)
            filled = self.filled
            self._shifts[(t, bandwidth)] = (filled[1][:, others] @ weights
                                            - self._prior_without(t) * (filled[0][:, others] @ weights))
        return self._shifts[(t, bandwidth)]

    def taus(self, ridge: float | None, sharpness: float | None = None,
             bandwidth: float | None = None) -> np.ndarray:
        """Each held-out task's weighted tau under one candidate (with ``sharpness``: after the
        candidate's own top ``probe_shots`` models are observed)."""
        taus: list[float] = []
        for t in self.held_out:
            prediction = self.zero_shot(t, ridge)
            if bandwidth is not None:
                prediction = prediction + self.neighbour_shift(t, bandwidth)
            truth = self.history[:, t]
            if sharpness is not None and self.probe_shots:
                seen = np.flatnonzero(~np.isnan(truth))
                probe = seen[np.argsort(-prediction[seen], kind="stable")[:self.probe_shots]]
                prediction = update_with_observations(prediction, self.normalized, probe, truth[probe], sharpness,
                                                      filled=self.filled, exclude=self.dropped[t], sums=self.sums)
            taus.append(_weighted_tau(prediction[self.scored], truth[self.scored]))
        return np.array(taus, dtype=float)


def fit_transfer(history: np.ndarray, model_features: np.ndarray | None = None,
                 task_features: np.ndarray | None = None, *, task_distances: np.ndarray | None = None,
                 seed: int = 0, probe_shots: int = 3, choices: dict[str, Any] | None = None,
                 forward_scores: Mapping[str, np.ndarray] | None = None, budget: int | None = None,
                 metrics: Sequence[str] | None = None, related: np.ndarray | None = None) -> TransferSpace:
    """Fits the transfer space on a models x tasks matrix of scores (NaN = not measured).

    ``model_features`` (n_models x p) and ``task_features`` (n_tasks x q) are
    numeric side information; both are needed for the side-information term.
    ``task_distances`` (n_tasks x n_tasks: proxy-descriptor or domain distances)
    allow the neighbour-task term: a new task's prediction moves each model from
    its prior by its residuals on the known tasks nearest the new one.
    Choices are made by inner leave-one-task-out cross-validation, unless
    ``choices`` (``{"ridge": ..., "sharpness": ...}`` from an earlier fit) fixes
    them: folding new results into a fitted space then costs one pass over the
    history instead of a cross-validation.

    ``forward_scores`` (metric name -> models x tasks, NaN where absent) are forward-pass
    metrics on the known tasks: inner cross-validation chooses whether and how to fuse one
    with a new task's prediction (:mod:`fennec.space.evidence`), for a new task on which
    ``budget`` models (None: every one) are scored, among ``metrics`` (None: any).

    ``related`` (n_tasks x n_tasks, True where two tasks share data): every inner fold holds
    out with its task the tasks related to it, for a fit whose new tasks will have no
    related task known (new data: ``fennec.fit``'s default, and an evaluation that holds
    related tasks out); None, or too few unrelated tasks to hold any out against
    (:func:`~fennec.space.selection.usable_related`): one task a fold.
    """
    history = np.asarray(history, dtype=float)
    n_models, n_tasks = history.shape
    rng = np.random.default_rng(seed)
    if model_features is not None and np.asarray(model_features).shape[1] == 0:
        model_features = None
    if task_features is not None and np.asarray(task_features).shape[1] == 0:
        task_features = None
    model_x = _standardize_columns(model_features) if model_features is not None else None
    task_features, task_mean, task_scale, task_x = _standardized_tasks(task_features)
    use_side = model_x is not None and task_x is not None and n_tasks >= 3
    task_distances = _checked_distances(task_distances, n_tasks)
    use_neighbours = task_distances is not None and n_tasks >= 3
    related = usable_related(_checked_related(related, n_tasks))

    held_out = _inner_tasks(n_tasks, rng) if n_tasks >= 3 else np.array([], dtype=int)
    if related is not None:  # a task with too few unrelated ones is not held out
        held_out = foldable(held_out, related)
    scored = np.sort(rng.permutation(n_models)[:MAX_INNER_MODELS]) if n_models > MAX_INNER_MODELS else slice(None)
    normalization_taus: dict[str, float] = {}
    if choices is not None and "normalization" in choices:
        normalization = str(choices["normalization"])
    else:
        # The prior alone is cheap to score, so its choice sees more held-out tasks than the rest.
        tasks_seen = held_out if n_tasks <= MAX_INNER_TASKS else np.sort(
            np.random.default_rng(seed + 1).permutation(n_tasks)[:MAX_NORMALIZATION_TASKS])
        if related is not None:
            tasks_seen = foldable(tasks_seen, related)
        normalization, normalization_taus = choose_normalization(history, tasks_seen, scored, related)
    normalized = normalize_scores(history, normalization)
    folds = _InnerFolds(history, normalized, model_x if use_side else None, task_x if use_side else None,
                        task_distances, held_out, scored, probe_shots, related)
    if choices is not None:
        ridge, sharpness, bandwidth = choices.get("ridge"), float(choices.get("sharpness", 0.0)), choices.get("bandwidth")
        if ridge is not None and not use_side:
            raise ValueError("choices: a ridge strength was given but the side information to use it is missing")
        if bandwidth is not None and not use_neighbours:
            raise ValueError("choices: a neighbour bandwidth was given but the task distances to use it are missing")
        inner: dict[str, dict[str, float]] = {"inner_wtau": {}, "inner_wtau_sharpness": {},
                                              "inner_wtau_bandwidth": {}}
    else:
        ridge, sharpness, bandwidth, inner = _choose(folds, use_side, use_neighbours)
    inner["inner_wtau_normalization"] = normalization_taus
    evidence = None
    if forward_scores:
        forward = {m: np.asarray(v, dtype=float) for m, v in forward_scores.items()}
        for m, v in forward.items():
            if v.shape != history.shape:
                raise ValueError(f"forward_scores[{m!r}]: expected shape {history.shape}, got {v.shape}")
        if choices is not None and "evidence_metric" in choices:
            evidence = _fixed_evidence(choices, forward, normalized)
        elif choices is None:
            predictions = {int(t): folds.zero_shot(t, ridge) + (folds.neighbour_shift(t, bandwidth)
                                                                if bandwidth is not None else 0.0)
                           for t in held_out}
            evidence, inner["inner_wtau_evidence"] = choose_evidence(
                history, normalized, held_out.tolist(), predictions, forward, budget=budget, metrics=metrics,
                dropped=folds.dropped)

    count, total = folds.sums
    prior = total / (count + PRIOR_SHRINKAGE)  # each model's shrunk mean, from the sums already taken
    interaction = None
    if ridge is not None:
        assert folds.full_statistics is not None  # a ridge is chosen or accepted only with side information
        interaction = _solve_ridge(*folds.full_statistics, ridge)
    blocks: list[np.ndarray] = [prior[:, None]]
    if interaction is not None:
        assert model_x is not None
        blocks.append(model_x)
    neighbour_basis = None
    if bandwidth is not None:
        neighbour_basis, factors = _neighbour_factors(folds.filled, prior)
        blocks.append(factors)
    return TransferSpace(
        normalization=normalization,
        ridge=ridge,
        model_vectors=np.ascontiguousarray(np.column_stack(blocks), dtype=np.float32),
        interaction=interaction,
        task_features=task_features,
        task_mean=task_mean,
        task_scale=task_scale,
        normalized=normalized,
        sharpness=float(sharpness),
        bandwidth=bandwidth,
        neighbour_basis=neighbour_basis,
        choices=inner,
        evidence=evidence,
    )


def _fixed_evidence(choices: Mapping[str, Any], forward: Mapping[str, np.ndarray],
                    normalized: np.ndarray) -> Evidence | None:
    """An earlier fit's fusion, its offsets recomputed on this history."""
    metric = choices["evidence_metric"]
    if metric is None:
        return None
    if metric not in forward:
        raise ValueError(f"choices: the evidence metric {metric!r} has no forward scores here "
                         f"(given: {sorted(forward)})")
    return fitted_evidence(str(metric), float(choices["evidence_weight"]), bool(choices.get("evidence_corrected")),
                           choices.get("evidence_shortlist"), standardize_tasks(forward[metric]),
                           standardize_tasks(normalized))


def _standardized_tasks(task_features: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                    np.ndarray | None, np.ndarray | None]:
    """The task features as floats, their mean and scale (1 where constant), and standardised."""
    if task_features is None:
        return None, None, None, None
    task_features = np.asarray(task_features, dtype=float)
    task_mean = task_features.mean(0)
    task_scale = task_features.std(0)
    task_scale[task_scale == 0] = 1.0
    return task_features, task_mean, task_scale, (task_features - task_mean) / task_scale


def _checked_related(related: np.ndarray | None, n_tasks: int) -> np.ndarray | None:
    if related is None:
        return None
    related = np.asarray(related)
    if related.shape != (n_tasks, n_tasks):
        raise ValueError(f"related: expected shape ({n_tasks}, {n_tasks}), got {related.shape}")
    if related.dtype != bool:
        raise ValueError(f"related: expected booleans (True where two tasks share data), got {related.dtype}")
    return related


def _checked_distances(task_distances: np.ndarray | None, n_tasks: int) -> np.ndarray | None:
    if task_distances is None:
        return None
    task_distances = np.asarray(task_distances, dtype=float)
    if task_distances.shape != (n_tasks, n_tasks):
        raise ValueError(f"task_distances: expected shape ({n_tasks}, {n_tasks}), got {task_distances.shape}")
    if not np.all(np.isfinite(task_distances)) or np.any(task_distances < 0):
        raise ValueError("task_distances: must be finite and non-negative")
    return task_distances


def choose_normalization(history: np.ndarray, held_out: np.ndarray, scored: np.ndarray | slice = slice(None),
                         related: np.ndarray | None = None) -> tuple[str, dict[str, float]]:
    """The normalisation whose prior ranks the inner held-out tasks best (each task's truth
    against the prior of the other tasks, less its ``related`` ones), and every candidate's
    mean inner weighted tau.

    The best mean, not the one-standard-error rule: the candidates are equally simple, and
    the prior is what every other term of the space is added to.
    """
    if len(held_out) < 2:
        return NORMALIZATION, {}
    dropped = held_with(history.shape[1], held_out, related)

    def taus(method: str) -> np.ndarray:
        filled = seen_and_values(normalize_scores(history, method))
        sums = row_sums(filled)
        out = []
        for t in held_out:
            count, total = row_sums_without(filled, sums, dropped[int(t)])
            prior = total / (count + PRIOR_SHRINKAGE)
            out.append(_weighted_tau(prior[scored], history[scored, t]))
        return np.array(out, dtype=float)

    return choose_simplest(list(NORMALIZATIONS), taus, one_standard_error=False)


def _choose(folds: _InnerFolds, use_side: bool,
            use_neighbours: bool) -> tuple[float | None, float, float | None, dict[str, dict[str, float]]]:
    """Neighbour bandwidth, ridge strength and sharpness by inner cross-validation, and each
    candidate's mean inner weighted tau."""
    ridge: float | None = None
    sharpness = 0.0
    bandwidth: float | None = None
    inner: dict[str, dict[str, float]] = {"inner_wtau": {}, "inner_wtau_sharpness": {}, "inner_wtau_bandwidth": {}}
    if len(folds.held_out) < 2:
        return ridge, sharpness, bandwidth, inner
    if use_neighbours:
        # Neighbours first, then the side information on top of them. The best width, not
        # the one-standard-error rule: each inner fold leaves out one more task, so a task
        # whose one close sibling is the outer held-out task has no neighbour inside, and
        # the inner folds understate what neighbours give.
        bandwidths: list[float | None] = [None, *NEIGHBOUR_BANDWIDTHS]
        bandwidth, inner["inner_wtau_bandwidth"] = choose_simplest(
            bandwidths, lambda h: folds.taus(None, bandwidth=h), one_standard_error=False)
    ridges: list[float | None] = [None] + (list(RIDGE_STRENGTHS) if use_side else [])  # None: no side information
    ridge, inner["inner_wtau"] = choose_simplest(ridges, lambda r: folds.taus(r, bandwidth=bandwidth))
    sharpness, inner["inner_wtau_sharpness"] = choose_simplest(list(AGREEMENT_SHARPNESS),
                                                               lambda b: folds.taus(ridge, b, bandwidth))
    return ridge, sharpness, bandwidth, inner


def _neighbour_factors(filled: tuple[np.ndarray, np.ndarray], prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The basis B of the known tasks' residual factors and each model's factors (residual @ B).

    Residuals are from the prior (0 where not measured); a new task's neighbour shift is
    residual @ weights, carried as r factors: residual @ B per model, B^T weights per task.
    """
    residual = filled[1] - prior[:, None] * filled[0]
    n_tasks = residual.shape[1]
    if n_tasks <= MAX_NEIGHBOUR_RANK:
        basis = np.eye(n_tasks)
    else:
        values, vectors = np.linalg.eigh(residual.T @ residual)
        basis = vectors[:, np.argsort(values)[::-1][:MAX_NEIGHBOUR_RANK]]
    return basis, residual @ basis

COLD_RIDGE_STRENGTHS = (0.1, 1.0, 10.0, 100.0)
COLD_INNER_FOLDS = 5


def _ridge_per_task(x: np.ndarray, normalized: np.ndarray, ridge: float) -> np.ndarray:
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


def _standardize_like(features: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=float)
    new = np.asarray(new, dtype=float)
    binary = np.all((features == 0) | (features == 1), axis=0)
    mean, spread = features.mean(0), features.std(0)
    spread[(spread == 0) | binary] = 1.0
    return (features - mean) / spread, (new - mean) / spread


def cold_ridge_strength(history: np.ndarray, model_features: np.ndarray, *, seed: int = 0,
                        normalization: str = NORMALIZATION) -> float:
    """The ridge strength :func:`predict_cold_models` would choose for these known models."""
    normalized = normalize_scores(np.asarray(history, dtype=float), normalization)
    x, _ = _standardize_like(model_features, np.asarray(model_features)[:0])
    return _choose_cold_ridge(x, normalized, seed)


@overload
def predict_cold_models(history: np.ndarray, model_features: np.ndarray, new_model_features: np.ndarray,
                        *, seed: int = 0, ridge: float | None = None,
                        normalization: str = NORMALIZATION,
                        return_ridge: Literal[False] = False) -> np.ndarray: ...


@overload
def predict_cold_models(history: np.ndarray, model_features: np.ndarray, new_model_features: np.ndarray,
                        *, seed: int = 0, ridge: float | None = None,
                        normalization: str = NORMALIZATION,
                        return_ridge: Literal[True]) -> tuple[np.ndarray, float]: ...


@overload
def predict_cold_models(history: np.ndarray, model_features: np.ndarray, new_model_features: np.ndarray,
                        *, seed: int = 0, ridge: float | None = None,
                        normalization: str = NORMALIZATION,
                        return_ridge: bool) -> np.ndarray | tuple[np.ndarray, float]: ...


def predict_cold_models(history: np.ndarray, model_features: np.ndarray, new_model_features: np.ndarray,
                        *, seed: int = 0, ridge: float | None = None,
                        normalization: str = NORMALIZATION,
                        return_ridge: bool = False) -> np.ndarray | tuple[np.ndarray, float]:
    """Normalised scores of models with no history, from their side information alone.

    Returns n_new x n_tasks (and the ridge strength used, with ``return_ridge``).
    Unless ``ridge`` is given, its strength is chosen by inner k-fold over the
    known models (weighted tau per task on the held-out models).
    """
    normalized = normalize_scores(np.asarray(history, dtype=float), normalization)
    x, x_new = _standardize_like(model_features, new_model_features)
    if ridge is None:
        ridge = _choose_cold_ridge(x, normalized, seed)
    coef = _ridge_per_task(x, normalized, ridge)
    prediction: np.ndarray = np.column_stack([np.ones(len(x_new)), x_new]) @ coef
    return (prediction, ridge) if return_ridge else prediction


def _choose_cold_ridge(x: np.ndarray, normalized: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    normalized = normalized[:, _inner_tasks(normalized.shape[1], rng)]
    if len(x) > MAX_INNER_MODELS:
        rows = np.sort(rng.permutation(len(x))[:MAX_INNER_MODELS])
        x, normalized = x[rows], normalized[rows]
    folds = np.array_split(rng.permutation(len(x)), min(COLD_INNER_FOLDS, len(x)))
    best_score: float | np.floating[Any]
    best, best_score = COLD_RIDGE_STRENGTHS[-1], -np.inf
    for ridge in COLD_RIDGE_STRENGTHS:
        taus: list[float] = []
        for fold in folds:
            train = np.setdiff1d(np.arange(len(x)), fold)
            coef = _ridge_per_task(x[train], normalized[train], ridge)
            prediction = np.column_stack([np.ones(len(fold)), x[fold]]) @ coef
            taus += [_weighted_tau(prediction[:, j], normalized[fold, j]) for j in range(normalized.shape[1])]
        score = np.nanmean(taus) if np.any(~np.isnan(taus)) else -np.inf
        if score > best_score:
            best, best_score = ridge, score
    return best
