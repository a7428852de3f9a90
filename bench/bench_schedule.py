"""What planning and scheduling a hub-sized measure run costs, without the models' compute.

``fennec zoo measure`` on a hub of 10,000 models x 200 datasets is 2,000,000 (model, task)
jobs, one cell per kind each. This script measures, on this machine, what the driver and Ray
add around the models' forward passes:

1. Planning: a SQLite zoo of ``--models`` x ``--tasks`` is created (``Zoo.create``,
   ``add_models``, ``add_tasks``), then ``plan_cells`` for 1 to ``--max-kinds`` kinds (empty
   history: every cell missing) and the grouping by model that ``measure()`` does: seconds, peak
   Python memory (tracemalloc, a second pass) and the process's peak RSS; the engine's dispatch
   queue (``Dispatch``) drained over the whole plan as 2 actors would drain it.
2. Scheduling: the real ``fennec.measure.engines.ray_results`` (its actors, ``.remote`` calls,
   object-store refs, ``ray.wait``, results back to the driver) with a no-op kernel: the
   extractor returns a fixed (images x 4) array without computing, and the kind's score is
   replaced by a constant in every Ray worker (a ``worker_process_setup_hook``) and here, so a
   job costs only the Measurer's bookkeeping, its feature-cache write (to ``--cache-dir``,
   default /dev/shm, so disk flushes do not count as scheduling) and the engine. Shapes:
   1 x 2 (the fixed cost of a run: 2 actors start, 2 calls, teardown), then ``--fit``
   (2 x 2000, 20 x 200, 200 x 2) on which the per-call, per-image-source and per-model-switch
   costs are fitted, then ``--check`` (100 x 100) and, with ``--piece`` (e.g. 10000 x 2: every
   model of the hub), shapes predicted from the fit before they run. One actor's start is timed
   alone; the Measurer without Ray (``local_results``) on tmpfs and with its cache on disk.
3. The driver's write: the same loop ``measure()`` runs (``ray_results`` feeding
   ``fennec.measure.write_result``: one SQLite transaction per cell) into the hub-sized zoo of step 1,
   each write timed.
4. With ``--extraction MODELS``: the real ``fennec.measure.measure`` (local engine) of each
   packaged model on one demo task from an empty cache: extraction seconds per image, the
   feature width and the image bytes (the compute the overheads are compared with).

It prints a table and the extrapolation to ``--models`` x ``--tasks`` with its formula, and
writes everything as JSON with ``--json PATH``. Run (the machine is shared: niced, with the
load average before and after)::

    uptime; nice -n 5 python bench/bench_schedule.py --json /tmp/schedule.json; uptime
    nice -n 5 python bench/bench_schedule.py --skip-plan --piece 10000x2
    nice -n 5 python bench/bench_schedule.py --skip-plan --skip-ray \\
        --extraction mobilenet_v2,pplcnet_x1,resnet50_thin,efficientnet_lite0
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from typing import Any

import numpy as np

import fennec
from fennec.measure import write_result
from fennec.measure.cells import JobResult
from fennec.measure.engines import Dispatch, local_results, ray_results
from fennec.measure.inputs import ImageSource, TaskInputs
from fennec.measure.plan import Job, plan_cells

KINDS = ("linear_probe", "logme", "hscore")
IMAGES = 8  # images per tiny source: 4 train, 4 held out
WIDTH = 4  # the no-op extractor's feature width


def _no_score(kind: str, inputs: Any, x_train: Any, x_test: Any) -> float:
    return 0.0


def _no_op_kernel() -> None:
    """In every Ray worker at start, and in this process: a kind's score costs nothing."""
    import importlib

    # by import_module: the attribute fennec.measure is the measure() function, not the package
    setattr(importlib.import_module("fennec.measure.cells"), "_score", _no_score)


class NoOpExtractor:
    """Features without computing: a fixed array, as many rows as images."""

    fixed = np.zeros((IMAGES, WIDTH), dtype=np.float32)

    def features(self, images: Any) -> np.ndarray:
        return self.fixed[:len(images)]


class NoOpExtractors:
    """The ExtractorFactory of the bench: every model id gives the no-op extractor."""

    def __call__(self, model_id: str, cache_dir: Any) -> NoOpExtractor:
        return NoOpExtractor()


