"""How far any blend of fennec's prediction with the stored forward-pass metrics can go.

The fusion (``fennec/space/evidence.py``) blends fennec's prediction for a new task with a
metric's scores, at a weight chosen by inner cross-validation on the known tasks. This
script gives that blend every advantage: per table, fennec's history-only prediction for
each held-out task (leave one task out, or with ``--exclude-related`` its related tasks
too, fitted as ``fennec eval`` fits its folds), blended with each metric, or the sum of
two metrics, at each fixed weight, every model scored, and the weight then picked on the
held-out tasks themselves. No fit can choose better than that, so the best row bounds
what a linear fusion of these scores reaches. Prints the mean weighted tau of the best
blends and their paired gap to LogME alone with its standard error::

    python bench/fusion_ceiling.py --zoo Z [--zoo Z2 ...] [--exclude-related]
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np

from source_tree import use_source_tree  # noqa: E402

use_source_tree()

from fennec.evaluate import fit_on_tasks, load_zoo_eval_data, place_held_out  # noqa: E402
from fennec.space.selection import weighted_tau  # noqa: E402
from fennec.zoo import Zoo  # noqa: E402

WEIGHTS = np.linspace(0.0, 1.0, 9)  # the metric's share; 0 is fennec alone, 1 the metric alone


def _standardized(values: np.ndarray) -> np.ndarray:
    spread = np.nanstd(values)
    out: np.ndarray = (values - np.nanmean(values)) / spread if spread > 0 else np.zeros_like(values)
    return out


def blend_taus(paths: list[str], exclude_related: bool) -> dict[tuple[str, float], list[float]]:
    """(metric or metric pair, weight) -> weighted tau per held-out task, over every table."""
    out: dict[tuple[str, float], list[float]] = {}
    for path in paths:
        data = load_zoo_eval_data(Zoo.open(path))
        forward = {m: v for m, v in (data.forward_scores or {}).items()}
        sources = {m: [m] for m in forward} | {f"{a}+{b}": [a, b] for a, b in itertools.combinations(forward, 2)}
        for target in range(len(data.tasks)):
            truth = data.scores[:, target]
            if np.sum(np.isfinite(truth)) < 2:
                continue
            held = data.related[target] if exclude_related and data.related is not None else \
                np.arange(len(data.tasks)) == target
            train = np.flatnonzero(~held)
            space = fit_on_tasks(data, train, exclude_related=exclude_related)
            placed = place_held_out(data, space, target, train)
            prediction = _standardized(space.predict(placed.features, placed.distances))
            for name, metrics in sources.items():
                evidence = _standardized(sum(_standardized(forward[m][:, target]) for m in metrics))
                if not np.all(np.isfinite(evidence)):
                    continue
                for w in WEIGHTS:
                    out.setdefault((name, float(w)), []).append(
                        weighted_tau((1 - w) * prediction + w * evidence, truth))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", required=True, help="zoos with forward-pass kinds; pooled")
    parser.add_argument("--exclude-related", action="store_true")
    parser.add_argument("--top", type=int, default=8, help="how many of the best blends to print")
    args = parser.parse_args()
    taus = blend_taus(args.zoo, args.exclude_related)
    logme = np.array(taus[("logme", 1.0)], dtype=float)
    fennec = np.array(taus[("logme", 0.0)], dtype=float)
    name = "+".join(os.path.basename(os.path.normpath(z)) for z in args.zoo)
    print(f"{name}{' excl-related' if args.exclude_related else ''}: {len(logme)} tasks; "
          f"fennec alone {np.nanmean(fennec):.3f}, LogME alone {np.nanmean(logme):.3f}")
    ranked = sorted(taus, key=lambda k: -np.nanmean(taus[k]))
    for key in ranked[:args.top]:
        gap = np.array(taus[key], dtype=float) - logme
        gap = gap[np.isfinite(gap)]
        print(f"  {key[0]:24s} weight {key[1]:.3f}: {np.nanmean(taus[key]):.3f}  "
              f"minus LogME alone {gap.mean():+.4f} +- {gap.std(ddof=1) / np.sqrt(len(gap)):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
