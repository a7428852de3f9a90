"""fennec with a history alone against the raw and the standardised prior, on many tables.

The prior is what every other term of the transfer space is added to, so it must not be
the weak link: on every table, fennec with no task information should rank held-out
tasks (leave one task out) at least as well as the better of the two plain priors.
Tables: the development set in ``../shared/benchmarks`` (when present), the task sets of
the offline zoos given with ``--zoo`` (their history only: descriptors and task features
dropped), and synthetic tables built with known structure (tasks that differ in spread,
in noise, in ties, in failures). Prints, per table, the mean weighted tau of each and
fennec's paired gap to the better prior with its standard error, and the normalisation
the full fit chose::

    python bench/prior_tables.py --zoo /path/to/zoo ... [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from source_tree import use_source_tree  # noqa: E402

use_source_tree()

from fennec.evaluate import EvalData, evaluate, load_eval_data, load_zoo_eval_data  # noqa: E402
from fennec.space import fit_transfer  # noqa: E402
from fennec.zoo import Zoo  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def synthetic_tables(seeds: int = 5) -> Iterator[tuple[str, np.ndarray]]:
    """Models x tasks accuracy tables with a known structure (percent)."""
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        n_models, n_tasks = 20, 10
        quality = rng.standard_normal(n_models)
        family = rng.integers(0, 4, n_models)
        affinity = rng.standard_normal((4, n_tasks))
        base = rng.uniform(50, 90, n_tasks)
        # The same spread everywhere, raw noise: every normalisation should do alike.
        yield f"even/{seed}", base + 5 * quality[:, None] + rng.normal(0, 2, (n_models, n_tasks))
        # Tasks that differ tenfold in spread with the same raw noise: the narrow ones are noise.
        spread = np.exp(rng.uniform(np.log(0.5), np.log(8), n_tasks))
        yield f"spread/{seed}", base + spread * quality[:, None] + rng.normal(0, 1.5, (n_models, n_tasks))
        # Noise that differs per task in proportion to its spread: each task says as much.
        yield f"noise/{seed}", base + spread * (quality[:, None] + rng.normal(0, 0.7, (n_models, n_tasks)))
        # Near the ceiling: scores saturate and round, so many models tie.
        ceiling = np.minimum(99.0, base + 30 + 4 * quality[:, None] + rng.normal(0, 1, (n_models, n_tasks)))
        yield f"ties/{seed}", np.round(ceiling)
        # A few models fail badly on some tasks (outliers), families matter per task.
        table = base + 4 * quality[:, None] + 3 * affinity[family] + rng.normal(0, 1.5, (n_models, n_tasks))
        failed = rng.random((n_models, n_tasks)) < 0.08
        yield f"failures/{seed}", np.where(failed, rng.uniform(5, 20, (n_models, n_tasks)), table)
        # Sparse: a third of the cells not measured.
        sparse = base + spread * quality[:, None] + rng.normal(0, 1.5, (n_models, n_tasks))
        sparse[rng.random((n_models, n_tasks)) < 0.33] = np.nan
        yield f"sparse/{seed}", sparse


def development_tables() -> Iterator[tuple[str, EvalData]]:
    sfda = SHARED / "sfda_supervised_11x11.csv"
    if sfda.exists():
        yield "sfda_11x11", load_eval_data(sfda, wide=True)
    records = SHARED / "transfergraph_image" / "records.csv"
    if records.exists():
        yield "transfergraph", load_eval_data(records, task_col="finetuned_dataset", score_col="eval_accuracy",
                                              exclude_tasks=["food101"])


def history_only(data: EvalData) -> EvalData:
    return EvalData(scores=data.scores, models=data.models, tasks=data.tasks)


def row(name: str, data: EvalData) -> dict[str, object]:
    result = evaluate(history_only(data), "lodo")
    mean = {m: result["mean"][m]["wtau"] for m in ("fennec", "prior", "prior_std")}
    better = max(("prior", "prior_std"), key=lambda m: mean[m])
    gap = result["paired"][better]
    chosen = fit_transfer(data.scores).normalization
    return {"table": name, "tasks": result["n_tasks"], "models": len(data.models), **mean, "better": better,
            "gap": gap["diff"], "se": gap["se"], "normalization": chosen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", default=[], help="an offline zoo whose history to add")
    parser.add_argument("--kind", default=None, help="the zoos' history kind (default: the fit's)")
    parser.add_argument("--seeds", type=int, default=5, help="synthetic tables per structure")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = [row(name, data) for name, data in development_tables()]
    for path in args.zoo:
        data = load_zoo_eval_data(Zoo.open(path), kind=args.kind)
        rows.append(row(f"zoo:{os.path.basename(os.path.normpath(path))}", data))
    for name, table in synthetic_tables(args.seeds):
        models = [f"m{i}" for i in range(table.shape[0])]
        tasks = [f"t{j}" for j in range(table.shape[1])]
        rows.append(row(f"synthetic:{name}", EvalData(scores=table, models=models, tasks=tasks)))
    print(f"{'table':28s} {'tasks':>5s} {'fennec':>7s} {'prior':>7s} {'p_std':>7s}  "
          f"{'gap to better':>16s}  normalisation")
    for r in rows:
        flag = "" if r["gap"] >= -0.005 else "  BELOW"  # type: ignore[operator]
        print(f"{r['table']:28s} {r['tasks']:5d} {r['fennec']:7.3f} {r['prior']:7.3f} {r['prior_std']:7.3f}  "
              f"{r['gap']:+.3f} +- {r['se']:.3f}  {r['normalization']}{flag}")
    gaps = np.array([r["gap"] for r in rows], dtype=float)
    print(f"\n{len(rows)} tables: mean gap to the better prior {gaps.mean():+.4f}, worst {gaps.min():+.4f}, "
          f"{int(np.sum(gaps < -0.005))} below -0.005")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
