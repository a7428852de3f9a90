"""Fitting a zoo's transfer space and ranking its models for a new task.

``fit(zoo)`` learns the transfer space from the zoo's history and side
information and stores it as the zoo's fitted state (memory-mapped arrays,
switched atomically). ``rank(zoo, task)`` scores every model with the core's
fused top-k and returns the best ``k`` joined with their metadata.
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .transfer import _update_with_observations, fit_transfer, predict_cold_models
from .zoo import Zoo, ZooError

__all__ = ["Ranking", "Ranker", "fit", "rank"]

TASK_NUMERIC_FEATURES = ("n_classes", "n_train")  # log10 of each, when every known task has it
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}


def _task_features(zoo: Zoo, tasks: tuple[str, ...]):
    rows = {row["id"]: row for row in zoo.tasks()}
    names = [f for f in TASK_NUMERIC_FEATURES
             if tasks and all(rows.get(t, {}).get(f) not in (None, 0) for t in tasks)]
    if not names:
        return None, []
    return np.log10(np.array([[float(rows[t][f]) for f in names] for t in tasks])), names


def fit(zoo: Zoo, *, seed: int = 0, kind: str = "finetune") -> dict:
    """Fits the transfer space on the zoo's history and stores it; returns the fit's summary."""
    history = zoo.history(kind)
    if len(history) == 0:
        raise ZooError(f"{zoo.path}: the zoo has no {kind!r} history to fit")
    if history.n_tasks < 2:
        raise ZooError(f"{zoo.path}: fitting needs results on at least 2 tasks, the zoo has {history.n_tasks}")
    matrix = history.matrix()
    model_features, model_columns = zoo.model_table().design_matrix(history.models)
    if model_features.shape[1] == 0:
        model_features = None
    task_features, task_columns = _task_features(zoo, history.tasks)
    model = fit_transfer(matrix, model_features, task_features, seed=seed)

    vectors = model.model_vectors.astype(np.float64)
    measured = (~np.isnan(matrix)).sum(1)
    if model_features is not None and np.any(measured == 0) and np.any(measured > 0):
        # Models with no history: their prior comes from side information alone.
        cold = predict_cold_models(matrix[measured > 0], model_features[measured > 0],
                                   model_features[measured == 0], seed=seed)
        vectors[measured == 0, 0] = cold.mean(1)

    # Map normalised predictions back to the history's scale (pooled least squares),
    # and each model's spread around its prior as its uncertainty.
    seen = ~np.isnan(matrix)
    g = model.normalized[seen]
    slope, intercept = np.polyfit(g, matrix[seen], 1) if np.ptp(g) > 0 else (0.0, float(np.nanmean(matrix)))
    residual = np.where(seen, model.normalized - vectors[:, :1], np.nan)
    with np.errstate(invalid="ignore"):
        spread = np.sqrt(np.nanmean(residual**2, 1))
    state = {
        "model_vectors": np.ascontiguousarray(vectors, dtype=np.float32),
        "model_ids": np.array(history.models, dtype=str),
        "normalized": np.ascontiguousarray(model.normalized, dtype=np.float32),
        "spread": np.nan_to_num(spread, nan=float(np.nanmean(spread)) if np.any(~np.isnan(spread)) else 0.0),
    }
    if model.interaction is not None:
        state["interaction"] = model.interaction
        state["task_mean"] = model.task_mean
        state["task_scale"] = model.task_scale
    meta = {
        "kind": kind, "seed": seed, "normalization": model.normalization, "ridge": model.ridge,
        "sharpness": model.sharpness, "slope": float(slope), "intercept": float(intercept),
        "model_columns": model_columns, "task_columns": task_columns,
        "tasks": list(history.tasks), "n_models": history.n_models, "choices": model.choices,
    }
    version = zoo.write_fitted(state, meta)
    return {"version": version, **{k: meta[k] for k in ("normalization", "ridge", "sharpness", "n_models")},
            "n_tasks": history.n_tasks, "model_columns": len(model_columns), "task_columns": task_columns}


@dataclass
class Ranking:
    """The ranked models, best first, and what the ranking was based on."""

    rows: list[dict]
    basis: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        lines = [f"ranked by {self.basis}"] + [f"note: {n}" for n in self.notes]
        lines.append(f"{'rank':>4}  {'model':<40} {'score':>9} {'+/-':>7}")
        for row in self.rows:
            lines.append(f"{row['rank']:>4}  {row['model']:<40} {row['score']:>9.4f} {row['uncertainty']:>7.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"basis": self.basis, "notes": self.notes, "rows": self.rows}


class Ranker:
    """A zoo's fitted state held in memory, reloaded when the zoo is refitted.

    Each call reads the state once (one consistent version) and never sees half
    of a refit. Safe to share between threads.
    """

    def __init__(self, zoo: Zoo):
        self.zoo = zoo
        self._lock = threading.Lock()
        self._version = None
        self._loaded = None

    def _state(self):
        version = self.zoo.fitted_version()
        if version is None:
            raise ZooError(f"{self.zoo.path}: the zoo is not fitted yet (run `fennec zoo fit` or fennec.fit)")
        with self._lock:
            if version != self._version:
                state, meta = self.zoo.read_fitted()
                ids = [str(x) for x in state["model_ids"]]
                self._loaded = (state, meta, ids, {m: i for i, m in enumerate(ids)})
                self._version = version
            return self._loaded

    def rank(self, task: Mapping[str, float] | None = None, *, k: int = 10,
             where: Mapping[str, object] | Callable[[dict], bool] | None = None,
             observed: Mapping[str, float] | None = None) -> Ranking:
        state, meta, ids, index = self._state()
        vectors = state["model_vectors"]
        notes = []
        task_vector, basis = self._task_vector(state, meta, task, notes)
        mask = self._mask(where, ids, index) if where is not None else None
        known = []
        if observed:
            for model, score in observed.items():
                if model not in index:
                    raise ValueError(f"observed: unknown model {model!r}")
                if not math.isfinite(float(score)):
                    raise ValueError(f"observed: the score of {model!r} is not finite")
                known.append((index[model], float(score)))
            rows = np.array([i for i, _ in known])
            base = vectors.astype(np.float64) @ task_vector.astype(np.float64)
            prediction = _update_with_observations(base, np.asarray(state["normalized"], dtype=np.float64),
                                                   rows, np.array([s for _, s in known]), meta["sharpness"])
            scores, order = kernels.topk(prediction.astype(np.float32)[:, None], [1.0], k, mask=mask)
            basis += f" and {len(known)} observed score(s)"
        else:
            scores, order = kernels.topk(vectors, task_vector, k, mask=mask)
        measured = {ids[i]: score for i, score in known} if observed else {}
        metadata = self.zoo.models_by_id([ids[i] for i in order])
        rows = []
        for rank_, (i, score) in enumerate(zip(order.tolist(), scores.tolist()), start=1):
            info = metadata.get(ids[i], {})
            rows.append({"rank": rank_, "model": ids[i],
                         "score": meta["intercept"] + meta["slope"] * score,
                         "uncertainty": abs(meta["slope"]) * float(state["spread"][i]),
                         **{key: value for key, value in info.items()
                            if key not in ("id", "extra") and value is not None},
                         **info.get("extra", {})})
            if ids[i] in measured:
                rows[-1]["observed"] = measured[ids[i]]
        return Ranking(rows, basis, notes)

    def _task_vector(self, state, meta, task, notes):
        dim = state["model_vectors"].shape[1]
        prior = np.zeros(dim, dtype=np.float32)
        prior[0] = 1.0
        if not task:
            return prior, "the prior (no information about the task)"
        columns = meta["task_columns"]
        if "interaction" not in state:
            notes.append("the fitted zoo has no task side information; task features are not used")
            return prior, "the prior (no information about the task)"
        missing = [c for c in columns if c not in task]
        if missing:
            raise ValueError(f"task: missing feature(s) {missing}; this zoo was fitted with {columns}")
        values = []
        for c in columns:
            value = float(task[c])
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"task: {c} must be a positive number, got {task[c]!r}")
            values.append(math.log10(value))
        t = (np.array(values) - state["task_mean"]) / state["task_scale"]
        interaction = np.asarray(state["interaction"])
        weights = interaction[1:].reshape(dim - 1, -1)
        return np.concatenate([[interaction[0]], weights @ t]).astype(np.float32), "task features"

    def _mask(self, where, ids, index):
        rows = self.zoo.models()
        keep = np.zeros(len(ids), dtype=bool)
        for row in rows:
            i = index.get(row["id"])
            if i is not None and _matches(row, where):
                keep[i] = True
        return ~keep


def _matches(row: dict, where) -> bool:
    if callable(where):
        return bool(where(row))
    fields = {**row.get("extra", {}), **row}
    for key, condition in where.items():
        if key not in fields:
            raise ValueError(f"where: unknown metadata field {key!r}; fields are {sorted(fields)}")
        value = fields[key]
        if isinstance(condition, tuple) and len(condition) == 2 and condition[0] in _OPERATORS:
            if value is None or not _OPERATORS[condition[0]](value, condition[1]):
                return False
        elif isinstance(condition, (list, set, frozenset)):
            if value not in condition:
                return False
        elif value != condition:
            return False
    return True


_RANKERS: dict[str, Ranker] = {}
_RANKERS_LOCK = threading.Lock()


def rank(zoo: Zoo, task: Mapping[str, float] | None = None, *, k: int = 10, where=None,
         observed: Mapping[str, float] | None = None) -> Ranking:
    """Ranks the zoo's models for a task described by features, observed scores, or nothing.

    ``where`` filters on model metadata: ``{"family": "resnet"}``, a list of allowed
    values, ``("<=", 30e6)`` comparisons, or a callable taking the model's row.
    """
    key = str(zoo.path)
    with _RANKERS_LOCK:
        ranker = _RANKERS.get(key)
        if ranker is None or ranker.zoo is not zoo:
            ranker = _RANKERS[key] = Ranker(zoo)
    return ranker.rank(task, k=k, where=where, observed=observed)
