"""Engines that run a plan's jobs and hand each result back to the driver as it finishes.

Neither writes to the zoo: the driver (:func:`fennec.measure.measure`) does, one cell at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections import deque
from collections.abc import Iterator
from typing import Any

from .cells import ExtractorFactory, JobResult, Measurer
from .inputs import ImageSource, TaskInputs
from .plan import Job

__all__ = ["ENGINES", "local_results", "ray_results"]

ENGINES = ("local", "ray")
# Each job (model, task) is a call on the actor holding its model; Ray restarts an actor whose process
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
    """A Ray worker that holds one model loaded at a time and takes that model's jobs (the class Ray
    runs as an actor). Each call names its model, so a worker goes on to the next model without a
    new process (its start and imports cost seconds), and a worker Ray restarts after a crash
    loads the model of the call it retries."""

    def __init__(self, make_extractor: ExtractorFactory, cache_dir: str, threads: int) -> None:
        # Every runtime in this process uses the CPUs the actor holds and no more, so actors side
        # by side do not oversubscribe the machine: onnxruntime reads FENNEC_THREADS (its default is
        # one thread per core), BLAS and torch read OMP_NUM_THREADS (Ray sets it; set here for
        # workers started by hand), torch again if it was imported before.
        from ..proxy.backends import THREADS_VARIABLE

        os.environ[THREADS_VARIABLE] = str(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.make_extractor = make_extractor
        self.cache_dir = cache_dir
        self.measurer: Measurer | None = None

    def run(self, fingerprint: str, job: Job, inputs: TaskInputs, source: ImageSource) -> JobResult:
        if self.measurer is None or self.measurer.model != job.model:
            self.measurer = None  # the last model is let go before the next one loads
            self.measurer = Measurer(job.model, self.make_extractor, self.cache_dir, fingerprint)
        inputs.source = source
        return self.measurer.run(job, inputs)


class _Dispatch:
    """Which job an idle actor takes next: the next one of the model it holds; else the first model
    of the queue that no actor holds (the queue comes heaviest first, so the longest models start
    early); else, at the end, a job of the model with the most jobs left, so no actor idles while
    another still has a queue (that model is then loaded a second time)."""

    def __init__(self, groups: list[tuple[str, Work]]) -> None:
        self.left: dict[str, deque[tuple[Job, TaskInputs]]] = {model: deque(work) for model, work in groups if work}
        self.order = [model for model, work in groups if work]
        self.fresh = 0  # models before it in the order are held by an actor or have no jobs left
        self.holding: dict[int, str] = {}

    def next(self, slot: int) -> tuple[Job, TaskInputs] | None:
        """Constant work per call in the number of models (a hub has many): an actor moves on only
        when its model has no jobs left, so every model with jobs left that no actor holds lies
        after ``fresh``, and once none does, the models with jobs left are among those held."""
        model = self.holding.get(slot)
        if model is None or not self.left[model]:
            if self.fresh < len(self.order):
                model = self.order[self.fresh]
                self.fresh += 1
            else:
                busy = [m for m in self.holding.values() if self.left[m]]
                if not busy:
                    return None
                model = max(busy, key=lambda m: len(self.left[m]))
            self.holding[slot] = model
        return self.left[model].popleft()


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
    """On Ray: ``workers`` actors of ``threads`` CPUs each; an actor holds one model loaded and takes
    its jobs one at a time, then the next model (:class:`_Dispatch`); results come back in the
    order they finish. Ray starts here (a local cluster of ``workers * threads`` CPUs) unless it
    runs already or ``address`` names a cluster."""
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
        dispatch = _Dispatch(groups)
        workers = max(min(workers, sum(len(work) for _, work in groups)), 1)
        actor_class: Any = ray.remote(num_cpus=threads, max_restarts=max_retries, max_task_retries=max_retries)(
            _MeasureActor)
        actors = [actor_class.remote(make_extractor, cache_dir, threads) for _ in range(workers)]
        refs: dict[str, Any] = {}  # each image source goes to the object store once
        pending: dict[Any, tuple[Job, int]] = {}  # call in flight -> (its job, the actor running it)

        def give(slot: int) -> None:
            """One job at a time per actor, so an actor that is done early can take another's work."""
            taken = dispatch.next(slot)
            if taken is None:
                return
            job, inputs = taken
            key = inputs.source.key
            if key not in refs:
                refs[key] = ray.put(inputs.source)
            # The images travel once, by reference; the job carries only its rows and labels.
            light = dataclasses.replace(inputs, source=ImageSource(key, b"", None))
            pending[actors[slot].run.remote(fingerprints.get(job.model, ""), job, light, refs[key])] = (job, slot)

        for slot in range(workers):
            give(slot)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job, slot = pending.pop(ref)
                give(slot)  # before the result is handed on, so the actor is not idle meanwhile
                try:
                    yield ray.get(ref)
                except RayError as error:
                    yield JobResult(job.model, job.task, lost=f"{type(error).__name__}: {error}"[:500])
        for actor in actors:
            ray.kill(actor)
    finally:
        if started:
            ray.shutdown()
