"""How the fine-tune and linear-probe orders of the offline zoo's torch models differ, per task.

    python bench/finetune_orders.py --create PATH       # a zoo: the default task set x the catalogue's torch models
    fennec zoo measure PATH --kind finetune             # then (timed), and the linear probe of the same splits:
    fennec zoo measure PATH --kind linear_probe
    python bench/finetune_orders.py --zoo PATH          # Kendall tau per task between the two orders, and the mean

A task's linear-probe scores come from the zoo itself when it holds them (the same images and
splits), else (or with ``--packaged``) from the packaged demo zoo's history (``fennec demo``'s).
"""

from __future__ import annotations

import argparse
import math
import sys

import fennec
from fennec.demozoo.catalogue import CATALOGUE
from fennec.demozoo.datasets import load_dataset
from fennec.demozoo.task_sets import TASK_SETS


def torch_models() -> list[str]:
    return [m.id for m in CATALOGUE if m.trainable is not None]


def create(path: str, task_set: str = "default") -> None:
    zoo = fennec.Zoo.create(path)
    zoo.add_models([{"id": m} for m in torch_models()])
    names: dict[str, list[str]] = {}
    rows = []
    for task_id, dataset, keep in TASK_SETS[task_set]:
        if dataset not in names:
            names[dataset] = load_dataset(dataset)[2]
        classes = list(range(len(names[dataset]))) if keep is None else keep
        rows.append({"id": task_id, "dataset": dataset, "classes": ",".join(names[dataset][c] for c in classes)})
    zoo.add_tasks(rows)
    zoo.close()
    print(f"created {path}: {len(torch_models())} models x {len(rows)} tasks")


def _scores(zoo: fennec.Zoo, kind: str) -> dict[str, dict[str, float]]:
    if kind not in zoo.history_kinds():
        return {}
    history = zoo.history(kind)
    out: dict[str, dict[str, float]] = {}
    for m, t, s in zip(history.model_index, history.task_index, history.scores):
        out.setdefault(history.tasks[int(t)], {})[history.models[int(m)]] = float(s)
    return out


def report(path: str, packaged: bool = False) -> float:
    from scipy.stats import kendalltau

    with fennec.Zoo.open(path) as zoo:
        finetune = _scores(zoo, "finetune")
        probe = _scores(zoo, "linear_probe")
    where = "this zoo"
    if packaged or not probe:
        from fennec.demozoo.embedded import load_embedded

        embedded = load_embedded()
        probe = {task: embedded.scores(task) for task in finetune if task in embedded.tasks}
        where = "the packaged demo zoo"
    print(f"finetune vs linear_probe (from {where}), Kendall tau over the models of each task")
    print(f"{'task':<22} {'n':>2} {'tau':>6}  best by finetune / by linear probe")
    taus = []
    for task, scores in finetune.items():
        models = [m for m in scores if m in probe.get(task, {})]
        if len(models) < 2:
            continue
        tau = float(kendalltau([scores[m] for m in models], [probe[task][m] for m in models])[0])
        best_ft = max(models, key=lambda m: scores[m])
        best_lp = max(models, key=lambda m: probe[task][m])
        print(f"{task:<22} {len(models):>2} {tau:>6.3f}  {best_ft} / {best_lp}")
        if math.isfinite(tau):
            taus.append(tau)
    mean = sum(taus) / len(taus) if taus else float("nan")
    print(f"{'mean':<22} {'':>2} {mean:>6.3f}  over {len(taus)} task(s)")
    print("\nmean accuracy per model (finetune / linear probe):")
    for model in sorted({m for s in finetune.values() for m in s}):
        ft = [s[model] for s in finetune.values() if model in s]
        lp = [probe[t][model] for t in finetune if model in probe.get(t, {})]
        print(f"  {model:<20} {sum(ft) / len(ft):6.1f} / {(sum(lp) / len(lp)) if lp else float('nan'):6.1f}")
    return mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", help="report on this zoo")
    parser.add_argument("--packaged", action="store_true",
                        help="take the linear-probe orders from the packaged demo zoo, not from this zoo")
    parser.add_argument("--create", help="create this zoo (the default task set x the catalogue's torch models)")
    args = parser.parse_args(argv)
    if args.create:
        create(args.create)
    if args.zoo:
        report(args.zoo, args.packaged)
    if not (args.create or args.zoo):
        parser.error("give --create PATH and/or --zoo PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
