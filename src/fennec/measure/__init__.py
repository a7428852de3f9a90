"""Filling a zoo's history: every missing (model, task, kind) cell, measured in process or on Ray.

:func:`measure` plans the cells the history lacks (:mod:`~fennec.measure.plan`), runs each
model's jobs on an engine (:mod:`~fennec.measure.engines`: ``local`` in this process, ``ray``
actors that each hold a model loaded and take its jobs) where a job extracts the model's
features of a task once, cached by content, and computes every kind asked from them (:mod:`~fennec.measure.cells`), and writes
each result to the zoo as it comes back, one transaction per cell, from this process only: an
interrupted run loses at most the cells in flight and a rerun computes only what is missing.
A cell that fails (a model that cannot take the images) is recorded with its reason
(:meth:`fennec.Zoo.measure_failures`) and skipped by later runs unless ``retry_failed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..history import History
from .cells import Extractor, ExtractorFactory, JobResult, kind_recipe
from .engines import ENGINES, RayEngine, local_results
from .finetune import FALLBACK
from .inputs import TaskInputs, task_inputs
from .plan import KINDS, Job, Plan, check_kinds, plan_cells

if TYPE_CHECKING:
    from ..zoo import Zoo
    from .finetune import TrainableSplit

__all__ = ["ENGINES", "KINDS", "Extractor", "ExtractorFactory", "JobResult", "ZooExtractors", "check_kinds", "measure",
           "write_result"]


class ZooExtractors:
    """The default :data:`ExtractorFactory`: a model as :func:`fennec.runnable.model_extractor` runs it,
    from the zoo's runnable reference, else the packaged catalogue. It opens the zoo by path, so it
    travels to Ray workers (on a cluster, the zoo's folder and the models' files must be reachable there)."""

    def __init__(self, zoo_path: str | os.PathLike[str]) -> None:
        self.zoo_path = str(zoo_path)

    def __call__(self, model_id: str, cache_dir: str | os.PathLike[str] | None) -> Extractor:
        from ..runnable import model_extractor
        from ..zoo import Zoo

        with Zoo.open(self.zoo_path) as zoo:
            extractor = model_extractor(zoo, model_id, cache_dir)
        # The Measurer caches a model's features of a whole image source in one file; the proxy's
        # own cache of one file per image would only double the writes (a third of the extraction).
        extractor.cache_dir = None
        return extractor

    def trainable(self, model_id: str, cache_dir: str | os.PathLike[str] | None) -> TrainableSplit:
        """The model as a frozen trunk and a trainable tail, for the ``finetune`` kind
        (:func:`fennec.runnable.model_trainable`; NotTrainable for a model measured by linear probe)."""
        from ..runnable import model_trainable
        from ..zoo import Zoo

        with Zoo.open(self.zoo_path) as zoo:
            return model_trainable(zoo, model_id, cache_dir)


def _fingerprints(zoo: Zoo) -> dict[str, str]:
    """What identifies a registered model's runnable reference, so its cached features follow it
    (catalogue models have none: their features share build-demo's cache)."""
    return {model: hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            for model, spec in zoo.model_runtimes().items()}


def _versions() -> str:
    import numpy as np

    from .. import __version__

    return f"fennec {__version__}, numpy {np.__version__}"


def _source(kind: str, model: str, inputs: TaskInputs, engine: str, note: str | None = None) -> str:
    recorded = {"by": "fennec zoo measure", "kind": kind_recipe(kind), "features": model,
                "split": inputs.recipe, "engine": engine, "versions": _versions()}
    if note:
        recorded["model"] = note  # what was done to this model in particular (a fine-tune: the modules trained)
    return json.dumps(recorded, sort_keys=True)


def _runnable(zoo: Zoo, plan: Plan, make_extractor: ExtractorFactory | None) -> None:
    """Leaves out (in ``plan.skipped_models``) the models that cannot be run here."""
    if make_extractor is not None:
        return  # the caller says how to run every model
    from ..runnable import runnable_models

    models = list(dict.fromkeys(job.model for job in plan.jobs))
    _, why = runnable_models(zoo, models)
    plan.skipped_models.update(why)
    plan.jobs = [job for job in plan.jobs if job.model not in why]


def _heaviest_first(zoo: Zoo, groups: list[tuple[str, list[tuple[Job, TaskInputs]]]]
                    ) -> list[tuple[str, list[tuple[Job, TaskInputs]]]]:
    """The models with the most parameters first, where the zoo knows every model's count (else in
    the zoo's order): on several workers the longest models then start early and the short ones
    fill the gaps, rather than one long model running alone at the end."""
    sizes = {row["id"]: row.get("n_params") for row in zoo.models_by_id([model for model, _ in groups]).values()}
    if not groups or any(not isinstance(sizes.get(model), (int, float)) for model, _ in groups):
        return groups
    return sorted(groups, key=lambda group: -float(sizes[group[0]] or 0.0))


def _check_engine(engine: str, address: str | None, workers: int | None, threads: int | None,
                  gpus: float | None, memory: int | None) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local" and address is not None:
        raise ValueError("address: names a Ray cluster, so it needs engine='ray' (--engine ray)")
    if engine == "local" and threads is not None:
        raise ValueError("threads: the CPUs of each Ray worker, so it needs engine='ray' (--engine ray); "
                         "the local engine uses this process's threads (FENNEC_THREADS, OMP_NUM_THREADS)")
    if engine == "local" and (gpus is not None or memory is not None):
        raise ValueError("gpus, memory: what each Ray worker holds, so they need engine='ray' (--engine ray); "
                         "the local engine runs torch models on FENNEC_DEVICE (default cpu)")
    for name, value in (("workers", workers), ("threads", threads), ("memory", memory)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not gpus > 0
                             or gpus != gpus or gpus == float("inf")):
        raise ValueError(f"gpus: expected a positive number of GPUs per worker (0.5 shares one between two), "
                         f"got {gpus!r}")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("engine 'ray' needs Ray installed: pip install 'fennec[ray]' "
                             "(or measure with --engine local)") from None


def measure(zoo: Zoo, *, kinds: Iterable[str] | str | None = None, models: Sequence[str] | None = None,
            tasks: Sequence[str] | None = None, engine: str = "local", address: str | None = None,
            workers: int | None = None, threads: int | None = None, gpus: float | None = None,
            memory: int | None = None, cache_dir: str | os.PathLike[str] | None = None, seed: int = 0,
            retry_failed: bool = False, extractors: ExtractorFactory | None = None,
            progress: Callable[[str | None], None] | None = None,
            expect_steps: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Measures every (model, task, kind) cell of the zoo the history lacks; returns a summary.

    ``kinds``: ``linear_probe`` (the default: held-out accuracy in %) and/or the forward-pass
    metrics of :data:`fennec.metrics.METRICS`; ``models`` / ``tasks``: only these (default: all
    in the zoo; models that cannot be run here and tasks without images are left out, and the
    summary says why). ``engine``: ``local`` (this process) or ``ray`` (``workers`` actors,
    each holding a model loaded while it takes that model's jobs, heaviest models first, with
    ``threads`` CPUs (default 1) and as many threads, ``gpus`` GPUs (torch models extract
    features there; ``finetune`` trains on the CPU, where its recipe is deterministic) and
    ``memory`` bytes, as Ray reserves them; ``address``: a running cluster, else Ray starts a
    local one). ``cache_dir``: models' weights and the feature cache (default
    :func:`fennec.proxy.proxy_cache_dir`); ``seed`` draws a demo task's images as build-demo
    does. ``extractors``: how a model id becomes a feature extractor (default
    :class:`ZooExtractors`). ``progress`` is called with no text before the first job and with
    a text as each job finishes; ``expect_steps`` once, with the number of jobs.
    """
    from ..proxy import proxy_cache_dir

    started = time.perf_counter()
    chosen = check_kinds(kinds)
    _check_engine(engine, address, workers, threads, gpus, memory)
    cache = str(proxy_cache_dir(cache_dir))
    failed = zoo.measure_failures()
    plan = plan_cells(zoo, chosen, models, tasks, failed=None if retry_failed else set(failed))
    _runnable(zoo, plan, extractors)
    make = extractors or ZooExtractors(zoo.path)
    # Ray's actors start now, while the tasks' images load
    pool = (RayEngine(make, cache, jobs=len(plan.jobs), workers=workers, address=address, threads=threads or 1,
                      gpus=float(gpus or 0.0), memory=memory) if engine == "ray" and plan.jobs else None)
    try:
        return _measure(zoo, plan, chosen, engine, pool, make, cache, seed, failed, progress, expect_steps,
                        started)
    finally:
        if pool is not None:
            pool.close()


def _measure(zoo: Zoo, plan: Plan, chosen: Sequence[str], engine: str, pool: RayEngine | None,
             make: ExtractorFactory, cache: str, seed: int, failed: dict[tuple[str, str, str], str],
             progress: Callable[[str | None], None] | None, expect_steps: Callable[[int], None] | None,
             started: float) -> dict[str, Any]:
    """The rest of :func:`measure`, once the plan is made and the engine started."""
    needed = list(dict.fromkeys(job.task for job in plan.jobs))
    task_rows = [t for t in zoo.tasks() if t["id"] in set(needed)]
    inputs, plan.skipped_tasks = task_inputs(task_rows, seed, zoo.task_images())
    plan.jobs = [job for job in plan.jobs if job.task in inputs]
    groups: dict[str, list[tuple[Job, TaskInputs]]] = {}
    for job in plan.jobs:
        groups.setdefault(job.model, []).append((job, inputs[job.task]))
    # A model's jobs come grouped by image source (the jobs of one source share its extraction),
    # the largest sources first, so the last jobs of a model, the ones another worker may take
    # at the end, are its smallest.
    ordered = _heaviest_first(zoo, [(model, sorted(work, key=lambda w: (-len(w[1].source.images), w[1].source.name)))
                                    for model, work in groups.items()])
    summary: dict[str, Any] = {
        "kinds": list(chosen), "engine": engine, "planned_cells": plan.cells, "jobs": len(plan.jobs),
        "already_present": plan.present, "measured": 0, "failed": 0, "lost": 0, "failures": {}, "lost_jobs": {},
        "finetune_fallbacks": {},
        "skipped_models": plan.skipped_models, "skipped_tasks": plan.skipped_tasks, "extraction_seconds": 0.0,
        "extraction_seconds_by_model": {}}
    if expect_steps is not None:
        expect_steps(len(plan.jobs))
    say = progress or (lambda text: None)
    say(None)
    if not plan.jobs:
        summary["seconds"] = 0.0
        return summary
    fingerprints = _fingerprints(zoo)
    results = (pool.results(ordered, fingerprints) if pool is not None
               else local_results(ordered, make, cache, fingerprints))
    written: set[tuple[str, str, str]] = set()
    for result in results:
        write_result(zoo, result, inputs[result.task], engine, written, failed, summary)
        say(f"{result.model} on {result.task}")
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["extraction_seconds"] = round(summary["extraction_seconds"], 3)
    return summary


def write_result(zoo: Zoo, result: JobResult, inputs: TaskInputs, engine: str, written: set[tuple[str, str, str]],
                 failed: dict[tuple[str, str, str], str], summary: dict[str, Any]) -> None:
    """Stores one job's cells, each in its own transaction; a cell already written (a retried job
    that came back twice) is not written again."""
    if result.lost is not None:
        summary["lost"] += 1
        summary["lost_jobs"][f"{result.model}/{result.task}"] = result.lost
        return
    summary["extraction_seconds"] += result.extraction_seconds
    by_model = summary["extraction_seconds_by_model"]
    by_model[result.model] = round(by_model.get(result.model, 0.0) + result.extraction_seconds, 3)
    for kind, score in result.scores.items():
        cell = (result.model, result.task, kind)
        if cell in written:
            continue
        zoo.add_history(History.from_rows([(result.model, result.task, score)]), kind=kind,
                        source=_source(kind, result.model, inputs, engine, result.notes.get(kind)))
        written.add(cell)
        if cell in failed:
            zoo.clear_measure_failure(*cell)
        summary["measured"] += 1
    for kind, reason in result.failures.items():
        cell = (result.model, result.task, kind)
        if cell in written:
            continue
        zoo.add_measure_failure(*cell, reason, _source(kind, result.model, inputs, engine))
        written.add(cell)
        summary["failed"] += 1
        summary["failures"][f"{result.model}/{result.task}/{kind}"] = reason
        if kind == "finetune" and reason.startswith(FALLBACK):
            summary["finetune_fallbacks"].setdefault(result.model, reason)  # once per model: the reason is the model's
