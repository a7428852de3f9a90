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

    python bench/prior_tables.py --zoo /path/to/zoo ... [--json out.json] [--rules]

``--rules`` also scores other ways of choosing the prior on the same tables and folds
(each held-out task's prior from the other tasks, the choice made by leave-one-out over
those tasks): the best of the three normalisations (fennec's rule), the best of the two
plain priors, one of them unless another is one standard error better, and the mean
of the three standardised; it prints how many tables each leaves more than 0.005
below the better plain prior.
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
from fennec.space.selection import weighted_tau  # noqa: E402
from fennec.space.transfer import NORMALIZATIONS, PRIOR_SHRINKAGE, normalize_scores  # noqa: E402
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


def _prior(history: np.ndarray, method: str) -> np.ndarray:
    normalized = normalize_scores(history, method)
    seen = ~np.isnan(normalized)
    prior: np.ndarray = np.where(seen, normalized, 0.0).sum(1) / (seen.sum(1) + PRIOR_SHRINKAGE)
    return prior


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else values * 0.0


def _one_se_better(taus: dict[str, np.ndarray], default: str) -> str:
    """``default`` unless another normalisation's inner mean beats it by one paired standard error."""
    pick = default
    for other in NORMALIZATIONS:
        diff = taus[other] - taus[default]
        diff = diff[~np.isnan(diff)]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) >= 2 else np.inf
        if other != default and diff.mean() > se and np.nanmean(taus[other]) >= np.nanmean(taus[pick]):
            pick = other
    return pick


RULES = ("best of 3", "best of raw/std", "std unless 1 SE", "raw unless 1 SE", "mean of 3")


def rule_row(scores: np.ndarray) -> dict[str, float]:
    """Each rule's mean weighted tau over the held-out tasks, and the two plain priors'."""
    n_tasks = scores.shape[1]
    out: dict[str, list[float]] = {r: [] for r in (*RULES, "raw", "std")}
    for t in range(n_tasks):
        if np.sum(~np.isnan(scores[:, t])) < 2:
            continue
        train = [u for u in range(n_tasks) if u != t]
        inner = {m: np.array([weighted_tau(_prior(scores[:, [w for w in train if w != u]], m), scores[:, u])
                              for u in train]) for m in NORMALIZATIONS}
        means = {m: np.nanmean(v) for m, v in inner.items()}
        priors = {m: _prior(scores[:, train], m) for m in NORMALIZATIONS}
        chosen = {"best of 3": priors[max(NORMALIZATIONS, key=means.get)],
                  "best of raw/std": priors[max(("center", "z"), key=means.get)],
                  "std unless 1 SE": priors[_one_se_better(inner, "z")],
                  "raw unless 1 SE": priors[_one_se_better(inner, "center")],
                  "mean of 3": sum(_standardized(p) for p in priors.values()),
                  "raw": priors["center"], "std": priors["z"]}
        for name, prediction in chosen.items():
            out[name].append(weighted_tau(prediction, scores[:, t]))
    return {name: float(np.nanmean(v)) for name, v in out.items()}


def print_rules(tables: list[tuple[str, np.ndarray]]) -> None:
    gaps: dict[str, list[float]] = {r: [] for r in RULES}
    print(f"\n{'table':28s} " + " ".join(f"{r:>16s}" for r in RULES))
    for name, scores in tables:
        row = rule_row(scores)
        better = max(row["raw"], row["std"])
        for r in RULES:
            gaps[r].append(row[r] - better)
        print(f"{name[:28]:28s} " + " ".join(f"{row[r] - better:+16.3f}" for r in RULES))
    for r in RULES:
        g = np.array(gaps[r])
        print(f"{r:16s}: {int(np.sum(g < -0.005))} of {len(g)} tables more than 0.005 below the better plain "
              f"prior, worst {g.min():+.3f}, mean {g.mean():+.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", default=[], help="an offline zoo whose history to add")
    parser.add_argument("--kind", default=None, help="the zoos' history kind (default: the fit's)")
    parser.add_argument("--seeds", type=int, default=5, help="synthetic tables per structure")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--rules", action="store_true", help="also score other ways of choosing the prior")
    args = parser.parse_args()
    tables = list(development_tables())
    for path in args.zoo:
        tables.append((f"zoo:{os.path.basename(os.path.normpath(path))}",
                       load_zoo_eval_data(Zoo.open(path), kind=args.kind)))
    for name, table in synthetic_tables(args.seeds):
        models = [f"m{i}" for i in range(table.shape[0])]
        tasks = [f"t{j}" for j in range(table.shape[1])]
        tables.append((f"synthetic:{name}", EvalData(scores=table, models=models, tasks=tasks)))
    rows = [row(name, data) for name, data in tables]
    print(f"{'table':28s} {'tasks':>5s} {'fennec':>7s} {'prior':>7s} {'p_std':>7s}  "
          f"{'gap to better':>16s}  normalisation")
    for r in rows:
        flag = "" if r["gap"] >= -0.005 else "  BELOW"  # type: ignore[operator]
        print(f"{r['table']:28s} {r['tasks']:5d} {r['fennec']:7.3f} {r['prior']:7.3f} {r['prior_std']:7.3f}  "
              f"{r['gap']:+.3f} +- {r['se']:.3f}  {r['normalization']}{flag}")
    gaps = np.array([r["gap"] for r in rows], dtype=float)
    print(f"\n{len(rows)} tables: mean gap to the better prior {gaps.mean():+.4f}, worst {gaps.min():+.4f}, "
          f"{int(np.sum(gaps < -0.005))} below -0.005")
    if args.rules:
        print_rules([(name, data.scores) for name, data in tables])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
