"""The demo zoo's ground truth (linear-probe accuracy) and its build."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._atomic import write_atomically
from ..history import History
from .catalogue import CATALOGUE, INPUT_SIZE, PROXY_NAME, CatalogueModel, why_unavailable
from .datasets import Dataset, load_dataset
from .task_sets import TASK_SETS, Task, draw_pool, task_split

if TYPE_CHECKING:
    from ..proxy import Proxy
    from ..zoo import Zoo

__all__ = ["FEATURES_REVISION", "PROBE_C", "build_demo_zoo", "linear_probe_accuracy", "pooled_features"]

PROBE_C = 1.0
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


def _cached_features(cache_dir: Path, model: CatalogueModel, dataset: str, index: np.ndarray, images: np.ndarray,
                     state: dict[str, Proxy]) -> tuple[np.ndarray, float]:
    key = hashlib.sha256(f"{model.id}:{FEATURES_REVISION}:{INPUT_SIZE}:{dataset}:".encode()
                         + index.tobytes()).hexdigest()[:24]
    path = cache_dir / "zoo-features" / f"{model.id}-{dataset}-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False), 0.0
    if model.id not in state:
        state[model.id] = model.make(cache_dir)
    start = time.perf_counter()
    features = state[model.id].features([images[i] for i in index])
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda fh: np.save(fh, features), what="zoo feature cache")
    return features, seconds


def pooled_features(cache_dir: Path, model: CatalogueModel, dataset: str, pool: dict[int, np.ndarray],
                    images: np.ndarray, state: dict[str, Proxy]) -> tuple[dict[int, int], np.ndarray, float]:
    """A model's features of a dataset's whole pool: (row of each image index, features, seconds it ran).

    ``pool``: the dataset's :func:`~fennec.demozoo.task_sets.draw_pool`; the features are
    cached under ``cache_dir``; ``state`` keeps each model once it has been loaded.
    """
    index = np.sort(np.concatenate(list(pool.values())))
    features, seconds = _cached_features(cache_dir, model, dataset, index, images, state)
    return {int(i): r for r, i in enumerate(index)}, features, seconds


class _PoolFeatures:
    """Each model's features of each dataset's pool, extracted (or read from the cache) once per build."""

    def __init__(self, cache_dir: Path, seconds: dict[str, float]) -> None:
        self.cache_dir = cache_dir
        self.seconds = seconds  # the report's extraction seconds per model, added to here
        self._state: dict[str, Proxy] = {}
        self._pooled: dict[tuple[str, str], tuple[dict[int, int], np.ndarray]] = {}

    def take(self, model: CatalogueModel, dataset: str, pool: dict[int, np.ndarray], images: np.ndarray,
             *indices: np.ndarray) -> list[np.ndarray]:
        """The model's features of the images at each of ``indices``."""
        if (model.id, dataset) not in self._pooled:
            row_of, features, seconds = pooled_features(self.cache_dir, model, dataset, pool, images, self._state)
            self._pooled[(model.id, dataset)] = (row_of, features)
            self.seconds[model.id] = self.seconds.get(model.id, 0.0) + seconds
        row_of, features = self._pooled[(model.id, dataset)]
        return [features[[row_of[int(i)] for i in index]] for index in indices]


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
    from ..registry import add_model

    for model in chosen:
        source = model.graph()
        add_model(zoo, model.id, source, metadata={
            "family": model.family, "architecture": model.architecture, "n_params": model.n_params,
            "source_dataset": model.source_dataset, "input_size": INPUT_SIZE, "license": model.license})


def _score_metrics(x_train: np.ndarray, y_train: np.ndarray, model_id: str, task_id: str,
                   seconds: dict[str, float], rows: dict[str, list[tuple[str, str, float]]]) -> None:
    """Every forward-pass metric of one model's training features of one task, timed."""
    from .. import metrics as forward_metrics

    for name, fn in forward_metrics.METRICS.items():
        t0 = time.perf_counter()
        score = fn(x_train, y_train)
        seconds.setdefault(name, 0.0)
        seconds[name] += time.perf_counter() - t0
        rows.setdefault(name, []).append((model_id, task_id, float(score)))


def build_demo_zoo(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                   models: Iterable[str] | None = None, tasks: Iterable[str] | None = None, seed: int = 0,
                   metrics: bool = True, task_set: str = "default",
                   progress: Callable[[str], None] | None = None,
                   expect_steps: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Builds the offline zoo at ``path`` and returns its report (also written to report.json).

    ``progress`` is called with a text as each (task, model) step starts; ``expect_steps``
    once, with the number of those steps, before the first.

    ``task_set``: a key of :data:`TASK_SETS`: ``default`` (the zoo the README shows) or
    ``heldout``, ``heldout2``... (other class subsets of the same datasets, kept out of
    fennec's design as checks on data it was not tuned on); ``tasks`` keeps only the
    named tasks of that set.

    Features are cached under ``cache_dir`` (default: the proxy cache), so a
    rerun or an interrupted build resumes without running the models again.
    """
    from ..proxy import describe, proxy_cache_dir
    from ..zoo import Zoo

    cache_dir = proxy_cache_dir(cache_dir)
    say = progress or (lambda message: None)
    chosen, skipped = _installed_models(models)
    task_list, datasets, skipped_data = _available_tasks(task_set, tasks)
    if expect_steps is not None:
        expect_steps(len(task_list) * len(chosen))

    zoo = Zoo.create(path)
    zoo.set_setting("proxy", PROXY_NAME)
    report: dict[str, Any] = {"task_set": task_set, "seed": seed, "input_size": INPUT_SIZE, "proxy": PROXY_NAME,
              "models": [m.id for m in chosen], "skipped_models": skipped,
              "skipped_datasets": skipped_data, "tasks": {}, "extraction_seconds": {}, "metric_seconds": {}}
    start = time.perf_counter()
    _add_models(zoo, chosen)
    history_rows: list[tuple[str, str, float]] = []
    metric_rows: dict[str, list[tuple[str, str, float]]] = {}
    pools = {name: draw_pool(labels, seed) for name, (_, labels, _) in datasets.items()}
    features = _PoolFeatures(cache_dir, report["extraction_seconds"])
    for task_id, dataset, keep in task_list:
        images, labels, class_names = datasets[dataset]
        classes, train, test, y_train, y_test = task_split(labels, class_names, pools[dataset], keep)
        zoo.add_tasks([{"id": task_id, "n_classes": len(classes), "n_train": len(train),
                        "dataset": dataset, "classes": ",".join(class_names[c] for c in classes)}])
        accuracies = {}
        for model in chosen:
            say(f"{task_id}: {model.id}")
            x_train, x_test = features.take(model, dataset, pools[dataset], images, train, test)
            accuracies[model.id] = linear_probe_accuracy(x_train, y_train, x_test, y_test)
            history_rows.append((model.id, task_id, 100.0 * accuracies[model.id]))
            if metrics:
                _score_metrics(x_train, y_train, model.id, task_id, report["metric_seconds"], metric_rows)
            if model.id == "mobilenet_v2":
                # The proxy is MobileNetV2 at the same size: its training features are the task's descriptor input.
                zoo.set_task_descriptor(task_id, describe(x_train, y_train, len(classes)))
        report["tasks"][task_id] = {"dataset": dataset, "classes": len(classes), "train": int(len(train)),
                                    "test": int(len(test)), "accuracy": accuracies}
    zoo.add_history(History.from_rows(history_rows), kind="linear_probe", source="fennec build-demo")
    for name, rows in metric_rows.items():
        zoo.add_history(History.from_rows(rows), kind=name, source="fennec build-demo")
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
