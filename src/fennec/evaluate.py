"""Evaluation protocols for model recommendation, with the baselines in the same run.

Protocols
---------
``lodo``        leave one task out: the task is new; each method ranks all models for it.
``kshot``       as ``lodo``, but ``shots`` scores on the new task are known: drawn at
                random (``probe="random"``, repeated over seeds) or the ``shots`` models
                the method itself ranked first (``probe="top"``), reported back.
``cold-model``  k-fold over models: the held-out models have no history and are
                known only by their side information; each task ranks them.

Metrics, per task and averaged over tasks: weighted Kendall tau exactly as the field
computes it (``scipy.stats.weightedtau(score, truth)[0]``, defaults), Kendall tau,
Pearson, top-1 regret (best score minus the score of the model ranked first) and
top-3 hit (the best model is among the three ranked first).

With a dozen tasks, a gap in mean weighted tau between two methods is often
smaller than its noise, so every result also holds ``paired``: for each other
method, fennec's weighted tau minus that method's over the tasks both ranked,
with its standard error and the count of tasks won and lost. Results on
several zoos (each its own leave-one-out) are pooled task by task with
:func:`pool_results`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import NearConstantInputWarning, kendalltau, pearsonr, weightedtau

from .recommend import identifier_like
from .taskspace import DescriptorEncoder, DistanceEmbedding
from .transfer import fit_transfer, normalize_scores, predict_cold_models

__all__ = ["EvalData", "METRICS", "evaluate", "paired_differences", "pool_results", "ranking_metrics",
           "related_tasks"]

METRICS = ("wtau", "kendall", "pearson", "regret", "top3")
NMF_RANK = 5  # the original Fennec recipe
RANDOM_DRAWS = 20
RANDOM_PROBE_REPEATS = 5
COLD_MODEL_FOLDS = 5


@dataclass
class EvalData:
    """Everything a protocol needs: the score matrix and optional side information."""

    scores: np.ndarray  # models x tasks, NaN where not measured
    models: list[str]
    tasks: list[str]
    model_features: np.ndarray | None = None  # models x p, numeric
    model_types: list[str] | None = None  # architecture family / model type per model
    task_features: np.ndarray | None = None  # tasks x q, numeric (distances already embedded)
    task_distances: np.ndarray | None = None  # tasks x tasks: proxy-descriptor or domain distances
    # Raw proxy descriptors (tasks x D) and the named numeric features beside them (tasks x k):
    # when set, every held-out fold embeds the descriptors from its training tasks only, as
    # fennec.fit does, and places the held-out task as fennec.rank does; task_features and
    # task_distances (computed from every task) then serve the pictures only.
    task_descriptors: np.ndarray | None = None
    task_numeric: np.ndarray | None = None
    forward_scores: dict[str, np.ndarray] | None = None  # method -> models x tasks, NaN where absent
    # tasks x tasks, True where two tasks share data (a class of the same dataset): with
    # exclude_related, a held-out task's related tasks leave the fit with it
    related: np.ndarray | None = None


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


def _average(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows], dtype=float)
        out[name] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    return out


def _reorder_observed(prediction, observed, observed_scores):
    """The observed models keep their group's predicted values, in measured order."""
    prediction = prediction.copy()
    values = np.sort(prediction[observed])[::-1]
    prediction[observed[np.argsort(-observed_scores, kind="stable")]] = values
    return prediction


def _nmf(matrix, rank, seed, iterations=500):
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


def _nmf_predict(train, train_features, target_features, seed):
    """Fennec's published recipe: NMF of rank 5; the new task's vector from its side information."""
    rank = min(NMF_RANK, min(train.shape))
    w, h = _nmf(train, rank, seed)
    if train_features is None or target_features is None:
        return w @ h.mean(1)
    # Ridge from task side information to the task's NMF coordinates.
    mean, spread = train_features.mean(0), train_features.std(0)
    spread[spread == 0] = 1.0
    x = (train_features - mean) / spread
    x1 = np.column_stack([np.ones(len(x)), x])
    coef = np.linalg.solve(x1.T @ x1 + np.diag([0.0] + [1.0] * x.shape[1]), x1.T @ h.T)
    target = np.concatenate([[1.0], (target_features - mean) / spread]) @ coef
    return w @ np.maximum(target, 0.0)


