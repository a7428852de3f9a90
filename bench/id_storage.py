"""What a model id's length costs a fitted zoo: the stored ids, the fit's peak memory, a ranker's start.

Model ids are stored as one fixed-width text array (``model_ids.npy``), as wide as
the longest id, so one long id widens every row. Ids are at most
``fennec._checks.MAX_ID_LENGTH`` characters; this builds a zoo of ``--models``
models three ways (every id short, one id at the limit, every id at the limit),
fits each in a fresh process and loads it for a first ranking in another, and
prints the size of ``model_ids.npy``, the fit's peak memory and the ranker's
start for each. It then shows that an id of 50,000 characters is refused.

    python bench/id_storage.py [--models 2001] [--tasks 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from source_tree import SOURCE, use_source_tree  # noqa: E402

use_source_tree()

import numpy as np  # noqa: E402

from fennec._checks import MAX_ID_LENGTH  # noqa: E402
from fennec.history import History  # noqa: E402
from fennec.zoo import Zoo  # noqa: E402

FIT = """
import json, resource, sys, time
import fennec
started = time.perf_counter()
with fennec.Zoo.open(sys.argv[1]) as zoo:
    fennec.fit(zoo)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

START = """
import json, resource, sys, time
import fennec
started = time.perf_counter()
with fennec.Zoo.open(sys.argv[1]) as zoo:
    fennec.Ranker(zoo).rank(None, k=10)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(path: Path, ids: list[str], n_tasks: int) -> None:
    rng = np.random.default_rng(0)
    tasks = [f"task-{j}" for j in range(n_tasks)]
    with Zoo.create(path) as zoo:
        zoo.add_models([{"id": m, "family": ("resnet", "vit", "convnext")[i % 3], "n_params": float(1e6 * (i + 1))}
                        for i, m in enumerate(ids)])
        zoo.add_tasks([{"id": t, "n_classes": 10, "n_train": 1000 * (j + 1)} for j, t in enumerate(tasks)])
        zoo.add_history(History.from_matrix(ids, tasks, 70 + 5 * rng.standard_normal((len(ids), n_tasks))))


def run(code: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                          check=True, timeout=600)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2001)
    parser.add_argument("--tasks", type=int, default=10)
    args = parser.parse_args()
    short = [f"model-{i:05d}" for i in range(args.models)]
    cases = {
        "every id short": short,
        f"one id of {MAX_ID_LENGTH} characters": short[:-1] + ["m" * MAX_ID_LENGTH],
        f"every id of {MAX_ID_LENGTH} characters": [f"{i:05d}".ljust(MAX_ID_LENGTH, "m") for i in range(args.models)],
    }
    print(f"{args.models:,} models x {args.tasks} tasks, ids at most {MAX_ID_LENGTH} characters")
    print(f"{'':<28} {'model_ids.npy':>14} {'fit s':>7} {'fit peak MB':>12} {'start s':>8} {'start peak MB':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, ids) in enumerate(cases.items()):
            path = Path(folder) / f"zoo{i}"
            build(path, ids, args.tasks)
            fitted = run(FIT, path)
            with Zoo.open(path) as zoo:
                version = zoo.fitted_version()
            stored = path / f"fitted-{version}" / "model_ids.npy"
            started = run(START, path)
            print(f"{name:<28} {stored.stat().st_size:>12,} B {fitted['seconds']:>7.2f} {fitted['peak_mb']:>12.1f} "
                  f"{started['seconds']:>8.2f} {started['peak_mb']:>14.1f}")
        with Zoo.create(Path(folder) / "refusing") as zoo:
            try:
                zoo.add_models([{"id": "x" * 50_000}])
            except ValueError as error:
                print(f"an id of 50,000 characters: refused: {error}")
            else:
                print("an id of 50,000 characters: ACCEPTED")
                sys.exit(1)


if __name__ == "__main__":
    main()
