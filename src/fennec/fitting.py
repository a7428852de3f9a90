"""Fitting a zoo: its history and side information -> a transfer space stored in the zoo.

``fit(zoo)`` learns the space with :func:`fennec.space.fit_space` and stores it as
the zoo's fitted state (memory-mapped arrays, switched atomically); ``fennec.rank``
reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .features import known_tasks, model_side_information
from .space import fit_space
from .space.fit import descriptor_columns
from .zoo import Zoo, ZooError

__all__ = ["DEFAULT_FIT_KINDS", "fit"]

DEFAULT_FIT_KINDS = ("finetune", "linear_probe")  # the first of these the zoo holds is fitted by default


def fit(zoo: Zoo, *, seed: int = 0, kind: str | None = None, fold_in: bool = False) -> dict[str, Any]:
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
        kind = next((k for k in DEFAULT_FIT_KINDS if k in kinds), DEFAULT_FIT_KINDS[0])
    history = zoo.history(kind)
    if len(history) == 0:
        raise ZooError(f"{zoo.path}: the zoo has no {kind!r} history to fit")
    if history.n_tasks < 2:
        raise ZooError(f"{zoo.path}: fitting needs results on at least 2 tasks, the zoo has {history.n_tasks}")
    model_features, model_columns = model_side_information(zoo, history.models)
    tasks = known_tasks(zoo, history.tasks)
    task_columns = list(tasks.columns)
    if tasks.descriptors is not None:
        task_columns += descriptor_columns(len(tasks.tasks))
    previous, refit = _previous_choices(zoo, kind, model_columns, task_columns) if fold_in else (None, "full")
    space = fit_space(history.matrix(), history.models, history.tasks, model_features=model_features,
                      model_columns=model_columns, task_features=tasks.features, task_columns=tasks.columns,
                      task_descriptors=tasks.descriptors, seed=seed, choices=previous)
    state, meta = space.to_arrays()
    meta.update(kind=kind, seed=seed, refit=refit)
    version = zoo.write_fitted(state, meta)
    return {"version": version, "normalization": space.normalization, "ridge": space.ridge,
            "sharpness": space.sharpness, "bandwidth": space.bandwidth, "n_models": space.n_models,
            "refit": refit, "n_tasks": history.n_tasks, "model_columns": len(model_columns),
            "task_columns": list(space.task_columns)}


def _previous_choices(zoo: Zoo, kind: str, model_columns: Sequence[str],
                      task_columns: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
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
