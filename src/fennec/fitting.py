"""Fitting a zoo: its history and side information -> a transfer space stored in the zoo.

``fit(zoo)`` learns the space with :func:`fennec.space.fit_space` and stores it as
the zoo's fitted state (memory-mapped arrays, switched atomically); ``fennec.rank``
reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .features import GROUND_TRUTH_KINDS, known_tasks, model_side_information, stored_forward_scores
from .space import fit_space
from .space.fit import descriptor_columns
from .space.selection import usable_related
from .zoo import DEFAULT_LOCK_TIMEOUT, Zoo, ZooError, _check_lock_timeout

__all__ = ["DEFAULT_FIT_KINDS", "default_fit_kind", "fit"]

# The fine-tuning kinds, in order: the first of these the zoo holds is fitted by default.
DEFAULT_FIT_KINDS = GROUND_TRUTH_KINDS


def fit(zoo: Zoo, *, seed: int = 0, kind: str | None = None, fold_in: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT, new_data: bool = True) -> dict[str, Any]:
    """Fits the transfer space on the zoo's history and stores it; returns the fit's summary.

    ``kind``: the results to learn from. Left as None, it is the kind of the
    current fit when the zoo still holds it, else the zoo's only kind, else the
    first of :data:`DEFAULT_FIT_KINDS` it holds (see :func:`default_fit_kind`);
    a default that another stored kind outweighs (more results, or results on
    more tasks) is refused with the kinds and their counts, so that a few new
    results of one kind never silently replace the rest of the history. A kind
    given explicitly is fitted as asked. The summary names the kind and the
    number of results fitted.

    ``fold_in=True`` folds results and models added since the last fit into the
    space with that fit's choices (ridge strengths, sharpness) kept, skipping the
    inner cross-validation that a full fit runs; it falls back to a full fit, and
    says so in the summary, when there is no earlier fit of this kind or the side
    information's columns changed.

    ``lock_timeout``: the seconds to wait for another process writing a fitted state
    (see :meth:`Zoo.write_fitted`; default 300), after which the fit is refused.

    ``new_data`` (the default): the tasks to be ranked are new data, sharing no images
    with the known tasks. Where the zoo's tasks record which of them share data (their
    ``dataset`` and ``classes``), each inner fold of the cross-validation then holds a
    known task out with every task related to it, so every choice is made on predictions
    as good as a new dataset's will be. ``new_data=False``: new tasks may be other class
    subsets of the known datasets; each inner fold holds one task out, as it does when too
    few known tasks are unrelated to hold related ones out (fewer than two tasks would keep
    two others). The summary's ``tasks_sharing_data`` counts the known tasks that share data
    with another, ``held_out_together`` says whether the folds held them out together.
    """
    lock_timeout = _check_lock_timeout(lock_timeout)  # before the fit's work, not after it
    if kind is None:
        kind = default_fit_kind(zoo)
    history = zoo.history(kind)
    if len(history) == 0:
        stored = zoo.history_counts()
        held = f"it holds {_listed(stored)}" if stored else "it holds no results yet"
        raise ZooError(f"{zoo.path}: the zoo has no {kind!r} history to fit ({held})")
    if history.n_tasks < 2:
        raise ZooError(f"{zoo.path}: fitting needs results on at least 2 tasks, the zoo has {history.n_tasks}")
    model_features, model_columns = model_side_information(zoo, history.models)
    tasks = known_tasks(zoo, history.tasks)
    task_columns = list(tasks.columns)
    if tasks.descriptors is not None:
        task_columns += descriptor_columns(len(tasks.tasks))
    previous, refit = _previous_choices(zoo, kind, model_columns, task_columns) if fold_in else (None, "full")
    forward = stored_forward_scores(zoo, history.models, history.tasks, kind)
    held_together = usable_related(tasks.related) if new_data else None
    space = fit_space(history.matrix(), history.models, history.tasks, model_features=model_features,
                      model_columns=model_columns, task_features=tasks.features, task_columns=tasks.columns,
                      task_descriptors=tasks.descriptors, seed=seed, choices=previous, forward_scores=forward,
                      related=held_together)
    state, meta = space.to_arrays()
    meta.update(kind=kind, seed=seed, refit=refit, new_data=new_data)
    sharing = 0 if tasks.related is None else int(((tasks.related.sum(1) - 1) > 0).sum())
    version = zoo.write_fitted(state, meta, lock_timeout=lock_timeout)
    return {"version": version, "normalization": space.normalization, "ridge": space.ridge,
            "sharpness": space.sharpness, "bandwidth": space.bandwidth, "n_models": space.n_models,
            "refit": refit, "kind": kind, "results": len(history), "n_tasks": history.n_tasks,
            "new_data": new_data, "tasks_sharing_data": sharing, "held_out_together": held_together is not None,
            "model_columns": len(model_columns),
            "evidence": None if space.evidence is None else {
                "metric": space.evidence.metric, "weight": space.evidence.weight,
                "corrected": space.evidence.offsets is not None, "shortlist": space.evidence.shortlist},
            "task_columns": list(space.task_columns)}


def default_fit_kind(zoo: Zoo) -> str:
    """The kind :func:`fit` learns from when none is given, or a :class:`ZooError` saying why
    none can be chosen.

    The candidate is the kind of the current fitted state when the zoo still holds
    it (a refit keeps learning what the last fit learnt), else the zoo's only kind,
    else the first of :data:`DEFAULT_FIT_KINDS` it holds. The candidate is refused
    when another stored kind holds more results or has results on more tasks:
    fitting it would leave most of the evidence out, and only the user can say
    whether that is meant. Kinds that tie with it (the demo zoo's forward-pass
    metrics beside its ``linear_probe`` truth) do not make it ambiguous.
    """
    counts = zoo.history_counts()
    if not counts:
        return DEFAULT_FIT_KINDS[0]  # fit then says the zoo holds nothing to fit
    candidate = _fitted_kind(zoo)
    if candidate not in counts:
        if len(counts) == 1:
            candidate = next(iter(counts))
        else:
            candidate = next((k for k in DEFAULT_FIT_KINDS if k in counts), None)
    if candidate is None:
        raise ZooError(f"{zoo.path}: which results to fit is ambiguous: the zoo holds {_listed(counts)}, none of "
                       f"them {' or '.join(DEFAULT_FIT_KINDS)}; name one: --kind KIND "
                       "(kind=\"KIND\" in fennec.fit)")
    results, tasks = counts[candidate]
    larger = [k for k, (n, t) in counts.items() if k != candidate and (n > results or t > tasks)]
    if larger:
        # The best-supported kind, the preferred kinds first among equals.
        order = {k: i for i, k in enumerate(DEFAULT_FIT_KINDS)}
        best = min(counts, key=lambda k: (-counts[k][1], -counts[k][0], order.get(k, len(order))))
        raise ZooError(
            f"{zoo.path}: which results to fit is ambiguous: the default kind {candidate!r} has {results} "
            f"result(s) on {tasks} task(s), but the zoo holds {_listed(counts)}; name the kind to fit: "
            f"--kind {best} (kind=\"{best}\" in fennec.fit), or --kind {candidate} to fit those {results} alone"
        )
    return candidate


def _fitted_kind(zoo: Zoo) -> str | None:
    """The kind the current fitted state was learnt from, or None before a fit."""
    if zoo.fitted_version() is None:
        return None
    _, meta = zoo.read_fitted()
    kind = meta.get("kind")
    return kind if isinstance(kind, str) and kind else None


def _listed(counts: dict[str, tuple[int, int]], shown: int = 4) -> str:
    """``'linear_probe' 130 result(s) on 13 task(s), 'finetune' 2 result(s) on 2 task(s)``, largest first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1][1], -item[1][0]))
    text = ", ".join(f"{kind!r} {n} result(s) on {t} task(s)" for kind, (n, t) in ranked[:shown])
    return text + (f" and {len(ranked) - shown} more kind(s)" if len(ranked) > shown else "")


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
