"""Ranking a zoo's models for a new task with its fitted transfer space.

``rank(zoo, task)`` places the task in the zoo's :class:`~fennec.space.TransferSpace`
(:func:`fennec.features.place_task`), scores every model with the core's fused
top-k and returns the best ``k`` joined with their metadata. A :class:`Ranker`
keeps the space and the metadata in memory between calls and rereads them when
the zoo changes.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import kernels
from ._checks import integer
from .budget import check_budget_request
from .catalog import Catalog
from .features import check_observed, place_task
from .space import TransferSpace, check_choice
from .zoo import POINTER_NAME, Zoo, ZooError

if TYPE_CHECKING:
    from .proxy.images import ImageSet

__all__ = ["FittedVersion", "RankPlan", "Ranker", "Ranking", "rank"]

Where = Mapping[str, object] | Callable[[dict[str, Any]], bool]


@dataclass
class Ranking:
    """The ranked models, best first, and what the ranking was based on."""

    rows: list[dict[str, Any]]
    basis: str
    notes: list[str] = field(default_factory=list)
    forward: dict[str, Any] | None = None  # a budget's forward passes: which models ran, their scores, seconds

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        lines = [f"ranked by {self.basis}"] + [f"note: {n}" for n in self.notes]
        lines.append(f"{'rank':>4}  {'model':<40} {'score':>9} {'+/-':>7}")
        for row in self.rows:
            lines.append(f"{row['rank']:>4}  {row['model']:<40} {row['score']:>9.4f} {row['uncertainty']:>7.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"basis": self.basis, "notes": self.notes, "rows": self.rows}
        if self.forward is not None:
            out["forward_passes"] = self.forward
        return out


class FittedVersion(NamedTuple):
    """One fitted version of a zoo: its space and which version it is. ``pointer`` is the
    (inode, mtime, size) of the pointer file it was read under."""

    space: TransferSpace
    version: int
    pointer: tuple[int, int, int] | None


class RankPlan(NamedTuple):
    """A ranking up to the scan (see :meth:`Ranker.plan`)."""

    fitted: FittedVersion
    vectors: np.ndarray
    query: np.ndarray
    k: int
    mask: np.ndarray | None
    basis: str
    notes: list[str]
    measured: dict[str, float]


class Ranker:
    """A zoo's fitted space held in memory, reloaded when the zoo is refitted.

    Each call reads the space once (one consistent version) and never sees half
    of a refit. The models' metadata is read once and reread only after the
    zoo's database changed; ``where`` masks are kept per fitted version and
    metadata. The zoo's SQLite connection belongs to the thread that opened it,
    so use a Ranker from that thread (one Zoo and one Ranker per thread).
    """

    MASK_CACHE_SIZE = 64

    def __init__(self, zoo: Zoo) -> None:
        self.zoo = zoo
        self._lock = threading.Lock()
        self._loaded: FittedVersion | None = None
        self._catalog: Catalog | None = None
        self._pointer_path = os.fspath(zoo.path / POINTER_NAME)

    @property
    def version(self) -> int | None:
        """The fitted version held in memory (None before the first ranking)."""
        loaded = self._loaded
        return None if loaded is None else loaded.version

    @property
    def loaded_catalog(self) -> Catalog | None:
        """The metadata held in memory (None before it is first read)."""
        return self._catalog

    def fitted(self) -> FittedVersion:
        """The zoo's current fitted version (reread only when a refit replaced it)."""
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
                loaded = self._loaded = loaded._replace(version=version, pointer=pointer)
            return loaded

    def _read_fitted(self, version: int, pointer: tuple[int, int, int] | None) -> FittedVersion:
        # Versions only grow, so equal pointer reads before and after mean the
        # arrays read in between are that version's.
        for _ in range(5):
            state, meta = self.zoo.read_fitted()
            after = self.zoo.fitted_version()
            if after == version:
                space = TransferSpace.from_arrays(state, meta)
                return FittedVersion(space, version, pointer)
            pointer = None  # read under a later pointer: check it again next time
            if after is None:
                break
            version = after
        raise ZooError(f"{self.zoo.path}: the fitted state kept changing while being read; try again")

    def catalog(self, fitted: FittedVersion | None = None) -> Catalog:
        """The models' metadata, aligned with ``fitted``'s models (when given); reread when the
        database changed."""
        signal = self.zoo.data_signal()
        catalog = self._catalog
        if catalog is None or catalog.signal != signal:
            with self._lock:
                catalog = self._catalog
                if catalog is None or catalog.signal != signal:
                    catalog = self._catalog = Catalog(signal, self.zoo.models(), self.MASK_CACHE_SIZE)
        if fitted is not None:
            catalog.align(fitted.space.models)
        return catalog

    def rank(self, task: Mapping[str, Any] | Sequence[float] | None = None, *, k: int = 10,
             where: Where | None = None, observed: Mapping[str, float] | None = None,
             forward: Mapping[str, float] | None = None) -> Ranking:
        plan = self.plan(task, k=k, where=where, observed=observed, forward=forward)
        _, order = kernels.topk(plan.vectors, plan.query, plan.k, mask=plan.mask)
        return self.finish(plan, order)

    def rank_on_budget(self, task: Mapping[str, Any] | Sequence[float] | None, images: ImageSet | None,
                       budget: int | str, *, k: int = 10, where: Where | None = None,
                       observed: Mapping[str, float] | None = None, metric: str | None = None,
                       cache_dir: str | os.PathLike[str] | None = None, choose: str | None = None) -> Ranking:
        """:meth:`rank` after spending ``budget`` forward passes over the task's ``images``
        (see :func:`rank`); ``fennec rank --budget`` and ``POST /rank/images`` both come here."""
        rule = check_choice(choose)
        if images is None:
            raise ValueError("budget: forward passes need the task's images (images=load_images(DIR))")
        from .budget import run_budget

        run = run_budget(self.zoo, self.fitted().space, task, images, budget, metric=metric,
                         cache_dir=cache_dir, choose=rule)
        ranking = self.rank(task, k=k, where=where, observed=observed, forward=run.scores or None)
        ranking.notes.extend(run.notes)
        ranking.forward = run.to_dict()
        return ranking

    def plan(self, task: Mapping[str, Any] | Sequence[float] | None = None, *, k: int = 10,
             where: Where | None = None, observed: Mapping[str, float] | None = None,
             forward: Mapping[str, float] | None = None) -> RankPlan:
        """Everything of :meth:`rank` before the scan: one fitted version, the task's query
        vector, the ``where`` mask. ``kernels.topk(plan.vectors, plan.query, plan.k,
        mask=plan.mask)`` then :meth:`finish` of its order give the ranking; plans that share ``vectors``
        and ``mask`` can be scanned together, their queries stacked into one call."""
        k = integer(k, "k", low=1)
        fitted = self.fitted()
        space = fitted.space
        placed = place_task(space, task)
        seen = check_observed(space, observed)
        run = check_observed(space, forward, "forward scores")
        vectors = space.model_vectors
        query = space.task_vector(placed.features, placed.distances)
        mask = self._mask(where, fitted) if where is not None else None
        basis, measured = placed.basis, {}
        if run is not None and space.evidence is not None:
            basis += f" and {len(run[0])} model(s)' {space.evidence.metric} scores"
        if seen is not None:
            rows, scores = seen
            basis += f" and {len(rows)} observed score(s)"
            measured = {space.models[i]: float(s) for i, s in zip(rows.tolist(), scores.tolist())}
        if seen is not None or (run is not None and space.evidence is not None):
            prediction = space.predict(placed.features, placed.distances, observed=seen, forward=run)
            # Each plan with observations or forward scores scans its own one-column prediction.
            vectors, query = prediction.astype(np.float32)[:, None], np.ones(1, dtype=np.float32)
        return RankPlan(fitted, vectors, query, int(k), mask, basis, list(placed.notes), measured)

    def finish(self, plan: RankPlan, order: np.ndarray) -> Ranking:
        """The ranking of ``plan`` from the top-k ``order`` (best first) of a scan.

        The scores are recomputed for those k models in float64, and the k ordered by them
        (ties by model index): a scan's float32 sums differ in the last bits between a lone
        query and a batch of them, and the answer should not depend on which ran.
        """
        space = plan.fitted.space
        aligned = self.catalog(plan.fitted).aligned
        chosen = np.asarray(order, dtype=np.int64)
        exact = np.asarray(plan.vectors[chosen], dtype=np.float64) @ np.asarray(plan.query, dtype=np.float64)
        by_score = np.lexsort((chosen, -exact))
        chosen, exact = chosen[by_score], exact[by_score]
        uncertainty = np.asarray(space.uncertainty(chosen), dtype=np.float64).tolist()
        rows = []
        for rank_, (i, score, spread) in enumerate(zip(chosen.tolist(), exact.tolist(), uncertainty), start=1):
            info = aligned[i] or {}
            model = space.models[i]
            rows.append({"rank": rank_, "model": model,
                         "score": space.calibrated(score),
                         "uncertainty": spread,
                         **{key: value for key, value in info.items()
                            if key not in ("id", "extra") and value is not None},
                         # a copy: the cached metadata must not change through a returned row
                         **{key: copy.deepcopy(value) if isinstance(value, (list, dict)) else value
                            for key, value in info.get("extra", {}).items()}})
            if model in plan.measured:  # measured, not predicted: its score is the measurement
                rows[-1]["observed"] = plan.measured[model]
                rows[-1]["uncertainty"] = 0.0
        return Ranking(rows, plan.basis, plan.notes)

    def _mask(self, where: Where, fitted: FittedVersion) -> np.ndarray:
        """True for the models ``where`` leaves out."""
        catalog = self.catalog(fitted)
        if callable(where):
            keep = [row is not None and bool(where({**row, "extra": dict(row["extra"])}))
                    for row in catalog.aligned]
            return ~np.array(keep, dtype=bool)
        if not isinstance(where, Mapping):
            raise TypeError(f"where: expected a dict of field -> condition or a callable, "
                            f"got {type(where).__name__}")
        return catalog.mask(where)


