"""fennec fused with forward-pass scores, against the metric alone and the prior, on a budget.

For each table (a zoo with forward-pass kinds, or a history with ``--forward-scores``),
leave one task out with a budget of forward passes on it (0: history only, M models,
all): prints the mean weighted tau of fennec, of fennec without the forward scores,
of the metric alone on every model, of the metric on the same M models (the prior
elsewhere), and of the prior, fennec's paired gaps with their standard errors, the
forward passes spent, and the choices the fits' inner cross-validation made::

    python bench/evidence_tables.py --zoo Z [--zoo Z2 ...] [--exclude-related] [--budget 3 --budget all]
        [--metric logme] [--transfergraph]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

from source_tree import use_source_tree  # noqa: E402

use_source_tree()

from fennec.evaluate import evaluate, load_eval_data, load_zoo_eval_data, pool_results  # noqa: E402
from fennec.zoo import Zoo  # noqa: E402

TG = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "transfergraph_image"


def transfergraph() -> Any:
    return load_eval_data(TG / "records.csv", task_col="finetuned_dataset", score_col="eval_accuracy",
                          exclude_tasks=["food101"], models_path=TG / "model_config.csv",
                          tasks_path=TG / "target_dataset_features.csv", task_key="finetune_dataset",
                          task_distance_path=TG / "domain_distance_vit_b16.csv",
                          forward_scores_path=TG / "transferability_scores.csv")


def summary(name: str, result: dict[str, Any], budget: Any, metric: str) -> None:
    mean, paired = result["mean"], result["paired"]
    keys = ["fennec", "fennec_history", metric, f"{metric}_top{budget}", "prior", "prior_std"]
    cells = [f"{k} {mean[k]['wtau']:.3f}" for k in keys if k in mean]
    gaps = [f"-{k} {paired[k]['diff']:+.3f}+-{paired[k]['se']:.3f}" for k in keys[1:] if k in paired]
    print(f"{name:28s} budget {str(budget):4s} n={result['n_tasks']:3d} " + "  ".join(cells))
    print(f"{'':28s} gaps: " + "  ".join(gaps))
    if "evidence" in result:
        chosen = collections.Counter((e["metric"], e["weight"], e["corrected"], e.get("shortlist"))
                                     for e in result["evidence"]["tasks"].values())
        print(f"{'':28s} forward passes per task {result['evidence']['mean_forward_passes']:.1f}; "
              f"chosen (metric, weight, offsets, shortlist): {dict(chosen.most_common(6))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", default=[], help="zoos to evaluate; several are pooled")
    parser.add_argument("--transfergraph", action="store_true", help="the TransferGraph table with its LogME")
    parser.add_argument("--exclude-related", action="store_true")
    parser.add_argument("--budget", action="append", default=[], help="a number of models or 'all' (repeats)")
    parser.add_argument("--metric", default=None, help="restrict the fusion to this metric")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    budgets: list[Any] = [None] + [b if b == "all" else int(b) for b in args.budget or ["all"]]
    metrics = None if args.metric is None else [args.metric]
    shown = args.metric or "logme"
    out: dict[str, Any] = {}
    for budget in budgets:
        if args.transfergraph:
            result = evaluate(transfergraph(), "lodo", budget=budget, metrics=metrics)
            summary("transfergraph", result, budget, shown)
            out[f"transfergraph/{budget}"] = result
        if args.zoo:
            results = {os.path.basename(os.path.normpath(z)): evaluate(
                load_zoo_eval_data(Zoo.open(z)), "lodo", budget=budget, metrics=metrics,
                exclude_related=args.exclude_related) for z in args.zoo}
            result = results[next(iter(results))] if len(results) == 1 else pool_results(results)
            name = "+".join(results) + (" excl-related" if args.exclude_related else "")
            summary(name[:28], result, budget, shown)
            out[f"{name}/{budget}"] = result
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