def _task_information(data: EvalData, train: np.ndarray, target: int):
    """(training tasks' features, their distances, the target's features, its distances to
    the training tasks), each None where the data has none."""
    if data.task_descriptors is not None:
        encoder = DescriptorEncoder.fit(data.task_descriptors[train])
        known, new = encoder.coordinates, encoder.transform(data.task_descriptors[target])
        if data.task_numeric is not None:
            known = np.column_stack([data.task_numeric[train], known])
            new = np.concatenate([data.task_numeric[target], new])
        return known, encoder.known_distances(), new, encoder.distances(data.task_descriptors[target])
    features, distances = data.task_features, data.task_distances
    return (None if features is None else features[train],
            None if distances is None else distances[np.ix_(train, train)],
            None if features is None else features[target],
            None if distances is None else distances[target, train])


def held_out_prediction(data: EvalData, target: int, seed: int = 0) -> np.ndarray:
    """fennec's prediction for task ``target`` from a fit on the other tasks (the ``lodo`` protocol)."""
    train = np.array([j for j in range(len(data.tasks)) if j != target])
    model, task_target, _ = _fit_without(data, train, target, seed)
    return model.predict(*task_target)


def _fit_without(data: EvalData, train: np.ndarray, target: int, seed: int):
    """fennec fitted on the ``train`` tasks; what is known of the target (its side information
    and its distances to the training tasks); the training tasks' side information."""
    task_train, distances_train, features_target, distances_target = _task_information(data, train, target)
    model = fit_transfer(data.scores[:, train], data.model_features, task_train, seed=seed,
                         task_distances=distances_train)
    return model, (features_target, distances_target), task_train


def _zero_shot_predictions(data: EvalData, train: np.ndarray, target: int, seed: int):
    scores = data.scores[:, train]
    model, task_target, task_train = _fit_without(data, train, target, seed)
    with warnings.catch_warnings():  # a model measured on none of the training tasks: NaN, not ranked
        warnings.simplefilter("ignore", RuntimeWarning)
        prior = np.nanmean(scores, 1)
        prior_std = np.nanmean(normalize_scores(scores, "z"), 1)
    out = {
        "fennec": model.predict(*task_target),
        "prior": prior,
        "prior_std": prior_std,
        "fennec_nmf": _nmf_predict(scores, task_train, task_target[0], seed),
    }
    return out, model, task_target


def _task_rows(data: EvalData, target: int, predictions: dict[str, np.ndarray], rng) -> dict:
    truth = data.scores[:, target]
    rows = {}
    for name, p in predictions.items():
        runs = p if isinstance(p, list) else [p]  # random probes: one prediction per repeat
        rows[name] = _average([ranking_metrics(q, truth) for q in runs])
    draws = [ranking_metrics(rng.standard_normal(len(truth)), truth) for _ in range(RANDOM_DRAWS)]
    rows["random"] = _average(draws)
    for method, matrix in (data.forward_scores or {}).items():
        if np.any(~np.isnan(matrix[:, target]) & ~np.isnan(truth)):
            rows[method] = ranking_metrics(matrix[:, target], truth)
    return rows


def related_tasks(rows: list[dict]) -> np.ndarray | None:
    """Which tasks share data, from each task's ``dataset`` and ``classes`` (comma-separated).

    Two tasks are related when they come from the same dataset and share a class, or one
    of them has no class list (the whole dataset); a task without a dataset is related to
    itself only. None when no task records a dataset: then nothing is known.
    """
    def meta(row):
        extra = row.get("extra") or {}
        dataset = row.get("dataset", extra.get("dataset"))
        classes = row.get("classes", extra.get("classes"))
        names = None if classes in (None, "") else {c.strip() for c in str(classes).split(",") if c.strip()}
        return dataset, names

    info = [meta(row) for row in rows]
    if all(dataset is None for dataset, _ in info):
        return None
    out = np.eye(len(rows), dtype=bool)
    for i, (dataset_i, classes_i) in enumerate(info):
        for j, (dataset_j, classes_j) in enumerate(info[:i]):
            if dataset_i is not None and dataset_i == dataset_j and \
                    (classes_i is None or classes_j is None or bool(classes_i & classes_j)):
                out[i, j] = out[j, i] = True
    return out


