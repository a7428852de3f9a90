"""Engines that run a plan's jobs and hand each result back to the driver as it finishes.

Neither writes to the zoo: the driver (:func:`fennec.measure.measure`) does, one cell at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

from .cells import ExtractorFactory, JobResult, Measurer
from .inputs import ImageSource, TaskInputs
from .plan import Job

__all__ = ["ENGINES", "local_results", "ray_results"]

ENGINES = ("local", "ray")
# Each job (model, task) is a task on its model's actor; Ray restarts an actor whose process
# died and re-runs the calls it had not finished, this many times.
MAX_RETRIES = 3

Work = list[tuple[Job, TaskInputs]]


def local_results(groups: list[tuple[str, Work]], make_extractor: ExtractorFactory, cache_dir: str,
                  fingerprints: dict[str, str]) -> Iterator[JobResult]:
    """In this process: one model loaded at a time, its jobs one after another."""
    for model, work in groups:
        measurer = Measurer(model, make_extractor, cache_dir, fingerprints.get(model, ""))
        for job, inputs in work:
            yield measurer.run(job, inputs)
        del measurer


class _MeasureActor:
    """Holds one model loaded and takes its jobs (the class Ray runs as an actor)."""

    def __init__(self, model: str, make_extractor: ExtractorFactory, cache_dir: str, fingerprint: str,
                 threads: int) -> None:
        # Ray sets OMP_NUM_THREADS to the CPUs the actor holds, which torch follows once imported.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        self.measurer = Measurer(model, make_extractor, cache_dir, fingerprint)

    def run(self, job: Job, inputs: TaskInputs, source: ImageSource) -> JobResult:
        inputs.source = source
        return self.measurer.run(job, inputs)


def _split_groups(groups: list[tuple[str, Work]], workers: int) -> list[tuple[str, Work]]:
    """With fewer models than workers, a model's jobs are shared by several actors, each image source whole."""
    groups = list(groups)
    while len(groups) < workers:
        widest = max(range(len(groups)), key=lambda i: len({w[1].source.key for w in groups[i][1]}))
        model, work = groups[widest]
        keys = list(dict.fromkeys(w[1].source.key for w in work))
        if len(keys) < 2:
            break
        first = set(keys[: len(keys) // 2])
        groups[widest] = (model, [w for w in work if w[1].source.key in first])
        groups.append((model, [w for w in work if w[1].source.key not in first]))
    return groups


def _init_ray(address: str | None, workers: int, threads: int) -> bool:
    """Starts Ray unless it runs already; True when it was started here (and is to be shut down here)."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=workers * threads, include_dashboard=False, **quiet)
    return True


def ray_results(groups: list[tuple[str, Work]], make_extractor: ExtractorFactory, cache_dir: str,
                fingerprints: dict[str, str], *, workers: int | None = None, address: str | None = None,
                threads: int = 1, max_retries: int = MAX_RETRIES) -> Iterator[JobResult]:
    """On Ray: one actor per model (``threads`` CPUs each, at most ``workers`` alive at once) takes its jobs;
    results come back in the order they finish. Ray starts here (a local cluster of ``workers * threads``
    CPUs) unless it runs already or ``address`` names a cluster."""
    try:
        import ray
        from ray.exceptions import RayError
    except ImportError:
        raise ImportError("engine 'ray' needs Ray: pip install 'fennec[ray]'") from None
    workers = workers or max(os.cpu_count() or 1, 1)
    started = _init_ray(address, workers, threads)
    try:
        if address or not started:
            cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
            workers = min(workers, max(int(cpus) // threads, 1))
        actor_class: Any = ray.remote(num_cpus=threads, max_restarts=max_retries, max_task_retries=max_retries)(
            _MeasureActor)
        queue = deque(_split_groups(groups, workers))
        refs: dict[str, Any] = {}  # each image source goes to the object store once
        pending: dict[Any, tuple[Job, int]] = {}
        actors: dict[int, tuple[Any, int]] = {}  # group number -> (actor, jobs left)
        group_number = 0
        while queue or pending:
            while queue and len(actors) < workers:
                model, work = queue.popleft()
                actor = actor_class.remote(model, make_extractor, cache_dir, fingerprints.get(model, ""), threads)
                for job, inputs in work:
                    key = inputs.source.key
                    if key not in refs:
                        refs[key] = ray.put(inputs.source)
                    # The images travel once, by reference; the job carries only its rows and labels.
                    light = dataclasses.replace(inputs, source=ImageSource(key, b"", None))
                    pending[actor.run.remote(job, light, refs[key])] = (job, group_number)
                actors[group_number] = (actor, len(work))
                group_number += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job, number = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except RayError as error:
                    yield JobResult(job.model, job.task, lost=f"{type(error).__name__}: {error}"[:500])
                actor, left = actors[number]
                if left <= 1:
                    del actors[number]
                    ray.kill(actor)  # frees its CPUs for the next model
                else:
                    actors[number] = (actor, left - 1)
    finally:
        if started:
            ray.shutdown()
