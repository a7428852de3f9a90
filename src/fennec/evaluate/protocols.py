"""The evaluation protocols (``lodo``, ``kshot``, ``cold-model``; see :mod:`fennec.evaluate`),
each run with its baselines on the same held-out tasks."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..budget import check_budget_request
from ..features import TaskPlacement
from ..space import TransferSpace, choose_models, normalize_scores, predict_cold_models, scored_rows
from .baselines import nmf_predict, reorder_observed, type_mean
from .data import EvalData
from .held_out import fit_on_tasks, place_held_out
from .scoring import average_metrics, paired_differences, ranking_metrics

__all__ = ["COLD_MODEL_FOLDS", "RANDOM_DRAWS", "RANDOM_PROBE_REPEATS", "evaluate", "pool_results"]

RANDOM_DRAWS = 20
RANDOM_PROBE_REPEATS = 5
COLD_MODEL_FOLDS = 5

# task -> method -> metric -> value
PerTask = dict[str, dict[str, dict[str, float]]]
# method -> every model's predicted score (one prediction per repeat for random probes)
Predictions = Mapping[str, np.ndarray | list[np.ndarray]]


def evaluate(data: EvalData, protocol: str = "lodo", *, shots: int = 3, probe: str = "top",
             seed: int = 0, exclude_related: bool = False, budget: int | str | None = None,
             metrics: Sequence[str] | None = None, choose: str | None = None) -> dict[str, Any]:
    """Runs one protocol; returns ``{"mean": {method: metrics}, "tasks": {task: {method: metrics}}}``.

    ``exclude_related`` (lodo, kshot): every task related to the held-out one
    (``data.related``: sharing a class of the same dataset) is held out of the fit
    with it, so the history holds nothing of the new task's classes.
    ``budget`` (lodo, kshot; an int or ``"all"``): fennec may see the held-out task's
    forward-pass scores (``data.forward_scores``, of ``metrics`` only when given) of at
    most that many models, chosen by ``choose`` (``"top"``, the default: its own top ones;
    ``"change"``: the largest expected change to the top, :mod:`fennec.space.choice`);
    fused as its fit's inner cross-validation chose. ``fennec_history`` is then its
    prediction without them, and ``<metric>_top<M>`` the metric alone on the same models
    with the prior elsewhere. The result's ``evidence`` says, per task, what the fit chose,
    which models' scores it saw and how many forward passes it spent.
    """
    if protocol not in ("lodo", "kshot", "cold-model"):
        raise ValueError(f"protocol must be 'lodo', 'kshot' or 'cold-model', got {protocol!r}")
    if probe not in ("top", "random"):
        raise ValueError(f"probe must be 'top' or 'random', got {probe!r}")
    if protocol == "kshot" and shots < 1:
        raise ValueError(f"shots must be >= 1 for the kshot protocol, got {shots}")
    if data.scores.shape != (len(data.models), len(data.tasks)):
        raise ValueError("scores must be models x tasks")
    if len(data.tasks) < 3:
        raise ValueError(f"evaluation needs at least 3 tasks with scores, got {len(data.tasks)}")
    if exclude_related:
        if protocol == "cold-model":
            raise ValueError("exclude_related holds tasks out; the cold-model protocol holds models out")
        if data.related is None or data.related.shape != (len(data.tasks), len(data.tasks)):
            raise ValueError("exclude_related needs which tasks are related (a zoo whose tasks record "
                             "their dataset and classes)")
    rule = check_budget_request(budget, None, choose)
    if budget is not None:
        if protocol == "cold-model":
            raise ValueError("budget: forward passes on a new task are for the lodo and kshot protocols")
        if budget != "all" and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"budget must be a positive number of models or 'all', got {budget!r}")
        if not data.forward_scores:
            raise ValueError("budget: no forward-pass scores to spend it on (a zoo's logme/parc... kinds, or "
                             "--forward-scores with --history)")
        if metrics is not None and not set(metrics) & set(data.forward_scores):
            raise ValueError(f"metric: {sorted(metrics)} not among the forward-pass scores given "
                             f"({sorted(data.forward_scores)})")
    if protocol == "cold-model":
        if data.model_features is None and data.model_types is None:
            raise ValueError("the cold-model protocol needs model side information (--models)")
        per_task, spent = _cold_model(data, seed), dict[str, dict[str, Any]]()
    else:
        fusion = None if budget is None else _Fusion(budget, None if metrics is None else list(metrics), rule)
        per_task, spent = _lodo(data, seed, shots if protocol == "kshot" else 0, probe, exclude_related, fusion)
    out = {"protocol": protocol, "shots": shots if protocol == "kshot" else 0,
           "probe": probe if protocol == "kshot" else None, "seed": seed, "exclude_related": exclude_related,
           "n_models": len(data.models), "budget": budget, "choose": None if budget is None else rule,
           **_summary(per_task)}
    if budget is not None:
        passes = [e["forward_passes"] for e in spent.values()]
        out["evidence"] = {"tasks": spent, "mean_forward_passes": float(np.mean(passes)) if passes else 0.0}
    return out


@dataclass(frozen=True)
class _Fusion:
    """What a held-out task's forward-pass scores may be spent on."""

    budget: int | str  # a number of models, or "all"
    metrics: list[str] | None
    choose: str = "top"  # the rule that picks them (fennec.space.choice)

    @property
    def models(self) -> int | None:
        return None if self.budget == "all" else int(self.budget)