def _inputs(n_tasks: int) -> dict[str, TaskInputs]:
    """One tiny image source per task (as a hub's datasets are: one source each)."""
    out = {}
    for j in range(n_tasks):
        task = f"task-{j}"
        source = ImageSource(task, f"bench-schedule:{task}".encode(), np.zeros((IMAGES, 8, 8), dtype=np.uint8))
        half = IMAGES // 2
        out[task] = TaskInputs(task, source, np.arange(half), np.arange(half, IMAGES), np.arange(half) % 2,
                               np.arange(half) % 2, "bench_schedule: tiny fixed split")
    return out


def _groups(n_models: int, n_tasks: int, kinds: tuple[str, ...]) -> list[tuple[str, list[tuple[Job, TaskInputs]]]]:
    inputs = _inputs(n_tasks)
    return [(f"model-{i}", [(Job(f"model-{i}", task, kinds), inputs[task]) for task in inputs])
            for i in range(n_models)]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- 1. planning ------------------------------------------------------------------------------------

def hub_zoo(path: str, n_models: int, n_tasks: int) -> tuple[fennec.Zoo, dict[str, float]]:
    start = time.perf_counter()
    zoo = fennec.Zoo.create(path)
    created = time.perf_counter()
    zoo.add_models([{"id": f"model-{i}", "n_params": 1e6 + i} for i in range(n_models)])
    models = time.perf_counter()
    zoo.add_tasks([{"id": f"task-{j}", "n_classes": 10, "n_train": 300} for j in range(n_tasks)])
    tasks = time.perf_counter()
    return zoo, {"create_s": created - start, "add_models_s": models - created, "add_tasks_s": tasks - models}


def _plan_and_group(zoo: fennec.Zoo, kinds: tuple[str, ...], inputs: dict[str, TaskInputs]) -> tuple[Any, Any]:
    plan = plan_cells(zoo, kinds, None, None, failed=set())
    groups: dict[str, list[tuple[Job, TaskInputs]]] = {}
    for job in plan.jobs:  # as measure() groups them
        groups.setdefault(job.model, []).append((job, inputs[job.task]))
    return plan, groups