def _lodo(data: EvalData, seed: int, shots: int, probe: str, exclude_related: bool = False):
    rng = np.random.default_rng(seed)
    per_task = {}
    for target, name in enumerate(data.tasks):
        truth = data.scores[:, target]
        if np.sum(~np.isnan(truth)) < 2:
            continue
        held = data.related[target] if exclude_related else np.arange(len(data.tasks)) == target
        train = np.flatnonzero(~held)
        if len(train) < 2:
            raise ValueError(f"task {name!r}: fewer than 2 tasks are left to fit on once its related tasks "
                             f"are held out with it")
        predictions, model, task_target = _zero_shot_predictions(data, train, target, seed)
        if shots:
            predictions = _with_observations(data, truth, predictions, model, task_target, shots, probe, rng)
        per_task[name] = _task_rows(data, target, predictions, rng)
    return per_task


def _with_observations(data, truth, predictions, model, task_target, shots, probe, rng):
    measured = np.flatnonzero(~np.isnan(truth))
    shots = min(shots, len(measured))
    out = {}
    if probe == "top":
        for name, p in predictions.items():
            observed = measured[np.argsort(-p[measured], kind="stable")[:shots]]
            if name == "fennec":
                out[name] = model.predict_with_observations(observed, truth[observed], *task_target)
            else:
                out[name] = _reorder_observed(p, observed, truth[observed])
        out["fennec_0shot"] = predictions["fennec"]
        return out
    # Random probes: the same draws for every method, averaged over repeats.
    draws = [rng.choice(measured, shots, replace=False) for _ in range(RANDOM_PROBE_REPEATS)]
    out["fennec_0shot"] = predictions["fennec"]
    for name, p in predictions.items():
        runs = []
        for observed in draws:
            if name == "fennec":
                runs.append(model.predict_with_observations(observed, truth[observed], *task_target))
            else:
                runs.append(_reorder_observed(p, observed, truth[observed]))
        out[name] = runs
    return out


def _cold_model(data: EvalData, seed: int):
    """Models held out in folds, each predicted from side information by a fit without its
    fold; every task's ranking of all models by those out-of-fold predictions is then scored
    (ranking the one or two models of a small zoo's fold among themselves would say little)."""
    rng = np.random.default_rng(seed)
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
            predictions["type_mean"][fold] = _type_mean(normalized[train], data.model_types, train, fold)
    per_task = {}
    for target, name in enumerate(data.tasks):
        truth = data.scores[:, target]
        if np.sum(~np.isnan(truth)) < 2:
            continue
        rows = {m: ranking_metrics(p[:, target], truth) for m, p in predictions.items()}
        rows["random"] = _average([ranking_metrics(rng.standard_normal(n_models), truth)
                                   for _ in range(RANDOM_DRAWS)])
        per_task[name] = rows
    return per_task


def _type_mean(normalized_train, model_types, train, held_out):
    """Mean normalised score of the training models that share each held-out model's type."""
    types_train = np.array([model_types[i] for i in train])
    with np.errstate(invalid="ignore"):
        overall = np.nanmean(normalized_train, 0)
        out = np.empty((len(held_out), normalized_train.shape[1]))
        for row, model in enumerate(held_out):
            same = types_train == model_types[model]
            out[row] = np.nanmean(normalized_train[same], 0) if same.any() and model_types[model] else overall
    return np.where(np.isnan(out), overall, out)


