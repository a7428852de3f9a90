"""The fitted transfer space: one type that owns its arrays, its choices and its storage.

A model's vector is ``[prior_m, x_m, f_m]`` (its prior, its standardised side
information when the interaction is used, its residual factors when neighbour
tasks are used); a task's vector is ``[w_prior, W t, B^T a]`` (see
:func:`fennec.space.vectors.task_vector`). A prediction is their product, in the
space's normalised units; :meth:`TransferSpace.calibrated` maps it to the
history's scale.

``fennec.fit`` produces a space and stores it with :meth:`TransferSpace.to_arrays`
in the zoo's memory-mapped files; a ranking reads it back with
:meth:`TransferSpace.from_arrays`; an evaluation predicts a held-out task with a
space fitted without it. All three meet the same :meth:`task_vector` and
:meth:`predict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .._checks import MAX_ID_LENGTH, brief
from .evidence import Evidence
from .taskspace import DescriptorEncoder
from .vectors import task_vector, update_with_observations

__all__ = ["DESCRIPTOR_COLUMN", "TransferSpace"]

# The task columns that hold a proxy descriptor's coordinates are named descriptor_0, descriptor_1...
DESCRIPTOR_COLUMN = "descriptor_"
# ...and the descriptor encoder's arrays are stored under this prefix.
DESCRIPTOR_STATE = "task_descriptor_"
_OPTIONAL_ARRAYS = ("interaction", "task_mean", "task_scale", "neighbour_basis", "task_features")
_CHOICES = ("normalization", "ridge", "sharpness", "bandwidth", "slope", "intercept", "cold_ridge")


@dataclass
class TransferSpace:
    """A fitted transfer space (see the module's docstring).

    ``normalized`` holds the history's per-task normalised scores (models x known
    tasks, NaN where not measured): observed scores on a new task re-weight the
    known tasks by how well they agree. ``spread`` is each model's spread around
    its prior (its uncertainty, in normalised units); ``slope`` and ``intercept``
    map normalised predictions back to the history's scale.
    """

    normalization: str
    ridge: float | None  # None: side information unused
    model_vectors: np.ndarray  # n_models x (1 + p + r), float32
    interaction: np.ndarray | None  # (1 + p*q): weights of [prior, x_m (x) t_t]
    task_mean: np.ndarray | None  # the known tasks' side information: mean and scale per column
    task_scale: np.ndarray | None
    normalized: np.ndarray
    sharpness: float = 0.0
    bandwidth: float | None = None  # neighbour tasks' kernel width; None: not used
    neighbour_basis: np.ndarray | None = None  # known tasks x r: task weights -> residual factors
    choices: dict[str, Any] = field(default_factory=dict)  # the inner cross-validation's scores per candidate
    task_features: np.ndarray | None = None  # known tasks x q, as given (before standardising)
    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    model_columns: tuple[str, ...] = ()
    task_columns: tuple[str, ...] = ()  # named features, then descriptor_0...: one per task_features column
    encoder: DescriptorEncoder | None = None  # places a new task's proxy descriptor among the known tasks'
    spread: np.ndarray | None = None
    slope: float = 1.0
    intercept: float = 0.0
    cold_ridge: float | None = None  # the ridge that places a model with no history
    evidence: Evidence | None = None  # how a new task's forward-pass scores are fused; None: not used
    # The known tasks' scales on the history's units: the mean and spread over tasks of the level
    # and slope of a task's scores against the models' priors, and a model's spread around its
    # task's line: (level, slope, level spread, slope spread, noise). Observed scores on a new
    # task are placed by it; None (a space stored before it was kept): in measured order only.
    calibration: tuple[float, float, float, float, float] | None = None

    @property
    def n_models(self) -> int:
        return int(self.model_vectors.shape[0])

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Each model's row in :attr:`model_vectors`."""
        return {m: i for i, m in enumerate(self.models)}

    @property
    def dim(self) -> int:
        return int(self.model_vectors.shape[1])

    @cached_property
    def named_features(self) -> list[str]:
        """The task features a new task is described by (the descriptor aside)."""
        return [c for c in self.task_columns if not c.startswith(DESCRIPTOR_COLUMN)]

    @cached_property
    def takes_descriptor(self) -> bool:
        """Whether the space places a new task by its proxy descriptor."""
        return any(c.startswith(DESCRIPTOR_COLUMN) for c in self.task_columns)

    @property
    def uses_task_information(self) -> bool:
        """False when the fit chose neither side information nor neighbour tasks: every task
        then ranks by the prior."""
        return self.interaction is not None or self.neighbour_basis is not None

    def task_vector(self, task_features: np.ndarray | None = None,
                    task_distances: np.ndarray | None = None) -> np.ndarray:
        """The vector of a new task from its side information (in :attr:`task_columns`, as
        given) and its distances to the known tasks; with neither it ranks by the prior."""
        t = None
        if self.interaction is not None and task_features is not None:
            t = (np.asarray(task_features, dtype=float) - self.task_mean) / self.task_scale
        rank = 0 if self.neighbour_basis is None else self.neighbour_basis.shape[1]
        return task_vector(self.interaction, t, self.dim - 1 - rank, self.neighbour_basis, self.bandwidth,
                           task_distances)

    def predict(self, task_features: np.ndarray | None = None, task_distances: np.ndarray | None = None, *,
                observed: tuple[np.ndarray, np.ndarray] | None = None,
                forward: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Every model's normalised prediction for a new task; ``forward``: ``(model rows, their
        forward-pass scores on it)`` of the metric the space fuses (:meth:`fuse`); ``observed``:
        ``(model rows, their measured scores on it)``, which re-weight the known tasks and are
        placed among the predictions on the history's scale."""
        vector = self.task_vector(task_features, task_distances)
        prediction = np.asarray(self.model_vectors, dtype=np.float64) @ vector.astype(np.float64)
        if forward is not None:
            prediction = self.fuse(prediction, *forward)
        if observed is not None:
            rows, scores = observed
            rows = np.asarray(rows, dtype=np.int64)
            scores = np.asarray(scores, dtype=np.float64)
            prediction = update_with_observations(prediction, np.asarray(self.normalized, dtype=np.float64),
                                                  rows, scores, self.sharpness, placed=prediction[rows])
            prediction = self._observed_on_scale(prediction, rows, scores)
        return prediction

    def _observed_on_scale(self, prediction: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Every prediction on the new task's own scale, the observed models at their measured
        scores, in units :meth:`calibrated` shows as those scores.

        The new task's scale (level ``a`` and slope ``b`` of its scores against the
        predictions) is the known tasks' typical one, moved by the observations as far as
        they outweigh how much the known tasks' scales differ: the most probable (a, b)
        under a normal prior fitted on the known tasks and a normal spread of a model around
        its line. The unobserved models keep their order; the observed ones fall where their
        measurements put them among the others. Without a usable calibration the observed
        models are only put in measured order.
        """
        if self.slope == 0 or self.calibration is None:
            values = np.sort(prediction[rows])[::-1]
            prediction[rows[np.argsort(-scores, kind="stable")]] = values
            return prediction
        level, slope, level_spread, slope_spread, noise = self.calibration
        p = prediction[rows]
        precision = np.array([[len(p), p.sum()], [p.sum(), p @ p]]) / max(noise, 1e-12) ** 2
        precision += np.diag([1.0 / max(level_spread, 1e-12) ** 2, 1.0 / max(slope_spread, 1e-12) ** 2])
        rhs = np.array([scores.sum(), p @ scores]) / max(noise, 1e-12) ** 2
        rhs += np.array([level / max(level_spread, 1e-12) ** 2, slope / max(slope_spread, 1e-12) ** 2])
        a, b = np.linalg.solve(precision, rhs)
        b = max(float(b), 1e-3 * abs(slope))  # a task's scores rise with the prediction
        out: np.ndarray = (a + b * prediction - self.intercept) / self.slope
        out[rows] = (scores - self.intercept) / self.slope
        return out

    def fuse(self, prediction: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``prediction`` with the forward-pass scores ``values`` of the models at ``rows`` on
        the new task fused in (of :attr:`evidence`'s metric); unchanged when the fit chose no
        evidence."""
        if self.evidence is None:
            return np.array(prediction, dtype=np.float64, copy=True)
        return self.evidence.fuse(prediction, rows, values)

    def calibrated(self, prediction: np.ndarray | float) -> np.ndarray | float:
        """Normalised predictions on the history's scale."""
        return self.intercept + self.slope * prediction

    def uncertainty(self, rows: np.ndarray | int) -> np.ndarray | float:
        """The models' spread around their prior, on the history's scale."""
        spread = np.zeros(self.n_models) if self.spread is None else self.spread
        uncertainty: np.ndarray | float = abs(self.slope) * np.asarray(spread, dtype=np.float64)[rows]
        return uncertainty

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the JSON-serialisable choices that :meth:`from_arrays` reads back."""
        state: dict[str, np.ndarray] = {
            "model_vectors": np.ascontiguousarray(self.model_vectors, dtype=np.float32),
            "model_ids": _stored_ids(self.models),
            "normalized": np.ascontiguousarray(self.normalized, dtype=np.float32),
            "spread": np.zeros(self.n_models) if self.spread is None else np.asarray(self.spread),
        }
        for name in _OPTIONAL_ARRAYS:
            value = getattr(self, name)
            if value is not None and (name != "task_mean" and name != "task_scale" or self.interaction is not None):
                state[name] = np.asarray(value)
        if self.encoder is not None:
            state.update(self.encoder.to_state(DESCRIPTOR_STATE))
        meta = {name: getattr(self, name) for name in _CHOICES}
        if self.calibration is not None:
            meta["task_calibration"] = list(self.calibration)
        if self.evidence is not None:
            meta.update(evidence_metric=self.evidence.metric, evidence_weight=self.evidence.weight,
                        evidence_corrected=self.evidence.offsets is not None,
                        evidence_shortlist=self.evidence.shortlist)
            if self.evidence.offsets is not None:
                state["evidence_offsets"] = np.asarray(self.evidence.offsets, dtype=np.float64)
            if self.evidence.residual_spread is not None:
                state["evidence_residual_spread"] = np.asarray(self.evidence.residual_spread, dtype=np.float64)
        meta.update(model_columns=list(self.model_columns), task_columns=list(self.task_columns),
                    tasks=list(self.tasks), n_models=self.n_models, choices=self.choices)
        return state, meta

    @classmethod
    def from_arrays(cls, state: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> TransferSpace:
        """A space from :meth:`to_arrays`' output (memory-mapped arrays are kept as they are)."""
        encoder = None
        evidence = None
        if meta.get("evidence_metric") is not None:
            evidence = Evidence(str(meta["evidence_metric"]), float(meta["evidence_weight"]),
                                state.get("evidence_offsets"), meta.get("evidence_shortlist"),
                                state.get("evidence_residual_spread"))
        if f"{DESCRIPTOR_STATE}descriptors" in state:
            encoder = DescriptorEncoder.from_state(state, DESCRIPTOR_STATE)
        return cls(
            normalization=meta["normalization"], ridge=meta["ridge"], model_vectors=state["model_vectors"],
            interaction=state.get("interaction"), task_mean=state.get("task_mean"),
            task_scale=state.get("task_scale"), normalized=state["normalized"],
            sharpness=float(meta["sharpness"]), bandwidth=meta.get("bandwidth"),
            neighbour_basis=state.get("neighbour_basis"), choices=dict(meta.get("choices", {})),
            task_features=state.get("task_features"), models=tuple(str(m) for m in state["model_ids"]),
            tasks=tuple(meta.get("tasks", ())), model_columns=tuple(meta.get("model_columns", ())),
            task_columns=tuple(meta.get("task_columns", ())), encoder=encoder, spread=state["spread"],
            slope=float(meta["slope"]), intercept=float(meta["intercept"]), cold_ridge=meta.get("cold_ridge"),
            evidence=evidence, calibration=None if meta.get("task_calibration") is None else tuple(
                float(v) for v in meta["task_calibration"]),  # type: ignore[arg-type]
        )


def _stored_ids(models: tuple[str, ...]) -> np.ndarray:
    """The model ids as the fixed-width text array they are stored in, refusing ids that would
    not read back as given: numpy's fixed-width text drops trailing NUL characters, so
    ``"a\\x00"`` would read back as ``"a"``, and two models would answer to one name."""
    seen: set[str] = set()
    for model in models:
        if model in seen:
            raise ValueError(f"model ids: {brief(model)} is listed twice; each model needs its own id")
        seen.add(model)
    ids = np.array(models, dtype=str)
    if ids.tolist() != list(models):
        bad = next(m for m, back in zip(models, ids.tolist()) if m != back)
        raise ValueError(f"model ids: {brief(bad)} would read back from storage as {brief(bad.rstrip(chr(0)))}, "
                         f"not as given (an id is printable text of at most {MAX_ID_LENGTH} characters); give "
                         "the model such an id and refit")
    return ids
