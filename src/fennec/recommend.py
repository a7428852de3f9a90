"""Fitting a zoo's transfer space and ranking its models for a new task.

``fit(zoo)`` learns the transfer space from the zoo's history and side
information and stores it as the zoo's fitted state (memory-mapped arrays,
switched atomically). ``rank(zoo, task)`` scores every model with the core's
fused top-k and returns the best ``k`` joined with their metadata.
"""

from __future__ import annotations

import copy
import math
import operator
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import kernels
from .transfer import _update_with_observations, cold_ridge_strength as _choose_cold_ridge_for
from .transfer import fit_transfer, predict_cold_models, task_vector
from .taskspace import DescriptorEncoder
from .zoo import POINTER_NAME, Zoo, ZooError

__all__ = ["Ranking", "Ranker", "fit", "rank"]

TASK_NUMERIC_FEATURES = ("n_classes", "n_train")  # log10 of each, when every known task has it
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}


DESCRIPTOR_PREFIX = "task_descriptor_"
EMBEDDING_DIMS = 3  # archi2vec embeddings enter the transfer space as this many principal components


def model_side_information(zoo: Zoo, models, *, embeddings: bool = True):
    """The models' numeric side information and its column names (``None, []`` when there is none).

    Metadata columns through the zoo's design matrix, leaving out categorical
    columns that merely name each model; with ``embeddings``, and when every model
    has an architecture embedding, its first principal components over the zoo.
    """
    table = zoo.model_table()
    kept = {name: values for name, values in table.categorical.items() if not identifier_like(values)}
    table = type(table)(table.keys, table.numeric, kept, key_name=table.key_name)
    blocks, columns = [], []
    if len(table):
        design, names = table.design_matrix(models)
        if design.shape[1]:
            blocks.append(design)
            columns += names
    stored = zoo.model_embeddings() if embeddings else {}
    if stored and all(m in stored for m in models) and len(models) > EMBEDDING_DIMS:
        x = np.stack([stored[m] for m in models]).astype(np.float64)
        x -= x.mean(0)
        u, sv, _ = np.linalg.svd(x, full_matrices=False)
        dims = int(min(EMBEDDING_DIMS, np.sum(sv > 1e-9 * max(sv[0], 1e-300))))
        if dims:
            blocks.append(u[:, :dims] * sv[:dims])
            columns += [f"archi2vec_{i}" for i in range(dims)]
    if not blocks:
        return None, []
    return np.column_stack(blocks), columns


def identifier_like(values) -> bool:
    """A column whose values are mostly unique names identifies rows; it is not a category.
    """
    present = [v for v in values if v]
    return len(set(present)) > max(2, 0.2 * len(values))


def _task_features(zoo: Zoo, tasks: tuple[str, ...]):
    """The known tasks' side information: log10 of size and class count where every task has
    them, and coordinates of their proxy descriptors where every task has one."""
    rows = {row["id"]: row for row in zoo.tasks()}
    names = [f for f in TASK_NUMERIC_FEATURES
             if tasks and all(rows.get(t, {}).get(f) not in (None, 0) for t in tasks)]
    blocks = [np.log10(np.array([[float(rows[t][f]) for f in names] for t in tasks]))] if names else []
    encoder_state = {}
    descriptors = zoo.task_descriptors()
    if len(tasks) >= 3 and all(t in descriptors for t in tasks) and \
            len({descriptors[t].shape for t in tasks}) == 1:
        encoder = DescriptorEncoder.fit(np.stack([descriptors[t] for t in tasks]))
        blocks.append(encoder.coordinates)
        names += [f"descriptor_{i}" for i in range(encoder.coordinates.shape[1])]
        encoder_state = encoder.to_state(DESCRIPTOR_PREFIX)
    if not blocks:
        return None, [], {}
    return np.column_stack(blocks), names, encoder_state


