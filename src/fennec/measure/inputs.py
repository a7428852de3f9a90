"""The images of a zoo's tasks, split for measuring: a packaged demo dataset's task, or a stored image folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageSource", "TaskInputs", "task_inputs"]


@dataclass
class ImageSource:
    """Images that features are extracted from once per model: a demo dataset's pool, or one task's folder.

    ``material``: what identifies their content (part of the feature cache's key).
    """

    name: str
    material: bytes
    images: Any  # uint8 array (N, H, W[, C]) or a list of images

    @property
    def key(self) -> str:
        return hashlib.sha256(self.material).hexdigest()[:24]


@dataclass
class TaskInputs:
    """A task's training and held-out rows of its :class:`ImageSource`, with their labels 0..K-1."""

    task: str
    source: ImageSource
    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    recipe: str  # how the split was drawn, kept with each result


def _demo_task(task: dict[str, Any], seed: int, datasets: dict[str, Any],
               sources: dict[str, ImageSource]) -> TaskInputs | None:
    from ..demozoo import task_sets
    from ..demozoo.datasets import DATASETS, load_dataset

    dataset = task["extra"].get("dataset")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        return None
    if dataset not in datasets:
        datasets[dataset] = load_dataset(dataset)
    _, labels, class_names = datasets[dataset]
    stored = task["extra"].get("classes")
    for set_name, tasks in task_sets.TASK_SETS.items():
        for task_id, name, keep in tasks:
            if task_id != task["id"] or name != dataset:
                continue
            classes = list(range(len(class_names))) if keep is None else list(keep)
            if isinstance(stored, str) and stored != ",".join(class_names[c] for c in classes):
                continue
            return _demo_split(task["id"], dataset, keep, seed, datasets[dataset], sources, set_name)
    return None


def _demo_split(task_id: str, dataset: str, keep: list[int] | None, seed: int, data: Any,
                sources: dict[str, ImageSource], set_name: str) -> TaskInputs:
    from ..demozoo import task_sets

    images, labels, class_names = data
    pool = task_sets.draw_pool(labels, seed)
    _, train, test, y_train, y_test = task_sets.task_split(labels, class_names, pool, keep)
    # Features are taken over the dataset's whole pool, as build-demo takes them, so every
    # task of a dataset shares one extraction and build-demo's feature cache is reused.
    index = np.sort(np.concatenate(list(pool.values())))
    name = f"{dataset}:{seed}:{task_sets.TRAIN_PER_CLASS}:{task_sets.TEST_PER_CLASS}"
    if name not in sources:
        sources[name] = ImageSource(dataset, f"{dataset}:".encode() + index.tobytes(), images[index])
    row_of = {int(i): r for r, i in enumerate(index)}
    rows = [np.array([row_of[int(i)] for i in part], dtype=np.int64) for part in (train, test)]
    recipe = (f"demo task set {set_name}, dataset {dataset}, seed {seed}, {task_sets.TRAIN_PER_CLASS} train / "
              f"{task_sets.TEST_PER_CLASS} held out per class")
    return TaskInputs(task_id, sources[name], rows[0], rows[1], y_train, y_test, recipe)


def _folder_task(task_id: str, stored: dict[str, Any]) -> TaskInputs:
    """A task added from an images folder (``fennec zoo add-task --images``): the same images its
    descriptor was made from, refused when the folder changed since."""
    from ..demozoo import task_sets
    from ..proxy import load_images
    from ..registry import folder_digest

    folder = str(stored.get("path"))
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"its image folder {folder} is gone; give the task its images again "
                                f"(fennec zoo add-task --id {task_id} --images DIR --replace)")
    digest = str(stored.get("digest"))
    if folder_digest(folder)[0] != digest:
        raise ValueError(f"its image folder {folder} changed since the task was added; add it again "
                         f"(fennec zoo add-task --id {task_id} --images {folder} --replace)")
    per_class = stored.get("per_class")
    seed = int(stored.get("seed") or 0)
    loaded = load_images(folder, per_class=per_class if isinstance(per_class, int) else None, seed=seed)
    if loaded.labels is None or loaded.n_classes < 2:
        raise ValueError(f"its image folder {folder} has no class sub-folders (two or more are needed)")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(loaded.n_classes):
        where = rng.permutation(np.flatnonzero(loaded.labels == c))
        n_train = min(task_sets.TRAIN_PER_CLASS, len(where) // 2)
        train.append(where[:n_train])
        test.append(where[n_train:])
    train_rows, test_rows = np.concatenate(train), np.concatenate(test)
    material = f"folder:{digest}:{per_class}:{seed}".encode()
    source = ImageSource(task_id, material, loaded.images)
    recipe = (f"image folder {folder} (sha256 {digest[:16]}), {per_class or 'all'} per class drawn with seed {seed}, "
              f"up to {task_sets.TRAIN_PER_CLASS} train per class, the rest held out")
    return TaskInputs(task_id, source, train_rows, test_rows, loaded.labels[train_rows], loaded.labels[test_rows],
                      recipe)


def task_inputs(tasks: list[dict[str, Any]], seed: int, folders: dict[str, dict[str, Any]]
                ) -> tuple[dict[str, TaskInputs], dict[str, str]]:
    """Each task's split images, and why each task without usable images was left out.

    ``folders``: the zoo's :meth:`~fennec.Zoo.task_images`; a task without one is a demo task
    when its ``dataset`` names a packaged dataset (``seed`` draws its images, as build-demo's does).
    """
    found: dict[str, TaskInputs] = {}
    skipped: dict[str, str] = {}
    datasets: dict[str, Any] = {}
    sources: dict[str, ImageSource] = {}
    for task in tasks:
        try:
            inputs = (_folder_task(task["id"], folders[task["id"]]) if task["id"] in folders
                      else _demo_task(task, seed, datasets, sources))
        except (FileNotFoundError, ImportError, ValueError, OSError) as error:
            skipped[task["id"]] = str(error)
            continue
        if inputs is None:
            skipped[task["id"]] = ("no images stored for it: give it an image folder (fennec zoo add-task "
                                   f"--id {task['id']} --images DIR)")
        else:
            found[task["id"]] = inputs
    return found, skipped