def _summary(per_task: PerTask) -> dict[str, Any]:
    methods = sorted({m for rows in per_task.values() for m in rows})
    mean = {m: average_metrics([rows[m] for rows in per_task.values() if m in rows]) for m in methods}
    return {"n_tasks": len(per_task), "mean": mean, "paired": paired_differences(per_task), "tasks": per_task}


def pool_results(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Results of one protocol on several zoos (name -> :func:`evaluate`'s result) as one.

    Each zoo was evaluated on its own (its tasks held out from its own history);
    the pooled ``mean`` and ``paired`` weigh every task of every zoo alike, tasks
    are named ``zoo/task``, and ``zoos`` keeps each zoo's own means.
    """
    if not results:
        raise ValueError("pool_results: no results to pool")
    keys = ("protocol", "shots", "probe", "seed", "exclude_related", "budget", "choose")
    settings = {tuple(str(r.get(k)) for k in keys) for r in results.values()}
    if len(settings) != 1:
        raise ValueError(f"pool_results: the results differ in protocol, shots, probe, seed, exclude_related, "
                         f"budget or choose: {sorted(settings)}")
    first = next(iter(results.values()))
    per_task = {f"{name}/{task}": rows for name, r in results.items() for task, rows in r["tasks"].items()}
    evidence: dict[str, Any] = {}
    if first.get("evidence") is not None:
        spent = {f"{name}/{task}": e for name, r in results.items() for task, e in r["evidence"]["tasks"].items()}
        passes = [e["forward_passes"] for e in spent.values()]
        evidence = {"evidence": {"tasks": spent, "mean_forward_passes": float(np.mean(passes)) if passes else 0.0}}
    return {**{k: first.get(k) for k in keys}, **evidence,
            "n_models": max(r["n_models"] for r in results.values()),
            "zoos": {name: {"n_tasks": r["n_tasks"], "n_models": r["n_models"], "mean": r["mean"],
                            "paired": r["paired"]} for name, r in results.items()},
            **_summary(per_task)}


def _zero_shot_predictions(data: EvalData, train: np.ndarray, target: int, seed: int,
                           fusion: _Fusion | None = None, exclude_related: bool = False,
                           ) -> tuple[dict[str, np.ndarray], TransferSpace, TaskPlacement, dict[str, Any]]:
    scores = data.scores[:, train]
    space = fit_on_tasks(data, train, seed, evidence=fusion is not None,
                         budget=None if fusion is None else fusion.models,
                         metrics=None if fusion is None else fusion.metrics, exclude_related=exclude_related)
    placed = place_held_out(data, space, target, train)
    with warnings.catch_warnings():  # a model measured on none of the training tasks: NaN, not ranked
        warnings.simplefilter("ignore", RuntimeWarning)
        prior = np.nanmean(scores, 1)
        prior_std = np.nanmean(normalize_scores(scores, "z"), 1)
    out = {
        "fennec": space.predict(placed.features, placed.distances),
        "prior": prior,
        "prior_std": prior_std,
        "fennec_nmf": nmf_predict(scores, space.task_features, placed.features, seed),
    }
    spent: dict[str, Any] = {}
    if fusion is not None:
        assert data.forward_scores  # evaluate() refuses a budget without them
        chosen = space.evidence
        baseline = _baseline_metric(data.forward_scores, fusion.metrics)
        column = data.forward_scores[chosen.metric if chosen is not None else baseline][:, target]
        if fusion.choose == "top":
            rows = scored_rows(column, out["fennec"], fusion.models)
        else:
            rows = choose_models(space, out["fennec"], np.flatnonzero(np.isfinite(column)), fusion.models,
                                 fusion.choose)
        out["fennec_history"] = out["fennec"]
        out["fennec"] = space.fuse(out["fennec"], rows, column[rows])
        if fusion.models is not None:
            # The plain baseline: the same models run, scored by one fixed metric, the prior elsewhere.
            plain = data.forward_scores[baseline][:, target]
            out[f"{baseline}_top{fusion.models}"] = reorder_observed(prior, rows, plain[rows])
        spent = {"metric": None if chosen is None else chosen.metric,
                 "weight": None if chosen is None else chosen.weight,
                 "corrected": None if chosen is None else chosen.offsets is not None,
                 "shortlist": None if chosen is None else chosen.shortlist,
                 "chosen_by": fusion.choose, "models": [] if chosen is None else [data.models[i] for i in rows],
                 "forward_passes": 0 if chosen is None else len(rows)}
    return out, space, placed, spent


def _baseline_metric(forward: Mapping[str, np.ndarray], allowed: Sequence[str] | None) -> str:
    """The metric of a budget's plain baseline: LogME where given, else the first allowed."""
    names = [m for m in forward if allowed is None or m in allowed]
    return "logme" if "logme" in names else sorted(names)[0]


def _task_rows(data: EvalData, target: int, predictions: Predictions,
               rng: np.random.Generator) -> dict[str, dict[str, float]]:
    truth = data.scores[:, target]
    rows: dict[str, dict[str, float]] = {}
    for name, p in predictions.items():
        runs = p if isinstance(p, list) else [p]  # random probes: one prediction per repeat
        rows[name] = average_metrics([ranking_metrics(q, truth) for q in runs])
    draws = [ranking_metrics(rng.standard_normal(len(truth)), truth) for _ in range(RANDOM_DRAWS)]
    rows["random"] = average_metrics(draws)
    for method, matrix in (data.forward_scores or {}).items():
        if np.any(~np.isnan(matrix[:, target]) & ~np.isnan(truth)):
            rows[method] = ranking_metrics(matrix[:, target], truth)
    return rows


def _lodo(data: EvalData, seed: int, shots: int, probe: str, exclude_related: bool = False,
          fusion: _Fusion | None = None) -> tuple[PerTask, dict[str, dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    per_task: PerTask = {}
    spent: dict[str, dict[str, Any]] = {}
    for target, name in enumerate(data.tasks):
        truth = data.scores[:, target]
        if np.sum(~np.isnan(truth)) < 2:
            continue
        if exclude_related:
            assert data.related is not None  # evaluate() refuses exclude_related without it
            held = data.related[target]
        else:
            held = np.arange(len(data.tasks)) == target
        train = np.flatnonzero(~held)
        if len(train) < 2:
            raise ValueError(f"task {name!r}: fewer than 2 tasks are left to fit on once its related tasks "
                             f"are held out with it")
        zero_shot, space, placed, spent[name] = _zero_shot_predictions(data, train, target, seed, fusion,
                                                                       exclude_related)
        predictions: Predictions = zero_shot
        if shots:
            predictions = _with_observations(truth, zero_shot, space, placed, shots, probe, rng)
        per_task[name] = _task_rows(data, target, predictions, rng)
    return per_task, spent


def _with_observations(truth: np.ndarray, predictions: dict[str, np.ndarray], space: TransferSpace,
                       placed: TaskPlacement, shots: int, probe: str,
                       rng: np.random.Generator) -> dict[str, np.ndarray | list[np.ndarray]]:
    measured = np.flatnonzero(~np.isnan(truth))
    shots = min(shots, len(measured))
    out: dict[str, np.ndarray | list[np.ndarray]] = {}
    if probe == "top":
        for name, p in predictions.items():
            observed = measured[np.argsort(-p[measured], kind="stable")[:shots]]
            if name == "fennec":
                out[name] = space.predict(placed.features, placed.distances, observed=(observed, truth[observed]))
            else:
                out[name] = reorder_observed(p, observed, truth[observed])
        out["fennec_0shot"] = predictions["fennec"]
        return out
    # Random probes: the same draws for every method, averaged over repeats.
    draws = [rng.choice(measured, shots, replace=False) for _ in range(RANDOM_PROBE_REPEATS)]
    out["fennec_0shot"] = predictions["fennec"]
    for name, p in predictions.items():
        runs: list[np.ndarray] = []
        for observed in draws:
            if name == "fennec":
                runs.append(space.predict(placed.features, placed.distances, observed=(observed, truth[observed])))
            else:
                runs.append(reorder_observed(p, observed, truth[observed]))
        out[name] = runs
    return out


def _cold_model(data: EvalData, seed: int) -> PerTask:
    """Models held out in folds, each predicted from side information by a fit without its
    fold; every task's ranking of all models by those out-of-fold predictions is then scored
    (ranking the one or two models of a small zoo's fold among themselves would say little)."""
    rng = np.random.default_rng(seed)
    n_models: int
    n_tasks: int
    n_models, n_tasks = data.scores.shape
    folds = np.array_split(rng.permutation(n_models), min(COLD_MODEL_FOLDS, n_models))
    normalized = normalize_scores(data.scores, "gauss")
    methods = (["fennec"] if data.model_features is not None else []) + \
        (["type_mean"] if data.model_types is not None else [])
    predictions = {m: np.full((n_models, n_tasks), np.nan) for m in methods}
    for fold in folds:
        train = np.setdiff1d(np.arange(n_models), fold)
        if data.model_features is not None:
            predictions["fennec"][fold] = predict_cold_models(
                data.scores[train], data.model_features[train], data.model_features[fold], seed=seed)
        if data.model_types is not None:
            predictions["type_mean"][fold] = type_mean(normalized[train], data.model_types, train, fold)
    per_task: PerTask = {}
    for target, name in enumerate(data.tasks):
        truth = data.scores[:, target]
        if np.sum(~np.isnan(truth)) < 2:
            continue
        rows = {m: ranking_metrics(p[:, target], truth) for m, p in predictions.items()}
        rows["random"] = average_metrics([ranking_metrics(rng.standard_normal(n_models), truth)
                                   for _ in range(RANDOM_DRAWS)])
        per_task[name] = rows
    return per_task