def fit(zoo: Zoo, *, seed: int = 0, kind: str | None = None, fold_in: bool = False) -> dict:
    """Fits the transfer space on the zoo's history and stores it; returns the fit's summary.

    ``kind``: the results to learn from (default ``finetune``, else ``linear_probe``).

    ``fold_in=True`` folds results and models added since the last fit into the
    space with that fit's choices (ridge strengths, sharpness) kept, skipping the
    inner cross-validation that a full fit runs; it falls back to a full fit, and
    says so in the summary, when there is no earlier fit of this kind or the side
    information's columns changed.
    """
    if kind is None:
        kinds = zoo.history_kinds()
        kind = next((k for k in ("finetune", "linear_probe") if k in kinds), "finetune")
    history = zoo.history(kind)
    if len(history) == 0:
        raise ZooError(f"{zoo.path}: the zoo has no {kind!r} history to fit")
    if history.n_tasks < 2:
        raise ZooError(f"{zoo.path}: fitting needs results on at least 2 tasks, the zoo has {history.n_tasks}")
    matrix = history.matrix()
    model_features, model_columns = model_side_information(zoo, history.models)
    task_features, task_columns, encoder_state = _task_features(zoo, history.tasks)
    distances = None
    if encoder_state:
        distances = DescriptorEncoder.from_state(encoder_state, DESCRIPTOR_PREFIX).known_distances()
    previous, refit = _previous_choices(zoo, kind, model_columns, task_columns) if fold_in else (None, "full")
    model = fit_transfer(matrix, model_features, task_features, task_distances=distances, seed=seed,
                         choices=None if previous is None else {"ridge": previous["ridge"],
                                                                "sharpness": previous["sharpness"],
                                                                "bandwidth": previous.get("bandwidth")})

    vectors = model.model_vectors.astype(np.float64)
    measured = (~np.isnan(matrix)).sum(1)
    cold_ridge = None
    if model_features is not None and np.any(measured > 0):
        # Chosen even when every model has results, so that a model added later folds in.
        cold_ridge = previous.get("cold_ridge") if previous is not None else None
        if cold_ridge is None:
            cold_ridge = _choose_cold_ridge_for(matrix[measured > 0], model_features[measured > 0], seed=seed)
    if model_features is not None and np.any(measured == 0) and np.any(measured > 0):
        # Models with no history: their prior comes from side information alone.
        cold = predict_cold_models(matrix[measured > 0], model_features[measured > 0],
                                   model_features[measured == 0], seed=seed, ridge=cold_ridge)
        vectors[measured == 0, 0] = cold.mean(1)

    # Map normalised predictions back to the history's scale (pooled least squares),
    # and each model's spread around its prior as its uncertainty.
    seen = ~np.isnan(matrix)
    g = model.normalized[seen]
    slope, intercept = np.polyfit(g, matrix[seen], 1) if np.ptp(g) > 0 else (0.0, float(np.nanmean(matrix)))
    residual = np.where(seen, model.normalized - vectors[:, :1], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt((residual**2).sum(1) / seen.sum(1))  # NaN for a model with no results
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
    if model.neighbour_basis is not None:
        state["neighbour_basis"] = model.neighbour_basis
    if model.interaction is not None or model.neighbour_basis is not None:
        state.update(encoder_state)
    meta = {
        "kind": kind, "seed": seed, "normalization": model.normalization, "ridge": model.ridge,
        "sharpness": model.sharpness, "bandwidth": model.bandwidth, "slope": float(slope),
        "intercept": float(intercept),
        "model_columns": model_columns, "task_columns": task_columns,
        "tasks": list(history.tasks), "n_models": history.n_models, "choices": model.choices,
        "cold_ridge": cold_ridge, "refit": refit,
    }
    version = zoo.write_fitted(state, meta)
    return {"version": version, **{k: meta[k] for k in ("normalization", "ridge", "sharpness", "bandwidth", "n_models",
                                                       "refit")},
            "n_tasks": history.n_tasks, "model_columns": len(model_columns), "task_columns": task_columns}


def _previous_choices(zoo: Zoo, kind: str, model_columns, task_columns):
    """The last fit's choices when they still apply to this history, and what kind of fit runs."""
    if zoo.fitted_version() is None:
        return None, "full (no earlier fit to fold into)"
    _, meta = zoo.read_fitted()
    if meta.get("kind") != kind:
        return None, f"full (the earlier fit was of {meta.get('kind')!r} results)"
    if list(meta.get("model_columns", [])) != list(model_columns) or \
            list(meta.get("task_columns", [])) != list(task_columns):
        return None, "full (the side information's columns changed since the earlier fit)"
    return meta, "fold-in"


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


class _Fitted(tuple):
    """``(state, meta, ids, index)`` of one fitted version; ``version`` says which, and
    ``pointer`` is the (inode, mtime, size) of the pointer file it was read under."""

    version: int
    pointer: tuple | None


class RankPlan(NamedTuple):
    """A ranking up to the scan (see :meth:`Ranker.plan`)."""

    fitted: _Fitted
    vectors: np.ndarray
    query: np.ndarray
    k: int
    mask: np.ndarray | None
    basis: str
    notes: list[str]
    measured: dict[str, float]


class Ranker:
    """A zoo's fitted state held in memory, reloaded when the zoo is refitted.

    Each call reads the state once (one consistent version) and never sees half
    of a refit. The models' metadata is read once and reread only after the
    zoo's database changed; ``where`` masks are kept per fitted version and
    metadata. The zoo's SQLite connection belongs to the thread that opened it,
    so use a Ranker from that thread (one Zoo and one Ranker per thread).
    """

    MASK_CACHE_SIZE = 64

    def __init__(self, zoo: Zoo):
        self.zoo = zoo
        self._lock = threading.Lock()
        self._loaded: _Fitted | None = None
        self._catalog: _Catalog | None = None
        self._pointer_path = os.fspath(zoo.path / POINTER_NAME)

    @property
    def version(self) -> int | None:
        """The fitted version held in memory (None before the first ranking)."""
        loaded = self._loaded
        return None if loaded is None else loaded.version

    def _state(self) -> _Fitted:
        # A refit replaces the pointer file by a rename (a new inode), so an unchanged
        # stat means an unchanged version, for a few microseconds instead of a read.
        try:
            stat = os.stat(self._pointer_path)
            pointer = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            pointer = None
        loaded = self._loaded
        if loaded is not None and pointer is not None and loaded.pointer == pointer:
            return loaded
        version = self.zoo.fitted_version()
        if version is None:
            raise ZooError(f"{self.zoo.path}: the zoo is not fitted yet (run `fennec zoo fit` or fennec.fit)")
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.version != version:
                loaded = self._loaded = self._read_fitted(version, pointer)
            elif loaded.pointer != pointer:
                loaded = self._loaded = _Fitted(loaded)
                loaded.version, loaded.pointer = version, pointer
            return loaded

    def _read_fitted(self, version: int, pointer) -> _Fitted:
        # Versions only grow, so equal pointer reads before and after mean the
        # arrays read in between are that version's.
        for _ in range(5):
            state, meta = self.zoo.read_fitted()
            after = self.zoo.fitted_version()
            if after == version:
                ids = [str(x) for x in state["model_ids"]]
                fitted = _Fitted((state, meta, ids, {m: i for i, m in enumerate(ids)}))
                fitted.version, fitted.pointer = version, pointer
                return fitted
            pointer = None  # read under a later pointer: check it again next time
            if after is None:
                break
            version = after
        raise ZooError(f"{self.zoo.path}: the fitted state kept changing while being read; try again")

    def _metadata(self, ids: list[str] | None) -> _Catalog:
        """The models' metadata, aligned with the fitted ``ids`` (when given); reread when the
        database changed (SQLite's data_version counts other connections' commits, total_changes this one's)."""
        con = self.zoo._con
        signal = (con.execute("PRAGMA data_version").fetchone()[0], con.total_changes)
        catalog = self._catalog
        if catalog is None or catalog.signal != signal:
            with self._lock:
                catalog = self._catalog
                if catalog is None or catalog.signal != signal:
                    catalog = self._catalog = _Catalog(signal, self.zoo.models(), self.MASK_CACHE_SIZE)
        if ids is not None:
            catalog.align(ids)
        return catalog

    def rank(self, task: Mapping[str, float] | None = None, *, k: int = 10,
             where: Mapping[str, object] | Callable[[dict], bool] | None = None,
             observed: Mapping[str, float] | None = None) -> Ranking:
        plan = self.plan(task, k=k, where=where, observed=observed)
        _, order = kernels.topk(plan.vectors, plan.query, plan.k, mask=plan.mask)
        return self.finish(plan, order)

    def plan(self, task: Mapping[str, float] | None = None, *, k: int = 10,
             where: Mapping[str, object] | Callable[[dict], bool] | None = None,
             observed: Mapping[str, float] | None = None) -> RankPlan:
        """Everything of :meth:`rank` before the scan: one fitted version, the task's query
        vector, the ``where`` mask. ``kernels.topk(plan.vectors, plan.query, plan.k,
        mask=plan.mask)`` then :meth:`finish` of its order give the ranking; plans that share ``vectors``
        and ``mask`` can be scanned together, their queries stacked into one call."""
        k = kernels._positive_int(k, "k")
        fitted = self._state()
        state, meta, ids, index = fitted
        vectors = state["model_vectors"]
        notes = []
        query, basis = self._task_vector(state, meta, task, notes)
        mask = self._mask(where, ids, index) if where is not None else None
        measured = {}
        if observed:
            known = []
            for model, score in observed.items():
                if model not in index:
                    raise ValueError(f"observed: unknown model {model!r}")
                if not math.isfinite(float(score)):
                    raise ValueError(f"observed: the score of {model!r} is not finite")
                known.append((index[model], float(score)))
            rows = np.array([i for i, _ in known])
            base = vectors.astype(np.float64) @ query.astype(np.float64)
            prediction = _update_with_observations(base, np.asarray(state["normalized"], dtype=np.float64),
                                                   rows, np.array([s for _, s in known]), meta["sharpness"])
            # Each plan with observations scans its own one-column prediction.
            vectors, query = prediction.astype(np.float32)[:, None], np.ones(1, dtype=np.float32)
            basis += f" and {len(known)} observed score(s)"
            measured = {ids[i]: score for i, score in known}
        return RankPlan(fitted, vectors, query, int(k), mask, basis, notes, measured)

    def finish(self, plan: RankPlan, order) -> Ranking:
        """The ranking of ``plan`` from the top-k ``order`` (best first) of a scan.

        The scores are recomputed for those k models in float64, and the k ordered by them
        (ties by model index): a scan's float32 sums differ in the last bits between a lone
        query and a batch of them, and the answer should not depend on which ran.
        """
        state, meta, ids, _ = plan.fitted
        aligned = self._metadata(ids).aligned
        intercept, slope, spread = meta["intercept"], meta["slope"], state["spread"]
        chosen = np.asarray(order, dtype=np.int64)
        exact = np.asarray(plan.vectors[chosen], dtype=np.float64) @ np.asarray(plan.query, dtype=np.float64)
        by_score = np.lexsort((chosen, -exact))
        rows = []
        for rank_, (i, score) in enumerate(zip(chosen[by_score].tolist(), exact[by_score].tolist()), start=1):
            info = aligned[i] or {}
            rows.append({"rank": rank_, "model": ids[i],
                         "score": intercept + slope * score,
                         "uncertainty": abs(slope) * float(spread[i]),
                         **{key: value for key, value in info.items()
                            if key not in ("id", "extra") and value is not None},
                         # a copy: the cached metadata must not change through a returned row
                         **{key: copy.deepcopy(value) if isinstance(value, (list, dict)) else value
                            for key, value in info.get("extra", {}).items()}})
            if ids[i] in plan.measured:
                rows[-1]["observed"] = plan.measured[ids[i]]
        return Ranking(rows, plan.basis, plan.notes)

    def _task_vector(self, state, meta, task, notes):
        dim = state["model_vectors"].shape[1]
        prior = np.zeros(dim, dtype=np.float32)
        prior[0] = 1.0
        if not task:
            return prior, "the prior (no information about the task)"
        interaction = state.get("interaction")
        neighbours = state.get("neighbour_basis")
        if interaction is None and neighbours is None:
            notes.append("the fitted zoo has no task side information; task features are not used")
            return prior, "the prior (no information about the task)"
        values, distances = _task_side_information(task, meta["task_columns"], state)
        t = None if interaction is None else (values - state["task_mean"]) / state["task_scale"]
        basis = "task features" if neighbours is None else "task features and neighbour tasks"
        rank = 0 if neighbours is None else neighbours.shape[1]
        return task_vector(None if interaction is None else np.asarray(interaction), t, dim - 1 - rank,
                           neighbours, meta.get("bandwidth"), distances), basis

    def _mask(self, where, ids, index):
        """True for the models ``where`` leaves out."""
        catalog = self._metadata(ids)
        if callable(where):
            keep = [row is not None and bool(where({**row, "extra": dict(row["extra"])}))
                    for row in catalog.aligned]
            return ~np.array(keep, dtype=bool)
        if not isinstance(where, Mapping):
            raise TypeError(f"where: expected a dict of field -> condition or a callable, "
                            f"got {type(where).__name__}")
        return catalog.mask(where)


_IN = object()  # marks a membership condition in a mask's cache key


def _task_side_information(task: Mapping, columns: list[str], state) -> tuple[np.ndarray, np.ndarray | None]:
    """The new task's side information in the fitted zoo's columns, and its descriptor's
    distances to the known tasks' (None when the zoo takes no descriptor)."""
    numeric = [c for c in columns if not c.startswith("descriptor_")]
    missing = [c for c in numeric if c not in task]
    if any(c.startswith("descriptor_") for c in columns) and "descriptor" not in task:
        missing.append("descriptor")
    if missing:
        raise ValueError(f"task: missing feature(s) {missing}; this zoo was fitted with {columns}")
    values = []
    for c in numeric:
        try:
            value = float(task[c])
        except (TypeError, ValueError):
            raise ValueError(f"task: {c} must be a positive number, got {task[c]!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"task: {c} must be a positive number, got {task[c]!r}")
        values.append(math.log10(value))
    if any(c.startswith("descriptor_") for c in columns):
        try:
            descriptor = np.asarray(task["descriptor"], dtype=float)
        except (TypeError, ValueError):
            raise ValueError("task: descriptor must be a vector of numbers") from None
        if descriptor.ndim != 1:
            raise ValueError(f"task: descriptor must be one vector, got shape {descriptor.shape}")
        encoder = DescriptorEncoder.from_state(state, DESCRIPTOR_PREFIX)
        distances = encoder.distances(descriptor)
        values.extend(encoder.embedding.place(distances).tolist())  # = encoder.transform(descriptor)
        return np.array(values), distances
    return np.array(values), None


def _condition_key(condition):
    if isinstance(condition, (list, set, frozenset)):
        return (_IN, frozenset(condition))
    hash(condition)
    return condition


class _Catalog:
    """Every model's metadata row as the zoo returned it, with the masks computed from it."""

    def __init__(self, signal, rows: list[dict], cache_size: int):
        self.signal = signal
        self.rows = rows
        self.by_id = {row["id"]: row for row in rows}
        # A row's own columns win over an extra of the same name.
        self.fields = set().union(*(row["extra"] for row in rows), *(row.keys() for row in rows)) - {"extra"}
        self.aligned: list[dict | None] = []
        self._ids = None
        self._columns: dict[str, list] = {}
        self._masks: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def align(self, ids: list[str]) -> None:
        """Orders the rows as the fitted ``ids`` (None for a fitted model the database lacks)."""
        if self._ids is ids:
            return
        with self._lock:
            if self._ids is not ids:
                self.aligned = [self.by_id.get(m) for m in ids]
                self._columns, self._masks = {}, OrderedDict()
                self._ids = ids

    def _column(self, name: str) -> list:
        values = self._columns.get(name)
        if values is None:
            values = [None if row is None else row[name] if name in row else row["extra"].get(name)
                      for row in self.aligned]
            self._columns[name] = values
        return values

    def mask(self, where: Mapping) -> np.ndarray:
        try:
            key = tuple(sorted(((str(f), _condition_key(c)) for f, c in where.items()), key=lambda x: x[0]))
        except TypeError:
            key = None  # an unhashable condition: computed every time
        ids = self._ids
        if key is not None and key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        keep = np.ones(len(self.aligned), dtype=bool)
        for field_name, condition in where.items():
            if field_name not in self.fields:
                raise ValueError(f"where: unknown metadata field {field_name!r}; fields are {sorted(self.fields)}")
            keep &= _matching(field_name, self._column(field_name), condition)
        mask = ~keep
        mask.flags.writeable = False
        if key is not None:
            with self._lock:
                if self._ids is ids:
                    self._masks[key] = mask
                    while len(self._masks) > self._cache_size:
                        self._masks.popitem(last=False)
        return mask


def _matching(field_name: str, values: list, condition) -> np.ndarray:
    """Which values meet one condition: a comparison tuple, a collection of allowed values, or equality."""
    if isinstance(condition, tuple) and len(condition) == 2 and condition[0] in _OPERATORS:
        compare, bound = _OPERATORS[condition[0]], condition[1]
        try:
            return np.array([v is not None and bool(compare(v, bound)) for v in values], dtype=bool)
        except TypeError:
            raise ValueError(f"where: {field_name} {condition[0]} {bound!r}: values of {field_name!r} "
                             "cannot be compared with it") from None
    if isinstance(condition, (list, set, frozenset)):
        try:
            allowed = frozenset(condition)
            return np.array([v in allowed for v in values], dtype=bool)
        except TypeError:  # unhashable values: compare one by one
            return np.array([v in condition for v in values], dtype=bool)
    return np.array([v == condition for v in values], dtype=bool)


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
