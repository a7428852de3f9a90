"""A synthetic zoo of any size, and random task queries for a fitted zoo.

``synthetic_zoo`` builds and fits a zoo of ``n_models`` models: each has a family
and a size, each task a class count and a training-set size, and each model is
measured on a few tasks (a sparse history) with scores made of a model quality,
a size-by-data-size interaction and noise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._checks import integer
from ..history import History
from ..fitting import fit as fit_zoo
from ..zoo import Zoo

__all__ = ["FAMILIES", "synthetic_zoo", "task_queries"]

FAMILIES = ("resnet", "vit", "convnext", "swin", "efficientnet", "mobilenet", "deit", "regnet")


def synthetic_zoo(path: str | os.PathLike[str], *, n_models: int = 100_000, n_tasks: int = 20,
                  results_per_model: int = 5, seed: int = 0, fit: bool = True,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Creates and fits a synthetic zoo at ``path``; returns its sizes and the seconds each step took."""
    integer(n_models, "n_models", low=1)
    integer(n_tasks, "n_tasks", low=2)
    integer(results_per_model, "results_per_model", low=1)
    step = progress or (lambda _: None)
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    step("adding models")
    zoo = Zoo.create(path)
    try:
        models = [f"model{i:07d}" for i in range(n_models)]
        size = 10 ** rng.uniform(5.5, 9.5, n_models)  # over 3 decades: the design matrix takes its log
        family = rng.integers(0, len(FAMILIES), n_models)
        zoo.add_models([{"id": m, "family": FAMILIES[family[i]], "n_params": float(size[i])}
                        for i, m in enumerate(models)])
        tasks = [f"task{j:03d}" for j in range(n_tasks)]
        task_size = 10 ** rng.uniform(3, 5.5, n_tasks)
        zoo.add_tasks([{"id": t, "n_classes": int(rng.integers(2, 1000)), "n_train": int(task_size[j])}
                       for j, t in enumerate(tasks)])
        seconds["add_models"] = time.perf_counter() - started
        step("adding history")
        started = time.perf_counter()
        history = _sparse_history(rng, models, tasks, family, size, task_size, min(results_per_model, n_tasks))
        zoo.add_history(history)
        seconds["add_history"] = time.perf_counter() - started
        summary: dict[str, Any] = {"path": str(path), "n_models": n_models, "n_tasks": n_tasks, "results": len(history)}
        if fit:
            step("fitting")
            started = time.perf_counter()
            summary["fitted_version"] = fit_zoo(zoo)["version"]
            seconds["fit"] = time.perf_counter() - started
        summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        return summary
    finally:
        zoo.close()


def _sparse_history(rng: np.random.Generator, models: list[str], tasks: list[str], family: np.ndarray,
                    size: np.ndarray, task_size: np.ndarray, per_model: int) -> History:
    """Each model's scores on ``per_model`` distinct tasks: a model quality, a family-by-task
    effect, a size-by-data-size interaction and noise."""
    n_models, n_tasks = len(models), len(tasks)
    # Each model on `per_model` distinct tasks: a random offset and stride-free shift.
    first = rng.integers(0, n_tasks, n_models)
    model_index = np.repeat(np.arange(n_models), per_model)
    task_index = (np.repeat(first, per_model) + np.tile(np.arange(per_model), n_models)) % n_tasks
    quality = rng.normal(0, 1, n_models)
    fam_effect = rng.normal(0, 1, (len(FAMILIES), n_tasks))
    scores = (70 + 3 * quality[model_index] + 1 * fam_effect[family[model_index], task_index]
              + 6 * (np.log10(size[model_index]) - 7.5) * (np.log10(task_size[task_index]) - 4.25)
              + rng.normal(0, 0.5, len(model_index)))
    return History.from_rows(zip([models[i] for i in model_index.tolist()],
                                 [tasks[j] for j in task_index.tolist()], scores.tolist()))


def named_task_columns(meta: Mapping[str, Any]) -> list[str]:
    """The task features a zoo fitted with ``meta`` takes by name (its descriptor columns left out)."""
    return [c for c in meta.get("task_columns", []) if not c.startswith(("descriptor_", "task_descriptor_"))]


def task_queries(meta: Mapping[str, Any], n: int, *, seed: int = 0,
                 descriptors: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``n`` random task-feature dicts for a zoo fitted with ``meta`` (class counts 2-1,000,
    training sets 100-1,000,000, other features 10-100,000). A zoo fitted with task
    descriptors needs ``descriptors``, one row per stored task (the fitted arrays'
    ``task_descriptor_descriptors``): each query takes one of them, jittered by 1 %."""
    rng = np.random.default_rng(seed)
    ranges = {"n_classes": (np.log10(2), 3), "n_train": (2, 6)}
    columns = named_task_columns(meta)
    takes_descriptor = len(columns) != len(meta.get("task_columns", []))
    if takes_descriptor and (descriptors is None or np.ndim(descriptors) != 2 or len(descriptors) == 0):
        raise ValueError("task_queries: this zoo takes task descriptors; pass descriptors= (the fitted arrays' "
                         "task_descriptor_descriptors)")
    out: list[dict[str, Any]] = []
    for _ in range(n):
        task: dict[str, Any] = {c: float(round(10 ** rng.uniform(*ranges.get(c, (1, 5))))) for c in columns}
        if takes_descriptor:
            assert descriptors is not None  # checked above
            row = np.asarray(descriptors[rng.integers(len(descriptors))], dtype=np.float64)
            jittered = row * (1 + 0.01 * rng.standard_normal(row.shape))
            task["descriptor"] = [float(f"{x:.6g}") for x in jittered]  # short bodies
        out.append(task)
    return out
