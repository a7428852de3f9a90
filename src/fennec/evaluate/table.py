"""The evaluation's result as a readable table."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .scoring import METRICS

__all__ = ["format_table"]


def format_table(result: dict[str, Any]) -> str:
    """A readable table of the mean metrics, best weighted tau first."""
    mean = result["mean"]
    lines = [f"protocol {result['protocol']}"
             + (f", {result['shots']} shots, probe {result['probe']}" if result["protocol"] == "kshot" else "")
             + f": {result['n_tasks']} tasks, {result['n_models']} models"
             + (", related tasks held out with each (and in the fit's inner folds)" if result.get("exclude_related")
                else "")
             + (f", forward passes per task {result['evidence']['mean_forward_passes']:.1f} "
                f"(budget {result['budget']}, chosen by {result.get('choose') or 'top'})"
                if result.get("evidence") else ""),
             f"{'method':<14}" + "".join(f"{m:>9}" for m in METRICS)]
    paired = result.get("paired", {})
    if paired:
        lines[-1] += "   fennec-wtau +-se (won/lost)"
    for method in sorted(mean, key=lambda m: -np.nan_to_num(mean[m]["wtau"], nan=-9)):
        line = f"{method:<14}" + "".join(f"{mean[method][m]:>9.4f}" for m in METRICS)
        if method in paired:
            gap = paired[method]
            line += f"   {gap['diff']:+.3f} +-{gap['se']:.3f} ({gap['wins']}/{gap['losses']})"
        lines.append(line)
    for name, zoo in result.get("zoos", {}).items():
        wtau = {m: np.nan_to_num(v["wtau"], nan=-9.0) for m, v in zoo["mean"].items() if m != "random"}
        ours = f"fennec {wtau.pop('fennec'):.4f}, " if "fennec" in wtau else ""
        best = max(wtau, key=lambda m: wtau[m])
        lines.append(f"  {name}: {zoo['n_tasks']} tasks, {ours}best other {best} {wtau[best]:.4f}")
    if result.get("evidence"):
        chosen = Counter(str(e["metric"]) if e["metric"] is None else f"{e['metric']} weight {e['weight']}"
                         + (" with offsets" if e["corrected"] else "")
                         for e in result["evidence"]["tasks"].values())
        lines.append("forward-pass evidence chosen per held-out task: "
                     + ", ".join(f"{k} ({n})" for k, n in chosen.most_common()))
    return "\n".join(lines)
