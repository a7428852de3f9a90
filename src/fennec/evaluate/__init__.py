"""Evaluation protocols for model recommendation, with the baselines in the same run.

Protocols
---------
``lodo``        leave one task out: the task is new; each method ranks all models for it.
``kshot``       as ``lodo``, but ``shots`` scores on the new task are known: drawn at
                random (``probe="random"``, repeated over seeds) or the ``shots`` models
                the method itself ranked first (``probe="top"``), reported back.
``cold-model``  k-fold over models: the held-out models have no history and are
                known only by their side information; each task ranks them.

Metrics, per task and averaged over tasks: weighted Kendall tau exactly as the field
computes it (``scipy.stats.weightedtau(score, truth)[0]``, defaults), Kendall tau,
Pearson, top-1 regret (best score minus the score of the model ranked first) and
top-3 hit (the best model is among the three ranked first).

With a dozen tasks, a gap in mean weighted tau between two methods is often
smaller than its noise, so every result also holds ``paired``: for each other
method, fennec's weighted tau minus that method's over the tasks both ranked,
with its standard error and the count of tasks won and lost. Results on
several zoos (each its own leave-one-out) are pooled task by task with
:func:`pool_results`.
"""

from .baselines import NMF_RANK, nmf, nmf_predict
from .data import (
    FORWARD_METHOD_NAMES,
    GROUND_TRUTH_KINDS,
    EvalData,
    embed_distances,
    load_eval_data,
    load_zoo_eval_data,
    read_forward_scores,
    related_tasks,
)
from .held_out import fit_on_tasks, held_out_prediction, place_held_out
from .protocols import evaluate, pool_results
from .scoring import METRICS, average_metrics, paired_differences, ranking_metrics
from .table import format_table

__all__ = [
    "EvalData",
    "FORWARD_METHOD_NAMES",
    "GROUND_TRUTH_KINDS",
    "METRICS",
    "NMF_RANK",
    "average_metrics",
    "embed_distances",
    "evaluate",
    "fit_on_tasks",
    "format_table",
    "held_out_prediction",
    "load_eval_data",
    "load_zoo_eval_data",
    "nmf",
    "nmf_predict",
    "paired_differences",
    "place_held_out",
    "pool_results",
    "ranking_metrics",
    "read_forward_scores",
    "related_tasks",
]
