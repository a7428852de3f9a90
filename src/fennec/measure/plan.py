"""What a measure run has to compute: the (model, task, kind) cells the zoo's history lacks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..zoo import Zoo

__all__ = ["KINDS", "Job", "Plan", "check_kinds", "plan_cells"]


def _metric_names() -> list[str]:
    from ..metrics import METRICS

    return list(METRICS)


def _kinds() -> list[str]:
    return ["linear_probe", "finetune", *_metric_names()]


KINDS: tuple[str, ...] = tuple(_kinds())


@dataclass(frozen=True)
class Job:
    """One model on one task: its features are extracted once and every kind asked is computed from them."""

    model: str
    task: str
    kinds: tuple[str, ...]


@dataclass
class Plan:
    """The jobs to run, grouped by model in the zoo's order, and what was left out and why."""

    jobs: list[Job]
    kinds: tuple[str, ...]
    present: int  # cells already in the history (or recorded as failed), not recomputed
    skipped_models: dict[str, str] = field(default_factory=dict)
    skipped_tasks: dict[str, str] = field(default_factory=dict)

    @property
    def cells(self) -> int:
        return sum(len(job.kinds) for job in self.jobs)


def check_kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...]:
    """The kinds asked for, validated (default: linear_probe)."""
    if kinds is None:
        return ("linear_probe",)
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    chosen = tuple(dict.fromkeys(kinds))
    if not chosen:
        raise ValueError(f"kinds: none given; choose from {', '.join(KINDS)}")
    for kind in chosen:
        if kind not in KINDS:
            raise ValueError(f"kinds: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return chosen


def _chosen(what: str, asked: Sequence[str] | None, known: list[str]) -> list[str]:
    if asked is None:
        return known
    asked = list(dict.fromkeys(asked))
    unknown = [a for a in asked if a not in set(known)]
    if unknown:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise ValueError(f"{what}: {unknown} not in the zoo (it holds {shown or 'none'}; add them with "
                         f"`fennec zoo add-{what[:-1]}`)")
    return asked


def plan_cells(zoo: Zoo, kinds: tuple[str, ...], models: Sequence[str] | None, tasks: Sequence[str] | None, *,
               failed: set[tuple[str, str, str]] | None = None) -> Plan:
    """Every (model, task) with at least one of ``kinds`` neither stored nor in ``failed``.

    With ``finetune`` asked, a model known to have no trainable split here (an ONNX model:
    :func:`fennec.runnable.finetune_fallback`) is measured by linear probe instead: its jobs
    also take ``linear_probe`` where that cell is missing (its finetune cell is then recorded as
    failed, with the reason, rather than stored: see :mod:`fennec.measure.finetune`).
    """
    model_ids = _chosen("models", models, [m["id"] for m in zoo.models()])
    task_ids = _chosen("tasks", tasks, [t["id"] for t in zoo.tasks()])
    fallback = _fallback_models(zoo, model_ids) if "finetune" in kinds and "linear_probe" not in kinds else set()
    done: set[tuple[str, str, str]] = set(failed or ())
    for kind in (*kinds, "linear_probe") if fallback else kinds:
        history = zoo.history(kind)
        done.update((history.models[int(m)], history.tasks[int(t)], kind)
                    for m, t in zip(history.model_index, history.task_index))
    jobs, present = [], 0
    for model in model_ids:
        for task in task_ids:
            missing = tuple(k for k in kinds if (model, task, k) not in done)
            present += len(kinds) - len(missing)
            if "finetune" in missing and model in fallback and (model, task, "linear_probe") not in done:
                missing += ("linear_probe",)
            if missing:
                jobs.append(Job(model, task, missing))
    return Plan(jobs, kinds, present)


def _fallback_models(zoo: Zoo, models: list[str]) -> set[str]:
    from ..runnable import finetune_fallback

    return {model for model in models if finetune_fallback(zoo, model) is not None}