def evaluate(data: EvalData, protocol: str = "lodo", *, shots: int = 3, probe: str = "top",
             seed: int = 0, exclude_related: bool = False) -> dict:
    """Runs one protocol; returns ``{"mean": {method: metrics}, "tasks": {task: {method: metrics}}}``.

    ``exclude_related`` (lodo, kshot): every task related to the held-out one
    (``data.related``: sharing a class of the same dataset) is held out of the fit
    with it, so the history holds nothing of the new task's classes.
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
    if protocol == "cold-model":
        if data.model_features is None and data.model_types is None:
            raise ValueError("the cold-model protocol needs model side information (--models)")
        per_task = _cold_model(data, seed)
    else:
        per_task = _lodo(data, seed, shots if protocol == "kshot" else 0, probe, exclude_related)
    return {"protocol": protocol, "shots": shots if protocol == "kshot" else 0,
            "probe": probe if protocol == "kshot" else None, "seed": seed, "exclude_related": exclude_related,
            "n_models": len(data.models), **_summary(per_task)}


def _summary(per_task: dict) -> dict:
    methods = sorted({m for rows in per_task.values() for m in rows})
    mean = {m: _average([rows[m] for rows in per_task.values() if m in rows]) for m in methods}
    return {"n_tasks": len(per_task), "mean": mean, "paired": paired_differences(per_task), "tasks": per_task}


def paired_differences(per_task: dict, method: str = "fennec", metric: str = "wtau") -> dict:
    """``method``'s ``metric`` minus every other method's, over the tasks where both are defined.

    Per other method: ``diff`` (the mean difference), ``se`` (its standard error,
    the tasks' spread over the square root of their count; NaN with one task),
    ``n`` tasks, and ``wins`` / ``losses`` (tasks where ``method`` is above /
    below). A ``diff`` within about two ``se`` of 0 is a gap these tasks do not
    establish.
    """
    others = sorted({m for rows in per_task.values() for m in rows} - {method})
    out = {}
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


def pool_results(results: dict[str, dict]) -> dict:
    """Results of one protocol on several zoos (name -> :func:`evaluate`'s result) as one.

    Each zoo was evaluated on its own (its tasks held out from its own history);
    the pooled ``mean`` and ``paired`` weigh every task of every zoo alike, tasks
    are named ``zoo/task``, and ``zoos`` keeps each zoo's own means.
    """
    if not results:
        raise ValueError("pool_results: no results to pool")
    keys = ("protocol", "shots", "probe", "seed", "exclude_related")
    settings = {tuple(str(r.get(k)) for k in keys) for r in results.values()}
    if len(settings) != 1:
        raise ValueError(f"pool_results: the results differ in protocol, shots, probe, seed or exclude_related: "
                         f"{sorted(settings)}")
    first = next(iter(results.values()))
    per_task = {f"{name}/{task}": rows for name, r in results.items() for task, rows in r["tasks"].items()}
    return {**{k: first.get(k) for k in keys},
            "n_models": max(r["n_models"] for r in results.values()),
            "zoos": {name: {"n_tasks": r["n_tasks"], "n_models": r["n_models"], "mean": r["mean"],
                            "paired": r["paired"]} for name, r in results.items()},
            **_summary(per_task)}


# ---------------------------------------------------------------------------
# Loading an evaluation from files (the `fennec eval` command line).

FORWARD_METHOD_NAMES = {"log_me": "logme", "logme": "logme", "reg_h_score": "hscore_reg",
                        "h_score": "hscore", "leep": "leep", "nleep": "nleep", "nce": "nce",
                        "sfda": "sfda", "parc": "parc", "gbc": "gbc", "transrate": "transrate"}
DISTANCE_EMBEDDING_DIMS = 2


def _forward_method_name(raw: str) -> str:
    short = raw.strip().split(".")[-1].lower()
    return FORWARD_METHOD_NAMES.get(short, short)


def read_forward_scores(path, models: list[str], tasks: list[str]) -> dict[str, np.ndarray]:
    """Forward-pass transferability scores from a long CSV: model, task, method, score.

    Column names may also be TransferGraph's (``target_dataset`` for the task,
    ``metric`` for the method). Repeated (model, task, method) rows are averaged.
    """
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []

        def column(*names):
            for name in names:
                if name in header:
                    return name
            raise ValueError(f"{path}: line 1: none of the columns {names} is present")

        model_col, task_col = column("model", "model_name"), column("task", "target_dataset")
        method_col, score_col = column("method", "metric"), column("score")
        model_at = {m: i for i, m in enumerate(models)}
        task_at = {t: j for j, t in enumerate(tasks)}
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        malformed: list[int] = []
        for line, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                malformed.append(line)  # a row with too many or too few fields
                continue
            i, j = model_at.get(row[model_col]), task_at.get(row[task_col])
            if i is None or j is None:
                continue
            try:
                value = float(row[score_col])
            except ValueError:
                raise ValueError(f"{path}: line {line}: score {row[score_col]!r} is not a number") from None
            if not np.isfinite(value):
                continue
            method = _forward_method_name(row[method_col])
            sums.setdefault(method, np.zeros((len(models), len(tasks))))[i, j] += value
            counts.setdefault(method, np.zeros((len(models), len(tasks))))[i, j] += 1
    if malformed:
        import warnings

        warnings.warn(f"{path}: skipped {len(malformed)} row(s) whose number of fields does not match "
                      f"the header (first on line {malformed[0]})", stacklevel=2)
    with np.errstate(invalid="ignore"):
        return {m: np.where(counts[m] > 0, sums[m] / counts[m], np.nan) for m in sums}


def embed_distances(distance: np.ndarray, dims: int = DISTANCE_EMBEDDING_DIMS) -> np.ndarray:
    """Classical multidimensional scaling: coordinates whose distances follow ``distance``."""
    return DistanceEmbedding.fit(distance, dims).coordinates


def load_eval_data(history_path, *, wide=False, model_col="model", task_col="task", score_col="score",
                   models_path=None, model_key="model", type_col=None, tasks_path=None, task_key="task",
                   task_distance_path=None, forward_scores_path=None, exclude_tasks=()) -> EvalData:
    """Reads a history and its optional side information into an :class:`EvalData`."""
    from .history import read_distance_matrix, read_history, read_model_table, read_task_table

    history = read_history(history_path, wide=wide, model_col=model_col, task_col=task_col,
                           score_col=score_col)
    if exclude_tasks:
        history = history.drop_tasks(exclude_tasks)
    models, tasks = list(history.models), list(history.tasks)
    data = EvalData(history.matrix(), models, tasks)
    if models_path is not None:
        table = read_model_table(models_path, key=model_key)
        kept = {name: values for name, values in table.categorical.items() if not identifier_like(values)}
        table = type(table)(table.keys, table.numeric, kept, key_name=table.key_name)
        data.model_features, _ = table.design_matrix(models)
        aligned = table.align(models)
        type_col = type_col or next((c for c in ("model_type", "family", "architecture", "architectures")
                                     if c in aligned.categorical), None)
        if type_col is not None:
            if type_col not in aligned.categorical:
                raise ValueError(f"{models_path}: no categorical column {type_col!r} for the model type")
            data.model_types = list(aligned.categorical[type_col])
    blocks = []
    if tasks_path is not None:
        features, _ = read_task_table(tasks_path, key=task_key).design_matrix(tasks)
        blocks.append(features)
    if task_distance_path is not None:
        names, distance = read_distance_matrix(task_distance_path)
        at = {n: i for i, n in enumerate(names)}
        absent = [t for t in tasks if t not in at]
        if absent:
            raise ValueError(f"{task_distance_path}: no distances for task(s) {absent}")
        index = [at[t] for t in tasks]
        data.task_distances = distance[np.ix_(index, index)]
        blocks.append(embed_distances(data.task_distances))
    if blocks:
        data.task_features = np.column_stack(blocks)
    if forward_scores_path is not None:
        data.forward_scores = read_forward_scores(forward_scores_path, models, tasks)
    return data


GROUND_TRUTH_KINDS = ("finetune", "linear_probe")


def load_zoo_eval_data(zoo, *, kind: str | None = None, exclude_tasks=(), embeddings: bool = True) -> EvalData:
    """A zoo's history and side information as an :class:`EvalData`.

    ``kind`` is the history kind taken as the truth (default: ``finetune``, else
    ``linear_probe``); every other kind stored (``logme``, ``leep``...) is a
    forward-pass score and becomes a baseline under its own name. Side
    information is what :func:`fennec.fit` uses: model metadata, archi2vec
    embeddings (unless ``embeddings=False``), task size and class count, and the
    proxy descriptors' coordinates.
    """
    from .recommend import DESCRIPTOR_PREFIX, _task_features, model_side_information

    kinds = zoo.history_kinds()
    if kind is None:
        kind = next((k for k in GROUND_TRUTH_KINDS if k in kinds), None)
        if kind is None:
            raise ValueError(f"{zoo.path}: no {' or '.join(GROUND_TRUTH_KINDS)} results to evaluate against "
                             f"(kinds stored: {kinds}); pass kind=")
    elif kind not in kinds:
        raise ValueError(f"{zoo.path}: no {kind!r} results (kinds stored: {kinds})")
    history = zoo.history(kind)
    if exclude_tasks:
        history = history.drop_tasks(exclude_tasks)
    models, tasks = list(history.models), list(history.tasks)
    data = EvalData(history.matrix(), models, tasks)
    data.model_features, _ = model_side_information(zoo, models, embeddings=embeddings)
    families = {row["id"]: row.get("family") for row in zoo.models()}
    if all(families.get(m) for m in models):
        data.model_types = [families[m] for m in models]
    rows = {row["id"]: row for row in zoo.tasks()}
    data.related = related_tasks([rows.get(t, {"id": t}) for t in tasks])  # None: exclude_related refuses
    data.task_features, names, encoder_state = _task_features(zoo, tuple(tasks))
    if encoder_state:
        data.task_distances = DescriptorEncoder.from_state(encoder_state, DESCRIPTOR_PREFIX).known_distances()
        descriptors = zoo.task_descriptors()
        data.task_descriptors = np.stack([descriptors[t] for t in tasks]).astype(float)
        numeric = [i for i, name in enumerate(names) if not name.startswith("descriptor_")]
        data.task_numeric = data.task_features[:, numeric] if numeric else None
    forward = {}
    for other in kinds:
        if other == kind or other in GROUND_TRUTH_KINDS:
            continue
        scores = zoo.history(other)
        matrix = np.full((len(models), len(tasks)), np.nan)
        at_model = {m: i for i, m in enumerate(models)}
        at_task = {t: j for j, t in enumerate(tasks)}
        for i, j, value in zip(scores.model_index, scores.task_index, scores.scores):
            m, t = scores.models[i], scores.tasks[j]
            if m in at_model and t in at_task:
                matrix[at_model[m], at_task[t]] = value
        forward[_forward_method_name(other)] = matrix
    data.forward_scores = forward or None
    return data


def format_table(result: dict) -> str:
    """A readable table of the mean metrics, best weighted tau first."""
    mean = result["mean"]
    lines = [f"protocol {result['protocol']}"
             + (f", {result['shots']} shots, probe {result['probe']}" if result["protocol"] == "kshot" else "")
             + f": {result['n_tasks']} tasks, {result['n_models']} models"
             + (", related tasks held out with each" if result.get("exclude_related") else ""),
             f"{'method':<14}" + "".join(f"{m:>9}" for m in METRICS)]
    paired = result.get("paired", {})
    if paired:
        lines[-1] += "   fennec-wtau +-se (won/lost)"
    for method in sorted(mean, key=lambda m: -np.nan_to_num(mean[m]["wtau"], nan=-9)):
        line = f"{method:<14}" + "".join(f"{mean[method][m]:>9.4f}" for m in METRICS)
        if method in paired:
            gap = paired[method]
            line += f"   {gap['diff']:+.3f} +-{gap['se']:.3f} ({gap['wins']}/{gap['losses']})"
        lines.append(line)
    for name, zoo in result.get("zoos", {}).items():
        wtau = {m: np.nan_to_num(v["wtau"], nan=-9.0) for m, v in zoo["mean"].items() if m != "random"}
        ours = f"fennec {wtau.pop('fennec'):.4f}, " if "fennec" in wtau else ""
        best = max(wtau, key=wtau.get)
        lines.append(f"  {name}: {zoo['n_tasks']} tasks, {ours}best other {best} {wtau[best]:.4f}")
    return "\n".join(lines)