def planning(zoo: fennec.Zoo, n_tasks: int, max_kinds: int) -> list[dict[str, Any]]:
    inputs = _inputs(n_tasks)
    rows = []
    for k in range(1, max_kinds + 1):
        kinds = KINDS[:k]
        gc.collect()
        start = time.perf_counter()
        plan = plan_cells(zoo, kinds, None, None, failed=set())
        planned = time.perf_counter()
        _, groups = _plan_and_group_from(plan, inputs)
        grouped = time.perf_counter()
        rss = _rss_mib()  # the high-water mark before tracemalloc (whose own records are large) runs
        jobs, cells = len(plan.jobs), plan.cells
        del plan, groups
        gc.collect()
        tracemalloc.start()
        traced = _plan_and_group(zoo, kinds, inputs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del traced
        gc.collect()
        rows.append({"kinds": list(kinds), "jobs": jobs, "cells": cells, "plan_s": planned - start,
                     "group_s": grouped - planned, "peak_mib": peak / 2**20, "rss_peak_mib": rss})
    return rows


def _plan_and_group_from(plan: Any, inputs: dict[str, TaskInputs]) -> tuple[Any, Any]:
    groups: dict[str, list[tuple[Job, TaskInputs]]] = {}
    for job in plan.jobs:
        groups.setdefault(job.model, []).append((job, inputs[job.task]))
    return plan, groups


def dispatch_drain(n_models: int, n_tasks: int, slots: int = 2) -> dict[str, float]:
    """The engine's queue over the whole plan, drained as ``slots`` actors take jobs (no Ray)."""
    groups = _groups(n_models, n_tasks, KINDS[:1])
    start = time.perf_counter()
    dispatch = Dispatch(groups)
    taken, slot = 0, 0
    while dispatch.next(slot) is not None:
        taken += 1
        slot = (slot + 1) % slots
    seconds = time.perf_counter() - start
    return {"models": n_models, "tasks": n_tasks, "jobs": taken, "seconds": seconds,
            "per_job_us": 1e6 * seconds / max(taken, 1)}


# -- 2. scheduling ---------------------------------------------------------------------------------

def run_shape(n_models: int, n_tasks: int, cache_root: str, workers: int, engine: str = "ray",
              kinds: tuple[str, ...] = KINDS[:1]) -> dict[str, Any]:
    groups = _groups(n_models, n_tasks, kinds)
    cache = tempfile.mkdtemp(prefix="cache-", dir=cache_root)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        first = None
        count = 0
        results = (ray_results(groups, NoOpExtractors(), cache, {}, workers=workers) if engine == "ray"
                   else local_results(groups, NoOpExtractors(), cache, {}))
        for result in results:
            if first is None:
                first = time.perf_counter() - start
            if result.lost or result.failures or len(result.scores) != len(kinds):
                raise RuntimeError(f"a no-op job did not give its scores: {result}")
            if any(score != 0.0 for score in result.scores.values()):
                raise RuntimeError(f"the no-op score did not reach the worker: {result}")
            count += 1
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert count == n_models * n_tasks
    return {"engine": engine, "models": n_models, "tasks": n_tasks, "jobs": count, "seconds": seconds,
            "driver_cpu_s": cpu, "first_result_s": first}


def actor_starts(cache_root: str, repeats: int) -> dict[str, float]:
    """One engine actor at a time: created, its first (no-op) call answered, killed."""
    import ray

    from fennec.measure.engines import MeasureActor

    actor_class: Any = ray.remote(num_cpus=1)(MeasureActor)
    (job, inputs), = _groups(1, 1, KINDS[:1])[0][1]
    cache = tempfile.mkdtemp(prefix="cache-", dir=cache_root)
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            actor = actor_class.remote(NoOpExtractors(), cache, 1)
            ray.get(actor.run.remote("", job, inputs, inputs.source))
            times.append(time.perf_counter() - start)
            ray.kill(actor)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"repeats": repeats, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


class Model:
    """Engine seconds for M models x N tasks on W actors: F (the 1 x 2 run: actors start, 2 calls,
    teardown) + (M*N - 2) calls + N image sources (one per task: each put in the object store once,
    and new to every actor) + (M - 1) model switches + the dispatch queue's M^2 term."""

    def __init__(self, fixed: float, call: float, put: float, switch: float, dispatch: float) -> None:
        self.fixed, self.call, self.put, self.switch, self.dispatch = fixed, call, put, switch, dispatch

    def __call__(self, m: int, n: int) -> float:
        return (self.fixed + (m * n - 2) * self.call + n * self.put + (m - 1) * self.switch
                + self.dispatch * m * m)

    def formula(self) -> str:
        return (f"T(M, N) = {self.fixed:.2f} s + (M*N - 2)*{1e3 * self.call:.3f} ms + N*{1e3 * self.put:.3f} ms"
                f" + (M - 1)*{1e3 * self.switch:.3f} ms"
                f" + M^2*{1e9 * self.dispatch:.1f} ns")


# -- 3. the driver's write ------------------------------------------------------------------------

def driver_loop(zoo: fennec.Zoo, n_models: int, n_tasks: int, cache_root: str, workers: int) -> dict[str, Any]:
    """measure()'s loop: each result from ray_results written by write_result, one transaction per cell."""
    groups = _groups(n_models, n_tasks, KINDS[:1])
    inputs = {task: work for task, work in ((w.task, w) for _, group in groups for _, w in group)}
    cache = tempfile.mkdtemp(prefix="cache-", dir=cache_root)
    summary: dict[str, Any] = {"measured": 0, "failed": 0, "lost": 0, "failures": {}, "lost_jobs": {},
                               "extraction_seconds": 0.0}
    written: set[tuple[str, str, str]] = set()
    writes = []
    first = 0.0
    try:
        start = time.perf_counter()
        for result in ray_results(groups, NoOpExtractors(), cache, {}, workers=workers):
            before = time.perf_counter()
            first = first or before - start
            write_result(zoo, result, inputs[result.task], "ray", written, {}, summary)
            writes.append(time.perf_counter() - before)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert summary["measured"] == n_models * n_tasks
    ordered = sorted(writes)
    return {"models": n_models, "tasks": n_tasks, "cells": len(writes), "seconds": seconds, "first_result_s": first,
            "steady_per_cell_ms": 1e3 * (seconds - first) / (len(writes) - 1),
            "write_total_s": sum(writes), "write_median_ms": 1e3 * statistics.median(writes),
            "write_mean_ms": 1e3 * statistics.fmean(writes), "write_p99_ms": 1e3 * ordered[int(0.99 * len(ordered))],
            "history_rows_after": zoo._con.execute("SELECT COUNT(*) FROM history").fetchone()[0]}


# -- 4. extraction -----------------------------------------------------------------------------------

def extraction(models: list[str], root: str, task: dict[str, str]) -> list[dict[str, Any]]:
    from fennec.measure import measure
    from fennec.measure.inputs import task_inputs

    rows = []
    for model in models:
        folder = tempfile.mkdtemp(prefix=f"extract-{model}-", dir=root)
        try:
            zoo = fennec.Zoo.create(os.path.join(folder, "zoo"))
            zoo.add_models([{"id": model}])
            zoo.add_tasks([task])
            found, skipped = task_inputs(zoo.tasks(), 0, zoo.task_images())
            if task["id"] not in found:
                raise RuntimeError(f"task {task['id']}: {skipped}")
            source = found[task["id"]].source
            images = np.asarray(source.images)
            cache = os.path.join(folder, "cache")
            summary = measure(zoo, kinds="linear_probe", cache_dir=cache)
            zoo.close()
            files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(cache, "zoo-features")) for f in fs]
            width = int(np.load(files[0]).shape[1]) if files else None
            ok = summary["measured"] == 1
            rows.append({"model": model, "measured": ok, "failures": summary["failures"],
                         "skipped": summary["skipped_models"], "images": len(images),
                         "image_bytes": int(images.nbytes), "image_shape": list(images.shape[1:]),
                         "extraction_s": summary["extraction_seconds"], "run_s": summary["seconds"],
                         "per_image_ms": 1e3 * summary["extraction_seconds"] / len(images) if ok else None,
                         "feature_width": width})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


