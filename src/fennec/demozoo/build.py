"""The demo zoo's ground truth (linear-probe accuracy) and its build."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._atomic import write_atomically
from .catalogue import CATALOGUE, INPUT_SIZE, PROXY_NAME, CatalogueModel, why_unavailable
from .datasets import Dataset, load_dataset
from .task_sets import TASK_SETS, Task, draw_pool, task_split

if TYPE_CHECKING:
    from ..zoo import Zoo

__all__ = ["FEATURES_REVISION", "PROBE_C", "PROXY_MODEL", "build_demo_zoo", "describe_tasks", "linear_probe_accuracy"]

PROBE_C = 1.0
# The catalogue model the proxy is (MobileNetV2 at the same input size): its features give the descriptors.
PROXY_MODEL = "mobilenet_v2"
# Part of the zoo feature cache's key: raised whenever a catalogue model's features change
# (2: ResNet-50-thin's map pooled over its spatial axes, not over channels and one spatial axis).
FEATURES_REVISION = 2


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray) -> float:
    """Held-out accuracy of multinomial logistic regression (C = PROBE_C) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=PROBE_C, max_iter=2000)
    probe.fit(scaler.transform(train_x), train_y)
    return float((probe.predict(scaler.transform(test_x)) == test_y).mean())


def _installed_models(models: Iterable[str] | None) -> tuple[list[CatalogueModel], dict[str, str]]:
    """The catalogue models asked for that are installed, and why each other one is not."""
    chosen = [m for m in CATALOGUE if models is None or m.id in models]
    skipped = {m.id: why for m in chosen if (why := why_unavailable(m))}
    chosen = [m for m in chosen if m.id not in skipped]
    if len(chosen) < 2:
        raise ValueError(f"build_demo_zoo: fewer than 2 models installed (missing: {skipped})")
    return chosen, skipped


def _available_tasks(task_set: str, tasks: Iterable[str] | None
                     ) -> tuple[list[Task], dict[str, Dataset], dict[str, str]]:
    """The tasks asked for whose dataset loads, the datasets, and why each other dataset did not load."""
    if task_set not in TASK_SETS:
        raise ValueError(f"task_set: expected one of {sorted(TASK_SETS)}, got {task_set!r}")
    task_list = [t for t in TASK_SETS[task_set] if tasks is None or t[0] in tasks]
    datasets, skipped_data = {}, {}
    for _, name, _ in task_list:
        if name not in datasets and name not in skipped_data:
            try:
                datasets[name] = load_dataset(name)
            except (FileNotFoundError, ImportError, ValueError) as error:
                skipped_data[name] = str(error)
    task_list = [t for t in task_list if t[1] in datasets]
    if len(task_list) < 2:
        raise ValueError(f"build_demo_zoo: fewer than 2 tasks available (missing datasets: {skipped_data})")
    return task_list, datasets, skipped_data


def _add_models(zoo: Zoo, chosen: list[CatalogueModel]) -> None:
    """The catalogue models with their metadata and archi2vec embeddings. No runnable reference is
    stored: the catalogue runs them (an ONNX graph's own output would be its logits, not the
    features the catalogue reads)."""
    from .. import archi2vec

    zoo.add_models([{"id": model.id, "family": model.family, "architecture": model.architecture,
                     "n_params": model.n_params, "source_dataset": model.source_dataset, "input_size": INPUT_SIZE,
                     "license": model.license} for model in chosen])
    graphs = [archi2vec.graph_of(model.graph(), None, name=model.id) for model in chosen]
    zoo.set_model_embeddings(dict(zip((m.id for m in chosen), archi2vec.embed(graphs))))


def describe_tasks(zoo: Zoo, task_ids: Iterable[str], *, seed: int = 0,
                   cache_dir: str | os.PathLike[str] | None = None, model: str | None = None) -> dict[str, float]:
    """Stores each demo task's descriptor, made from a catalogue model's features of its training
    images (default :data:`PROXY_MODEL`: the proxy is MobileNetV2 at the catalogue's size, so these
    are the features measuring that model cached under ``cache_dir``); returns the seconds the model
    ran per image source that was not cached."""
    from ..measure import ZooExtractors
    from ..measure.cells import Measurer
    from ..measure.inputs import task_inputs
    from ..proxy import describe, proxy_cache_dir

    wanted = set(task_ids)
    rows = [row for row in zoo.tasks() if row["id"] in wanted]
    inputs, skipped = task_inputs(rows, seed, {})
    if skipped:
        raise ValueError(f"describe_tasks: not demo tasks of a packaged dataset: {skipped}")
    extractor = Measurer(model or PROXY_MODEL, ZooExtractors(zoo.path), proxy_cache_dir(cache_dir))
    ran: dict[str, float] = {}
    for row in rows:
        task = inputs[row["id"]]
        features, seconds = extractor.features(task.source)
        if seconds:
            ran[task.source.name] = seconds
        zoo.set_task_descriptor(row["id"], describe(features[task.train], task.y_train, int(row["n_classes"])))
    return ran


