"""A budget of forward passes on a new task: which models to run, running them, their scores.

fennec predicts every model first, then runs at most ``budget`` of them over the
task's sampled images (among the models that can be run: its own best predicted, or with
``choose="change"`` those whose forward pass is expected to change the top of the ranking
most, see :mod:`fennec.space.choice`), computes the forward-pass metric the zoo's fit
chose to fuse (see :mod:`fennec.space.evidence`) from their features and the images'
labels, and hands
those scores to the ranking, which fuses them with its prediction. A zoo whose fit
found no forward-pass metric worth fusing runs nothing and says so.

Models that can be run are those the zoo keeps a runnable reference for (``fennec
zoo add-model --onnx/--torch``) and those of the packaged catalogue whose weights
are installed (see :mod:`fennec.runnable`); any other model keeps its prediction,
and the run says how many were left out and why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .features import place_task
from .space import TransferSpace, check_choice, choose_models

if TYPE_CHECKING:
    from .proxy.images import ImageSet
    from .zoo import Zoo

__all__ = ["ForwardRun", "check_budget_request", "parse_budget", "run_budget"]


@dataclass
class ForwardRun:
    """What a budget was spent on: each run model's metric score, the seconds it cost."""

    metric: str | None
    chosen_by: str = "top"  # the rule that chose the models (fennec.space.choice)
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # model -> why it could not be run
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "chosen_by": self.chosen_by, "models": list(self.scores),
                "scores": dict(self.scores),
                "seconds": dict(self.seconds), "total_seconds": float(sum(self.seconds.values())),
                "failed": dict(self.failed)}


_RULE_WORDS = {"top": "fennec's own top prediction", "change": "the largest expected change to the top"}


def check_budget_request(budget: int | str | None, metric: str | None, choose: object) -> str:
    """The rule that picks a budget's models (:func:`~fennec.space.check_choice`), after refusing
    a forward-pass metric or a rule given without a budget; ``fennec.rank``, ``fennec.evaluate``
    and ``POST /rank/images`` all check a request here."""
    rule = check_choice(choose)
    if budget is None:
        if metric is not None:
            raise ValueError("metric: names the forward-pass metric a budget is spent on; give budget too")
        if choose is not None:
            raise ValueError(f"choose: picks the models a budget runs ({rule!r}); give budget too")
    return rule


def parse_budget(budget: int | str | None) -> int | None:
    """A budget as a number of models (None: every model that can be run); refuses anything else."""
    if budget is None or budget == "all":
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, str)):
        raise ValueError(f"budget: expected a positive number of models or 'all', got {budget!r}")
    if isinstance(budget, str):
        if not budget.isdigit():
            raise ValueError(f"budget: expected a positive number of models or 'all', got {budget!r}")
        budget = int(budget)
    if budget < 1:
        raise ValueError(f"budget: expected a positive number of models or 'all', got {budget}")
    return budget


def _runnable(zoo: Zoo | None, models: Sequence[str]) -> tuple[set[str], dict[str, str]]:
    """The models that can be run here, and why each other one cannot."""
    from .runnable import runnable_models

    return runnable_models(zoo, models)


def run_budget(zoo: Zoo | None, space: TransferSpace, task: Mapping[str, Any] | Sequence[float] | None,
               images: ImageSet, budget: int | str | None, *, metric: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None, choose: str | None = None) -> ForwardRun:
    """Runs at most ``budget`` models of ``space`` over ``images`` and scores them with the metric
    the space fuses (``metric``, when given, must be that one). ``choose`` picks them among the
    models that can be run: ``"top"`` (None), the best predicted; ``"change"``, the largest
    expected change to the top of the ranking (:mod:`fennec.space.choice`). ``zoo`` holds the
    models' runnable references (None: only the packaged catalogue's models can be run)."""
    from . import metrics as forward_metrics
    from .runnable import model_extractor

    limit = parse_budget(budget)
    rule = check_choice(choose)
    chosen = space.evidence
    if chosen is None:
        return ForwardRun(None, rule, notes=["no model was run: the zoo's fit found no forward-pass metric "
                                             "that improves its ranking on its known tasks (or the zoo stores "
                                             "none)"])
    if metric is not None and metric != chosen.metric:
        raise ValueError(f"metric: the zoo's fit fuses {chosen.metric!r} scores (its weight was learnt for "
                         f"that metric); give --metric {chosen.metric} or leave it out")
    if images.labels is None or images.n_classes < 2:
        raise ValueError("budget: the forward-pass metric needs labelled images of at least 2 classes "
                         "(DIR/<class>/<image>)")
    placed = place_task(space, task)
    prediction = space.predict(placed.features, placed.distances)
    runnable, why = _runnable(zoo, space.models)
    rows = np.array([i for i, m in enumerate(space.models) if m in runnable], dtype=np.int64)
    order = choose_models(space, prediction, rows, limit, rule)
    run = ForwardRun(chosen.metric, rule)
    score = forward_metrics.METRICS[chosen.metric]
    for i in order.tolist():
        model = space.models[i]
        start = time.perf_counter()
        try:
            features = model_extractor(zoo, model, cache_dir).features(images)
            run.scores[model] = float(score(features, images.labels))
        except (ValueError, RuntimeError, OSError) as error:  # one model that cannot take the input
            run.failed[model] = f"{type(error).__name__}: {error}"
        run.seconds[model] = time.perf_counter() - start
    if why:
        run.notes.append(f"{len(why)} model(s) keep their prediction, not runnable here (e.g. "
                         f"{next(iter(why))}: {next(iter(why.values()))})")
    if run.failed:
        run.notes.append(f"{len(run.failed)} model(s) failed to run and keep their prediction: "
                         + "; ".join(f"{m}: {w}" for m, w in list(run.failed.items())[:3]))
    run.notes.append(f"ran {len(run.scores)} model(s) over {len(images)} images for {chosen.metric} in "
                     f"{sum(run.seconds.values()):.1f} s, chosen by {_RULE_WORDS[rule]}: " + ", ".join(run.scores))
    return run
