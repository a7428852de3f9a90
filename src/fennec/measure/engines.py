"""Engines that run a plan's jobs and hand each result back to the driver as it finishes.

Neither writes to the zoo: the driver (:func:`fennec.measure.measure`) does, one cell at a time.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
from collections import deque
from collections.abc import Iterator
from typing import Any

from .cells import ExtractorFactory, JobResult, Measurer
from .inputs import ImageSource, TaskInputs
from .plan import Job

__all__ = ["ENGINES", "Dispatch", "MeasureActor", "RayEngine", "local_results", "ray_results"]

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


class MeasureActor:
    """A Ray worker that holds one model loaded at a time and takes that model's jobs (the class Ray
    runs as an actor). Each call names its model, so a worker goes on to the next model without a
    new process (its start and imports cost seconds), and a worker Ray restarts after a crash
    loads the model of the call it retries."""

    def __init__(self, make_extractor: ExtractorFactory, cache_dir: str, threads: int, gpus: float = 0.0) -> None:
        # Every runtime in this process uses the CPUs the actor holds and no more, so actors side
        # by side do not oversubscribe the machine: onnxruntime reads FENNEC_THREADS (its default is
        # one thread per core), BLAS and torch read OMP_NUM_THREADS (Ray sets it; set here for
        # workers started by hand), torch again if it was imported before. An actor given GPUs
        # (Ray sets CUDA_VISIBLE_DEVICES to them) runs torch models there (FENNEC_DEVICE); onnxruntime
        # takes its CUDA provider first wherever it has one.
        from ..proxy.backends import DEVICE_VARIABLE, THREADS_VARIABLE

        if gpus > 0:
            os.environ[DEVICE_VARIABLE] = "cuda"
        os.environ[THREADS_VARIABLE] = str(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.make_extractor = make_extractor
        self.cache_dir = cache_dir
        self.measurer: Measurer | None = None
        # What every job needs, imported while the driver still loads the tasks' images.
        for module in ("onnxruntime", "sklearn.linear_model", "sklearn.preprocessing"):
            try:
                importlib.import_module(module)
            except ImportError:
                pass

    def run(self, fingerprint: str, job: Job, inputs: TaskInputs, source: ImageSource) -> JobResult:
        if self.measurer is None or self.measurer.model != job.model:
            self.measurer = None  # the last model is let go before the next one loads
            self.measurer = Measurer(job.model, self.make_extractor, self.cache_dir, fingerprint)
        inputs.source = source
        return self.measurer.run(job, inputs)


class Dispatch:
    """Which job an idle actor takes next: the next one of the model it holds; else the first model
    of the queue that no actor holds (the queue comes heaviest first, so the longest models start
    early); else, at the end, the last job of the model with the most jobs left, so no actor idles
    while another still has a queue (that model is then loaded a second time). Taking from the
    end leaves the holder the jobs of the image source it is extracting (they share its
    features), and the queue of a model ends with its smallest sources."""

    def __init__(self, groups: list[tuple[str, Work]]) -> None:
        self.left: dict[str, deque[tuple[Job, TaskInputs]]] = {model: deque(work) for model, work in groups if work}
        self.order = [model for model, work in groups if work]
        self.fresh = 0  # models before it in the order are held by an actor or have no jobs left
        self.holding: dict[int, str] = {}
        self.taking_from_end: set[int] = set()  # actors that hold a model another actor holds too

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
                self.taking_from_end.add(slot)
            self.holding[slot] = model
        return self.left[model].pop() if slot in self.taking_from_end else self.left[model].popleft()


def _fit_workers(workers: int, threads: int, gpus: float, resources: dict[str, float]) -> int:
    """How many actors of ``threads`` CPUs and ``gpus`` GPUs the cluster holds at once (at most
    ``workers``); a ValueError when not one fits, rather than waiting for resources that never come."""
    cpus, gpu_total = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    if gpus > gpu_total:
        raise ValueError(f"gpus: each worker asks for {gpus:g} GPU(s) but the Ray cluster has {gpu_total:g}; "
                         "give fewer (--gpus 0.5 shares one between two workers) or measure on the CPUs "
                         "(leave --gpus out)")
    if threads > cpus:
        raise ValueError(f"threads: each worker asks for {threads} CPU(s) but the Ray cluster has {cpus:g}; "
                         "give fewer (--threads)")
    fits = int(cpus // threads)
    if gpus > 0:
        fits = min(fits, int(gpu_total // gpus))
    return max(min(workers, fits), 1)


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


class RayEngine:
    """A plan's jobs on Ray: ``workers`` actors of ``threads`` CPUs, ``gpus`` GPUs and ``memory``
    bytes each (Ray schedules an actor only where they are free; at most ``jobs`` actors). An
    actor holds one model loaded and takes its jobs one at a time, then the next model
    (:class:`Dispatch`). Ray starts here (a local cluster of ``workers * threads`` CPUs and the
    GPUs it finds) unless it runs already or ``address`` names a cluster.

    The actors are started when the engine is made, so their start (a process, its imports)
    overlaps whatever the driver does before :meth:`results` (loading the tasks' images);
    :meth:`close` stops them, and Ray where it was started here."""

    def __init__(self, make_extractor: ExtractorFactory, cache_dir: str, *, jobs: int, workers: int | None = None,
                 address: str | None = None, threads: int = 1, gpus: float = 0.0, memory: int | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("engine 'ray' needs Ray: pip install 'fennec[ray]'") from None
        self._ray = ray
        workers = workers or max(os.cpu_count() or 1, 1)
        self.started = _init_ray(address, workers, threads)
        try:
            workers = _fit_workers(workers, threads, gpus, ray.cluster_resources())  # type: ignore[no-untyped-call]
            workers = max(min(workers, jobs), 1)
            options: dict[str, Any] = {"num_cpus": threads, "max_restarts": max_retries,
                                       "max_task_retries": max_retries}
            if gpus > 0:
                options["num_gpus"] = gpus
            if memory is not None:
                options["memory"] = memory
            actor_class: Any = ray.remote(**options)(MeasureActor)
            self.actors = [actor_class.remote(make_extractor, cache_dir, threads, gpus) for _ in range(workers)]
        except BaseException:
            if self.started:
                ray.shutdown()
            raise

    def results(self, groups: list[tuple[str, Work]], fingerprints: dict[str, str]) -> Iterator[JobResult]:
        """Each job's result, in the order they finish; a job whose actor died past its retries
        comes back ``lost``."""
        from ray.exceptions import RayError

        ray = self._ray
        dispatch = Dispatch(groups)
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
            call = self.actors[slot].run.remote(fingerprints.get(job.model, ""), job, light, refs[key])
            pending[call] = (job, slot)

        for slot in range(len(self.actors)):
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

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self.started:
            self._ray.shutdown()
            self.started = False


def ray_results(groups: list[tuple[str, Work]], make_extractor: ExtractorFactory, cache_dir: str,
                fingerprints: dict[str, str], *, workers: int | None = None, address: str | None = None,
                threads: int = 1, gpus: float = 0.0, memory: int | None = None,
                max_retries: int = MAX_RETRIES) -> Iterator[JobResult]:
    """The jobs of ``groups`` on a :class:`RayEngine` started for them and closed after."""
    engine = RayEngine(make_extractor, cache_dir, jobs=sum(len(work) for _, work in groups), workers=workers,
                       address=address, threads=threads, gpus=gpus, memory=memory, max_retries=max_retries)
    try:
        yield from engine.results(groups, fingerprints)
    finally:
        engine.close()
