"""The demo zoo's tasks: class subsets of the packaged datasets, and the images each one uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np

__all__ = [
    "HELDOUT2_TASKS",
    "HELDOUT3_TASKS",
    "HELDOUT4_TASKS",
    "HELDOUT5_TASKS",
    "HELDOUT6_TASKS",
    "HELDOUT_TASKS",
    "TASKS",
    "TASK_SETS",
    "TEST_PER_CLASS",
    "TRAIN_PER_CLASS",
    "Task",
    "draw_pool",
    "task_split",
]

TRAIN_PER_CLASS = 30
# 100 held-out images a class: with 40, a two-class task's accuracy had a standard error near
# 2.4 points, wider than the gap between most of the models at the top of its ranking.
TEST_PER_CLASS = 100

# (id, dataset, classes kept or None for all)
Task = tuple[str, str, Optional[list[int]]]

TASKS: list[Task] = [
    ("fashion10", "fashion_mnist", None),
    ("fashion_upper", "fashion_mnist", [0, 2, 3, 4, 6]),
    ("fashion_shoes_bags", "fashion_mnist", [5, 7, 8, 9]),
    ("fashion_shirts", "fashion_mnist", [0, 6]),
    ("mnist10", "mnist", None),
    ("mnist_low", "mnist", [0, 1, 2, 3, 4]),
    ("mnist_high", "mnist", [5, 6, 7, 8, 9]),
    ("digits10", "digits", None),
    ("digits_even", "digits", [0, 2, 4, 6, 8]),
    ("animal10", "animal_mnist", None),
    ("animal_first", "animal_mnist", [0, 1, 2, 3, 4]),
    ("animal_last", "animal_mnist", [5, 6, 7, 8, 9]),
    ("faces", "faces", None),
]

# A second set of tasks carved from the same datasets (other class subsets), never
# looked at while designing or tuning fennec: the check on data it was not tuned on
# (`fennec zoo build-demo PATH --task-set heldout`).
HELDOUT_TASKS = [
    ("fashion_odd", "fashion_mnist", [1, 3, 5, 7, 9]),
    ("fashion_even", "fashion_mnist", [0, 2, 4, 6, 8]),
    ("fashion_tops_trousers", "fashion_mnist", [0, 1, 2]),
    ("mnist_even", "mnist", [0, 2, 4, 6, 8]),
    ("mnist_odd", "mnist", [1, 3, 5, 7, 9]),
    ("mnist_3_8", "mnist", [3, 8]),
    ("digits_odd", "digits", [1, 3, 5, 7, 9]),
    ("digits_low", "digits", [0, 1, 2, 3, 4]),
    ("animal_even", "animal_mnist", [0, 2, 4, 6, 8]),
    ("animal_odd", "animal_mnist", [1, 3, 5, 7, 9]),
    ("animal_pairs", "animal_mnist", [0, 9]),
    ("faces", "faces", None),
]
# Further sets, each fixed before any result on it was seen, for the next design change.
HELDOUT2_TASKS = [
    ("fashion_0_4", "fashion_mnist", [0, 1, 2, 3, 4]),
    ("fashion_5_9", "fashion_mnist", [5, 6, 7, 8, 9]),
    ("fashion_3_6", "fashion_mnist", [3, 6]),
    ("mnist_0_2_5_7", "mnist", [0, 2, 5, 7]),
    ("mnist_1_4_9", "mnist", [1, 4, 9]),
    ("digits_5_9", "digits", [5, 6, 7, 8, 9]),
    ("digits_1_7", "digits", [1, 7]),
    ("animal_0_4", "animal_mnist", [0, 1, 2, 3, 4]),  # the same classes as the default set's animal_first
    ("animal_5_7", "animal_mnist", [5, 6, 7]),
    ("animal_2_8", "animal_mnist", [2, 8]),
    ("faces", "faces", None),
    ("fashion_mnist_mixed_shoes", "fashion_mnist", [5, 7, 9]),
]
_SHORT_NAMES = {"fashion_mnist": "fashion", "mnist": "mnist", "digits": "digits", "animal_mnist": "animal"}


def _carved(subsets: dict[str, list[tuple[int, ...]]]) -> list[Task]:
    """Tasks named after their classes (``fashion_0_3``: classes 0 and 3), then the faces."""
    tasks = [(f"{_SHORT_NAMES[dataset]}_{'_'.join(map(str, classes))}", dataset, list(classes))
             for dataset, per_dataset in subsets.items() for classes in per_dataset]
    return tasks + [("faces", "faces", None)]


HELDOUT3_TASKS = _carved({
    "fashion_mnist": [(0, 3), (1, 5, 7), (2, 4, 6, 8)],
    "mnist": [(4, 7, 9), (0, 3, 6, 8), (1, 2, 5)],
    "digits": [(0, 3, 6, 9), (2, 4, 7)],
    "animal_mnist": [(3, 4, 5, 6), (0, 7, 8, 9), (1, 2)],
})
HELDOUT4_TASKS = _carved({
    "fashion_mnist": [(1, 2, 8), (4, 5, 6, 9), (0, 7)],
    "mnist": [(2, 6, 9), (0, 1, 7, 8), (3, 5)],
    "digits": [(1, 4, 8), (0, 2, 5, 6, 9)],
    "animal_mnist": [(1, 3, 8), (0, 5, 6, 9), (2, 4, 7)],
})
HELDOUT5_TASKS = _carved({
    "fashion_mnist": [(2, 3, 9), (0, 1, 5, 6), (4, 8)],
    "mnist": [(1, 3, 6), (2, 4, 5, 9), (0, 7)],
    "digits": [(3, 5, 8), (1, 2, 6, 9)],
    "animal_mnist": [(4, 6, 9), (0, 1, 2, 3), (5, 8)],
})
HELDOUT6_TASKS = _carved({
    "fashion_mnist": [(0, 2, 5), (3, 4, 7, 8), (1, 9)],
    "mnist": [(0, 4, 6), (1, 5, 8, 9), (2, 3)],
    "digits": [(0, 1, 7), (3, 4, 6, 8)],
    "animal_mnist": [(2, 5, 9), (1, 4, 6, 7), (0, 8)],
})


def _union(*task_sets: list[Task]) -> list[Task]:
    """The tasks of several sets, each class subset once (the first set's name for it)."""
    seen, out = set(), []
    for tasks in task_sets:
        for task_id, dataset, classes in tasks:
            key = (dataset, None if classes is None else tuple(sorted(classes)))
            if key not in seen:
                seen.add(key)
                out.append((task_id, dataset, classes))
    return out


_HELDOUT_SETS = (HELDOUT_TASKS, HELDOUT2_TASKS, HELDOUT3_TASKS, HELDOUT4_TASKS, HELDOUT5_TASKS, HELDOUT6_TASKS)
TASK_SETS: dict[str, list[Task]] = {
    "default": TASKS, **{f"heldout{i if i > 1 else ''}": tasks for i, tasks in enumerate(_HELDOUT_SETS, 1)},
    # a longer history, as a team's zoo grows: every held-out task in one zoo
    "heldout_all": _union(*_HELDOUT_SETS)}


def draw_pool(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """Per class, a seeded draw of TRAIN_PER_CLASS + TEST_PER_CLASS images (fewer if scarce).

    Every task of a dataset is carved from this one pool, so each model runs
    over a dataset's images once.
    """
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero(labels == c))[:TRAIN_PER_CLASS + TEST_PER_CLASS]
            for c in np.unique(labels)}


def _split(pool: dict[int, np.ndarray], classes: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out images of a task: the first TRAIN_PER_CLASS of each kept class train."""
    train, test = [], []
    for c in classes:
        where = pool[c]
        n_train = min(TRAIN_PER_CLASS, len(where) // 2)
        train.append(where[:n_train])
        test.append(where[n_train:])
    return np.concatenate(train), np.concatenate(test)


def task_split(
    labels: np.ndarray, class_names: Sequence[str], pool: dict[int, np.ndarray], keep: Iterable[int] | None
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A task of a dataset: (its classes, training and held-out image indices, their labels 0..K-1).

    ``keep``: the classes kept, or None for all; ``pool``: the dataset's :func:`draw_pool`.
    """
    classes = list(range(len(class_names))) if keep is None else list(keep)
    train, test = _split(pool, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return (classes, train, test, np.array([relabel[c] for c in labels[train]]),
            np.array([relabel[c] for c in labels[test]]))
