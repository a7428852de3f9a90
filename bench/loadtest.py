"""Load test of the HTTP service: POST /rank on a 100,000-model zoo from a second process.

Starts the real server (``python -m fennec serve``, ``--workers`` processes, one
per core by default) on a free loopback port, warms it up, then drives it with ``--clients`` keep-alive
connections for ``--duration`` seconds (fennec's asyncio generator in its own
process, or ``--engine wrk``), sampling the server's RSS, and prints
one JSON summary: requests, errors, throughput, p50/p99 latency, RSS at the
start and the end. Each request ranks for random precomputed task features.

    python bench/loadtest.py                        # builds and fits a synthetic zoo first
    python bench/loadtest.py --zoo myzoo --clients 64 --duration 30
    python bench/loadtest.py --models 100000 --keep /tmp/zoo100k   # keep the zoo for the next run

Targets (issue 6): no errors, p99 under 50 ms, RSS flat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"


def _use_source_tree() -> None:
    """Imports fennec from this checkout when it is built in place (``src/fennec/_core.*.so`` or
    ``.pyd``; the ``_core.pyi`` stub is always there), and the installed fennec otherwise: an
    unbuilt source tree first on the path would hide it."""
    if any(p.suffix in (".so", ".pyd") for p in (SOURCE / "fennec").glob("_core*")):
        sys.path.insert(0, str(SOURCE))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", help="a fitted zoo (default: build a synthetic one)")
    parser.add_argument("--models", type=int, default=100_000, help="synthetic zoo: models")
    parser.add_argument("--tasks", type=int, default=20, help="synthetic zoo: tasks")
    parser.add_argument("--keep", help="synthetic zoo: build it here (reused when it is already there)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--engine", choices=["auto", "wrk", "asyncio"], default="auto",
                        help="auto/asyncio: fennec's generator; wrk: needs wrk installed (apt-get install wrk)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server processes (fennec serve --workers; default: one per core, as the README "
                             "recommends)")
    args = parser.parse_args(argv)
    _use_source_tree()
    # Imported once the arguments are read, so that --help needs no fennec at all.
    from fennec.benchmarks.loadgen import load_test
    from fennec.benchmarks.synthetic import synthetic_zoo
    from fennec.zoo import Zoo

    if args.engine == "wrk" and shutil.which("wrk") is None:
        print(json.dumps({"skipped": "wrk is not installed (apt-get install wrk); use --engine asyncio"}))
        return 0
    summary = {}
    with tempfile.TemporaryDirectory() as scratch:
        zoo = args.zoo or args.keep or os.path.join(scratch, "zoo")
        if not args.zoo and not (Path(zoo) / "zoo.sqlite").exists():
            started = time.perf_counter()
            summary["zoo"] = synthetic_zoo(zoo, n_models=args.models, n_tasks=args.tasks)
            summary["zoo"]["build_seconds"] = round(time.perf_counter() - started, 1)
        with Zoo.open(zoo) as opened:
            if opened.fitted_version() is None:
                print(json.dumps({"error": f"{zoo}: the zoo is not fitted"}))
                return 1
        summary["load"] = load_test(zoo, clients=args.clients, duration=args.duration, engine=args.engine,
                                    warmup=args.warmup, k=args.k, workers=args.workers)
    load = summary["load"]
    summary["targets"] = {
        "no errors": load["errors"] == 0 and load["non_2xx"] == 0,
        "p99 under 50 ms": load["p99_ms"] is not None and load["p99_ms"] < 50.0,
        "RSS flat (end within 10% or 20 MB of start)": None if load["rss_start_mb"] is None else
        load["rss_end_mb"] - load["rss_start_mb"] <= max(20.0, 0.1 * load["rss_start_mb"]),
    }
    print(json.dumps(summary, indent=1))
    return 0 if summary["targets"]["no errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