# -- main -------------------------------------------------------------------------------------------

def shape(text: str) -> tuple[int, int]:
    """MxN as (M, N)."""
    m, n = text.lower().split("x")
    return int(m), int(n)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000, help="models of the hub (default 10,000)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks of the hub (default 200)")
    parser.add_argument("--max-kinds", type=int, default=3, help="plan for 1..this many kinds (at most 3)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default 2, this machine's cores)")
    parser.add_argument("--fit", default="2x2000,20x200,200x2",
                        help="the shapes (MxN,...) the per-call, per-source and per-model costs are fitted on")
    parser.add_argument("--check", default="100x100", help="the shape that checks the fit (MxN)")
    parser.add_argument("--piece", default="", help="a larger shape run after the fit, e.g. 10000x2 (default none)")
    parser.add_argument("--writes", default="20x100", help="the driver-loop shape written to the zoo (MxN)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fixed-cost shape and actor starts")
    parser.add_argument("--cluster-workers", type=int, default=256, help="K: the cluster's actors, extrapolated")
    parser.add_argument("--cache-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where the no-op jobs' feature cache goes (default /dev/shm)")
    parser.add_argument("--dir", default=None, help="where the hub zoo is made (default a temporary folder)")
    parser.add_argument("--skip-plan", action="store_true", help="no planning, no hub zoo, no driver loop")
    parser.add_argument("--skip-ray", action="store_true", help="no Ray shapes")
    parser.add_argument("--extraction", default="", help="packaged models to time extraction of (comma list)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"argv": sys.argv[1:], "load_before": _load(), "cpus": os.cpu_count(),
                           "hub": {"models": args.models, "tasks": args.tasks}}
    _no_op_kernel()
    work = tempfile.mkdtemp(prefix="bench-schedule-", dir=args.dir)
    cache_root = tempfile.mkdtemp(prefix="bench-schedule-", dir=args.cache_dir)
    zoo = None
    try:
        if not args.skip_plan:
            zoo, made = hub_zoo(os.path.join(work, "zoo"), args.models, args.tasks)
            out["zoo"] = made
            print(f"zoo of {args.models} models x {args.tasks} tasks: create {made['create_s']:.3f} s, add_models "
                  f"{made['add_models_s']:.3f} s, add_tasks {made['add_tasks_s']:.3f} s")
            out["planning"] = planning(zoo, args.tasks, min(args.max_kinds, len(KINDS)))
            print(f"{'kinds':>5} {'jobs':>10} {'cells':>10} {'plan s':>8} {'group s':>8} {'peak MiB':>9} {'RSS MiB':>8}")
            for row in out["planning"]:
                print(f"{len(row['kinds']):>5} {row['jobs']:>10,} {row['cells']:>10,} {row['plan_s']:>8.2f} "
                      f"{row['group_s']:>8.2f} {row['peak_mib']:>9.0f} {row['rss_peak_mib']:>8.0f}")
            out["dispatch"] = dispatch_drain(args.models, args.tasks, args.workers)
            d = out["dispatch"]
            print(f"dispatch queue drained over {d['jobs']:,} jobs by {args.workers} slots: {d['seconds']:.2f} s "
                  f"({d['per_job_us']:.2f} us per job)")
        if not args.skip_ray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import ray
            started = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"worker_process_setup_hook": _no_op_kernel})
            out["ray_init_s"] = time.perf_counter() - started
            print(f"ray.init: {out['ray_init_s']:.1f} s (Ray {ray.__version__}, {args.workers} workers of 1 CPU)")
            try:
                out["actor_start"] = actor_starts(cache_root, args.repeats)
                a = out["actor_start"]
                print(f"one actor: start + first call + kill, median {a['median_s']:.3f} s "
                      f"(min {a['min_s']:.3f}, max {a['max_s']:.3f})")
                shapes: list[dict[str, Any]] = []

                def show(row: dict[str, Any], predicted: float | None = None) -> None:
                    extra = f"  predicted {predicted:.2f} s ({row['seconds'] / predicted - 1:+.0%})" if predicted else ""
                    per = 1e3 * row["seconds"] / row["jobs"]
                    print(f"{row['engine']:>5} {row['models']:>6} x {row['tasks']:<5} {row['jobs']:>7,} jobs "
                          f"{row['seconds']:>8.2f} s  {per:>7.3f} ms/job  first {row['first_result_s']:.2f} s{extra}")
                    shapes.append({**row, "predicted_s": predicted})

                fixed_runs = [run_shape(1, 2, cache_root, args.workers) for _ in range(args.repeats)]
                for row in fixed_runs:
                    show(row)
                fixed = statistics.median(r["seconds"] for r in fixed_runs)
                # the queue's cost per model switch grows with the models left (measured above, no Ray)
                drained = out.get("dispatch") or dispatch_drain(args.models, 2, args.workers)
                dispatch = drained["seconds"] / drained["models"] ** 2
                fits = [run_shape(m, n, cache_root, args.workers) for m, n in map(shape, args.fit.split(","))]
                for row in fits:
                    show(row)
                # steady state (from the first result on, the actors are up: their start is in ``fixed``):
                # seconds = calls*call + image sources*put + model switches*switch, fitted (non-negative)
                from scipy.optimize import nnls

                terms = np.array([[r["jobs"] - 1, r["tasks"], r["models"] - 1] for r in fits], dtype=float)
                steady = np.array([r["seconds"] - r["first_result_s"] - dispatch * r["models"] ** 2 for r in fits])
                (call, put, switch), _ = nnls(terms, steady)
                per_call = max(fits, key=lambda r: r["jobs"] - r["tasks"])
                local = run_shape(2, 2000, cache_root, args.workers, engine="local")
                show(local)
                on_disk = run_shape(2, 500, work, args.workers, engine="local")
                show(on_disk)
                model = Model(fixed, call, put, switch, dispatch)
                m, n = shape(args.check)
                show(run_shape(m, n, cache_root, args.workers), model(m, n))
                if args.piece:
                    m, n = shape(args.piece)
                    show(run_shape(m, n, cache_root, args.workers), model(m, n))
                out["shapes"] = shapes
                out["model"] = {"fixed_s": fixed, "call_s": call, "put_s": put, "switch_s": switch,
                                "dispatch_s_per_m2": dispatch, "formula": model.formula(),
                                "local_call_s": local["seconds"] / local["jobs"],
                                "local_disk_call_s": on_disk["seconds"] / on_disk["jobs"]}
                print(model.formula())
                print(f"per call: Ray {1e3 * call:.3f} ms; the Measurer without Ray (local_results) "
                      f"{1e3 * out['model']['local_call_s']:.3f} ms per job, "
                      f"{1e3 * out['model']['local_disk_call_s']:.3f} ms with its feature cache on {work}")
                if zoo is not None:
                    m, n = shape(args.writes)
                    out["driver"] = driver_loop(zoo, m, n, cache_root, args.workers)
                    d = out["driver"]
                    print(f"driver loop (ray_results + write_result) {m} x {n} into the {args.models} x {args.tasks} zoo: "
                          f"{d['seconds']:.2f} s (first result {d['first_result_s']:.2f} s), after the first "
                          f"{d['steady_per_cell_ms']:.3f} ms/cell; write median "
                          f"{d['write_median_ms']:.3f} ms, mean {d['write_mean_ms']:.3f} ms, p99 {d['write_p99_ms']:.3f} ms")
                # extrapolation
                m, n, k = args.models, args.tasks, args.cluster_workers
                jobs = m * n
                engine_s = model(m, n)
                write_s = (out["driver"]["write_mean_ms"] / 1e3 * jobs) if "driver" in out else 0.0
                # On K actors the actors' side of each call spreads over K processes, but the one driver
                # still submits, waits on and receives every call and writes every cell: its CPU seconds
                # per call (measured on the per-call shape) are the floor a cluster cannot divide.
                driver_call = per_call["driver_cpu_s"] / per_call["jobs"]
                cluster_s = max(driver_call * jobs + write_s, engine_s / k * args.workers)
                extra = {"jobs": jobs, "engine_s": engine_s, "write_s": write_s,
                         "machine_hours": (engine_s + write_s) / 3600,
                         "per_cell_ms": 1e3 * (engine_s + write_s) / jobs,
                         "driver_cpu_per_call_ms": 1e3 * driver_call, "cluster_workers": k,
                         "cluster_hours": cluster_s / 3600}
                if "driver" in out:
                    # measure()'s own loop, measured: each write overlaps the actors' next calls
                    loop_s = fixed + out["driver"]["steady_per_cell_ms"] / 1e3 * jobs + dispatch * m * m
                    extra["driver_loop_hours"] = loop_s / 3600
                out["extrapolation"] = extra
                print(f"extrapolated to {m:,} x {n:,} = {jobs:,} jobs (one kind): engine {engine_s / 3600:.2f} h + "
                      f"writes {write_s / 3600:.2f} h = {extra['machine_hours']:.2f} h on this machine "
                      f"({extra['per_cell_ms']:.3f} ms per cell)")
                if "driver_loop_hours" in extra:
                    print(f"from the driver loop's steady ms/cell (writes overlapping the calls): "
                          f"{extra['driver_loop_hours']:.2f} h on this machine")
                print(f"on {k} actors: the driver's CPU per call {extra['driver_cpu_per_call_ms']:.3f} ms x {jobs:,} "
                      f"+ writes = {extra['cluster_hours']:.2f} h, max(driver CPU per call x jobs + writes, "
                      f"engine time x {args.workers}/K)")
            finally:
                ray.shutdown()
        if args.extraction:
            task = {"id": "fashion10", "dataset": "fashion_mnist",
                    "classes": "t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle-boot"}
            out["extraction"] = extraction([m for m in args.extraction.split(",") if m], work, task)
            print(f"{'model':>22} {'images':>6} {'bytes':>10} {'s':>7} {'ms/img':>7} {'width':>6}")
            for row in out["extraction"]:
                per = f"{row['per_image_ms']:.2f}" if row["per_image_ms"] is not None else "failed"
                print(f"{row['model']:>22} {row['images']:>6} {row['image_bytes']:>10,} {row['extraction_s']:>7.2f} "
                      f"{per:>7} {row['feature_width'] or '-':>6}")
    finally:
        if zoo is not None:
            zoo.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache_root, ignore_errors=True)
    out["load_after"] = _load()
    print(f"load average before {out['load_before']}, after {out['load_after']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
