"""fennec fused with forward-pass scores, against the metric alone and the prior, on a budget.

For each table (a zoo with forward-pass kinds, or a history with ``--forward-scores``),
leave one task out with a budget of forward passes on it (0: history only, M models,
all): prints the mean weighted tau of fennec, of fennec without the forward scores,
of the metric alone on every model, of the metric on the same M models (the prior
elsewhere), and of the prior, fennec's paired gaps with their standard errors, the
forward passes spent, and the choices the fits' inner cross-validation made::

    python bench/evidence_tables.py --zoo Z [--zoo Z2 ...] [--exclude-related] [--budget 3 --budget all]
        [--metric logme] [--transfergraph] [--choose top --choose change]

With two ``--choose`` rules (which models a budget runs: fennec's own top, or where the
expected change to the top of the ranking is largest), each budget is evaluated under
both and fennec's paired gap between them is printed.
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

from fennec.evaluate import evaluate, load_eval_data, load_zoo_eval_data, paired_differences, pool_results  # noqa: E402
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


def choice_gap(name: str, results: dict[str, dict[str, Any]]) -> None:
    """fennec's paired gap, the second choice rule minus the first, over the tasks both ranked."""
    (first, a), (second, b) = results.items()
    tasks = {t: {second: b["tasks"][t]["fennec"], first: a["tasks"][t]["fennec"]}
             for t in a["tasks"] if t in b["tasks"]}
    gap = paired_differences(tasks, method=second)[first]
    passes = [r["evidence"]["mean_forward_passes"] if "evidence" in r else 0.0 for r in (a, b)]
    print(f"{name[:28]:28s} {second} - {first}: {gap['diff']:+.4f} +- {gap['se']:.4f} over {gap['n']} tasks "
          f"({gap['wins']} wins, {gap['losses']} losses); forward passes per task {passes[0]:.2f} / {passes[1]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", default=[], help="zoos to evaluate; several are pooled")
    parser.add_argument("--transfergraph", action="store_true", help="the TransferGraph table with its LogME")
    parser.add_argument("--exclude-related", action="store_true")
    parser.add_argument("--budget", action="append", default=[], help="a number of models or 'all' (repeats)")
    parser.add_argument("--metric", default=None, help="restrict the fusion to this metric")
    parser.add_argument("--choose", action="append", choices=["top", "change"], default=[],
                        help="which models a budget runs (repeat both to compare them)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if len(args.choose) > 2 or len(set(args.choose)) < len(args.choose):
        parser.error("--choose: give one rule, or top and change once each")
    budgets: list[Any] = [None] + [b if b == "all" else int(b) for b in args.budget or ["all"]]
    metrics = None if args.metric is None else [args.metric]
    shown = args.metric or "logme"
    out: dict[str, Any] = {}
    names = [os.path.basename(os.path.normpath(z)) for z in args.zoo]
    tables = ([("transfergraph", lambda: {"transfergraph": transfergraph()}, False)] if args.transfergraph else []) + \
        ([("+".join(names), lambda: {n: load_zoo_eval_data(Zoo.open(z)) for n, z in zip(names, args.zoo)},
           args.exclude_related)] if args.zoo else [])
    for budget in budgets:
        # History only runs no model, so it has no choice to compare.
        rules = [None] if budget is None else (args.choose or [None])
        for name, load, exclude_related in tables:
            by_rule = {}
            for rule in rules:
                results = {n: evaluate(data, "lodo", budget=budget, metrics=metrics, choose=rule,
                                       exclude_related=exclude_related) for n, data in load().items()}
                result = next(iter(results.values())) if len(results) == 1 else pool_results(results)
                label = name + (" excl-related" if exclude_related else "") + (f" {rule}" if rule else "")
                summary(label[:28], result, budget, shown)
                out[f"{label}/{budget}"] = by_rule[str(rule)] = result
            if len(by_rule) == 2:
                choice_gap(name, by_rule)
            sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