_RANKERS: dict[str, Ranker] = {}
_RANKERS_LOCK = threading.Lock()


def rank(zoo: Zoo, task: Mapping[str, Any] | Sequence[float] | None = None, *, k: int = 10,
         where: Where | None = None, observed: Mapping[str, float] | None = None,
         images: ImageSet | None = None, budget: int | str | None = None, metric: str | None = None,
         cache_dir: str | os.PathLike[str] | None = None, choose: str | None = None) -> Ranking:
    """Ranks the zoo's models for a task described by features, observed scores, or nothing.

    ``where`` filters on model metadata: ``{"family": "resnet"}``, a list of allowed
    values, ``("<=", 30e6)`` comparisons, or a callable taking the model's row.
    ``budget`` (a number of models, or ``"all"``) with the task's labelled ``images``
    (:func:`fennec.proxy.load_images`): at most that many of the best predicted models are
    run over the images, scored by the forward-pass metric the zoo's fit fuses (``metric``
    must be that one when given), and fused into the ranking; the ranking's ``forward``
    says which models ran, which rule chose them and what it cost (see :mod:`fennec.budget`).
    ``choose`` (with ``budget``) is that rule: ``"top"`` (the default), fennec's best predicted
    models; ``"change"``, those whose forward pass is expected to change the top of the ranking
    most (:mod:`fennec.space.choice`).
    """
    key = str(zoo.path)
    with _RANKERS_LOCK:
        ranker = _RANKERS.get(key)
        if ranker is None or ranker.zoo is not zoo:
            ranker = _RANKERS[key] = Ranker(zoo)
    rule = check_budget_request(budget, metric, choose)
    if budget is None:
        return ranker.rank(task, k=k, where=where, observed=observed)
    return ranker.rank_on_budget(task, images, budget, k=k, where=where, observed=observed, metric=metric,
                                 cache_dir=cache_dir, choose=rule)
