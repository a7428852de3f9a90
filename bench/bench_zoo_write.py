"""One result written with Zoo.add_history, on zoos holding 1,000, 440,000 and 1,000,000 results.

A write should cost what it writes: the peer is the same one-row write on the
1,000-result zoo, and the ratio of the large zoo's median to it is printed with
the ratio table (target: at most 1.5), with the 1,000,000-result write's median
(target: under 20 ms). Every round adds a result for a new task, so each one is
a real insert and a commit (WAL, synchronous=FULL: one fsync of the log).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fennec.history import History
from fennec.zoo import Zoo

ROUNDS = 200
SIZES = {"1k": (50, 20), "440k": (2_000, 220), "1m": (5_000, 200)}  # models x tasks, one result each


def _zoo(path, n_models: int, n_tasks: int) -> Zoo:
    models = tuple(f"model-{i}" for i in range(n_models))
    tasks = tuple(f"task-{j}" for j in range(n_tasks))
    model_index, task_index = np.divmod(np.arange(n_models * n_tasks), n_tasks)
    scores = np.random.default_rng(0).random(model_index.size) * 100
    zoo = Zoo.create(path)
    zoo.add_history(History(models=models, tasks=tasks, model_index=model_index, task_index=task_index,
                            scores=scores))
    return zoo


def _one_row_writes(benchmark, tmp_path_factory, size: str) -> None:
    n_models, n_tasks = SIZES[size]
    zoo = _zoo(tmp_path_factory.mktemp(f"write-{size}") / "zoo", n_models, n_tasks)
    try:
        counter = itertools.count()

        def write() -> int:
            i = next(counter)
            return zoo.add_history(History.from_rows([(f"model-{i % n_models}", f"new-task-{i}", 50.0)]))

        assert benchmark.pedantic(write, rounds=ROUNDS, warmup_rounds=5) == 1
        written = next(counter)
        stored = zoo._con.execute("SELECT COUNT(*) FROM history").fetchone()[0]
        assert stored == n_models * n_tasks + written
        assert zoo._con.execute("SELECT score FROM history WHERE task = 'new-task-0'").fetchone() == (50.0,)
    finally:
        zoo.close()


@pytest.mark.benchmark(group="zoo-write-one-row")
def test_zoo_add_history_row_1k(benchmark, tmp_path_factory):
    _one_row_writes(benchmark, tmp_path_factory, "1k")


@pytest.mark.benchmark(group="zoo-write-one-row")
def test_zoo_add_history_row_440k(benchmark, tmp_path_factory):
    _one_row_writes(benchmark, tmp_path_factory, "440k")


@pytest.mark.benchmark(group="zoo-write-one-row")
def test_zoo_add_history_row_1m(benchmark, tmp_path_factory):
    _one_row_writes(benchmark, tmp_path_factory, "1m")