def build_demo_zoo(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                   models: Iterable[str] | None = None, tasks: Iterable[str] | None = None, seed: int = 0,
                   metrics: bool = True, task_set: str = "default", engine: str = "local",
                   address: str | None = None, workers: int | None = None, threads: int | None = None,
                   progress: Callable[[str | None], None] | None = None,
                   expect_steps: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Builds the offline zoo at ``path`` and returns its report (also written to report.json).

    A recipe on :func:`fennec.measure`: it registers the installed catalogue models (with their
    archi2vec embeddings) and the task set's tasks, then measures every (model, task) cell:
    linear-probe accuracy, the ground truth, and (``metrics``) every forward-pass metric of
    :data:`fennec.metrics.METRICS`, on ``engine`` (``local``, or ``ray`` with ``address``,
    ``workers``, ``threads`` as :func:`~fennec.measure` takes them). Each task's proxy
    descriptor is made from the proxy model's features of its training images.

    ``task_set``: a key of :data:`TASK_SETS`: ``default`` (the zoo the README shows) or
    ``heldout``, ``heldout2``... (other class subsets of the same datasets, kept out of
    fennec's design as checks on data it was not tuned on); ``tasks`` keeps only the
    named tasks of that set. ``progress`` and ``expect_steps``: as :func:`~fennec.measure`
    takes them, one step per (model, task).

    Features are cached under ``cache_dir`` (default: the proxy cache), so a rerun or an
    interrupted build resumes without running the models again.
    """
    from .. import metrics as forward_metrics
    from ..measure import measure
    from ..proxy import proxy_cache_dir
    from ..zoo import Zoo

    cache_dir = proxy_cache_dir(cache_dir)
    chosen, skipped = _installed_models(models)
    task_list, datasets, skipped_data = _available_tasks(task_set, tasks)
    zoo = Zoo.create(path)
    zoo.set_setting("proxy", PROXY_NAME)
    start = time.perf_counter()
    _add_models(zoo, chosen)
    shape: dict[str, tuple[int, int, int]] = {}
    for task_id, dataset, keep in task_list:
        _, labels, class_names = datasets[dataset]
        classes, train, test, _, _ = task_split(labels, class_names, draw_pool(labels, seed), keep)
        shape[task_id] = (len(classes), len(train), len(test))
        zoo.add_tasks([{"id": task_id, "n_classes": len(classes), "n_train": len(train),
                        "dataset": dataset, "classes": ",".join(class_names[c] for c in classes)}])
    task_ids = [t[0] for t in task_list]
    kinds = ["linear_probe", *(forward_metrics.METRICS if metrics else ())]
    summary = measure(zoo, kinds=kinds, models=[m.id for m in chosen], tasks=task_ids, engine=engine,
                      address=address, workers=workers, threads=threads, cache_dir=cache_dir, seed=seed,
                      progress=progress, expect_steps=expect_steps)
    if PROXY_MODEL in {m.id for m in chosen}:
        describe_tasks(zoo, task_ids, seed=seed, cache_dir=cache_dir)
    truth = zoo.history("linear_probe")
    accuracy = {(truth.models[i], truth.tasks[j]): float(score) / 100.0
                for i, j, score in zip(truth.model_index, truth.task_index, truth.scores)}
    report: dict[str, Any] = {
        "task_set": task_set, "seed": seed, "input_size": INPUT_SIZE, "proxy": PROXY_NAME, "engine": engine,
        "models": [m.id for m in chosen], "skipped_models": skipped, "skipped_datasets": skipped_data,
        "tasks": {task_id: {"dataset": dataset, "classes": shape[task_id][0], "train": shape[task_id][1],
                            "test": shape[task_id][2],
                            "accuracy": {m.id: accuracy[(m.id, task_id)] for m in chosen
                                         if (m.id, task_id) in accuracy}}
                  for task_id, dataset, _ in task_list},
        "extraction_seconds": summary["extraction_seconds_by_model"], "failures": summary["failures"],
        "lost_jobs": summary["lost_jobs"]}
    report["build_seconds"] = time.perf_counter() - start
    report["task_order_agreement"] = _mean_pairwise_tau(report["tasks"], [m.id for m in chosen])
    write_atomically(Path(path) / "report.json", json.dumps(report, indent=1), what="report.json")
    zoo.close()
    return report


def _mean_pairwise_tau(tasks: dict[str, dict[str, Any]], models: list[str]) -> float:
    """Mean Kendall tau between tasks' model orders: 1 would mean every task ranks the models alike."""
    from scipy.stats import kendalltau

    rows = [[tasks[t]["accuracy"][m] for m in models] for t in tasks]
    taus = [kendalltau(rows[a], rows[b])[0] for a in range(len(rows)) for b in range(a + 1, len(rows))]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")
