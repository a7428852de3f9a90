"""Which catalogue model makes the best proxy? Ranking quality of each one's task descriptors.

For every built offline zoo given (``fennec zoo build-demo PATH [--task-set ...]``)
and every candidate proxy, the tasks' descriptors are recomputed from that
model's features of the tasks' training images (read from the build's feature
cache: nothing runs again), and ``fennec eval --zoo ... --protocol lodo`` is
run on a copy of the zoo. Prints one JSON object: mean weighted tau per zoo and
proxy, the mean over the zoos, and each model's feature-extraction seconds in
the first zoo's build report (its speed over the same images).

    python bench/proxy_choice.py --cache CACHE ZOO [ZOO ...] \
        --proxy mobilenet_v2 --proxy efficientnet_lite0 --proxy dinov2_vits14 --proxy pplcnet_x1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from source_tree import use_source_tree  # noqa: E402

use_source_tree()

from fennec import Zoo, demozoo  # noqa: E402
from fennec.evaluate import evaluate, load_zoo_eval_data  # noqa: E402
from fennec.proxy import describe  # noqa: E402


def redescribe(zoo_path: Path, proxy_id: str, cache: Path, seed: int = 0) -> None:
    """Replaces every task's descriptor in the zoo at ``zoo_path`` by ``proxy_id``'s."""
    with Zoo.open(zoo_path) as zoo:
        ran = demozoo.describe_tasks(zoo, [t["id"] for t in zoo.tasks()], seed=seed, cache_dir=cache, model=proxy_id)
    for source, seconds in ran.items():
        print(f"note: {proxy_id} on {source} was not cached; it ran for {seconds:.1f} s", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoos", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="the builds' feature cache (--cache of build-demo)")
    parser.add_argument("--proxy", action="append", required=True, help="a catalogue model id (repeatable)")
    args = parser.parse_args(argv)
    taus: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for zoo_path in args.zoos:
            for proxy_id in args.proxy:
                copy = Path(scratch) / f"{zoo_path.name}-{proxy_id}"
                shutil.copytree(zoo_path, copy)
                redescribe(copy, proxy_id, args.cache)
                with Zoo.open(copy) as zoo:
                    result = evaluate(load_zoo_eval_data(zoo), "lodo")
                taus.setdefault(proxy_id, {})[zoo_path.name] = round(result["mean"]["fennec"]["wtau"], 4)
                shutil.rmtree(copy)
                print(f"{zoo_path.name} {proxy_id} {taus[proxy_id][zoo_path.name]}", file=sys.stderr, flush=True)
    report = json.loads((args.zoos[0] / "report.json").read_text())
    print(json.dumps({"wtau": taus, "mean": {p: round(float(np.mean(list(t.values()))), 4) for p, t in taus.items()},
                      "extraction_seconds": {p: round(report["extraction_seconds"].get(p, float("nan")), 1)
                                             for p in args.proxy}}, indent=1))


if __name__ == "__main__":
    main()
