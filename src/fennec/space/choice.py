"""Which models a budget of forward passes runs on a new task.

Two rules, each given the models that can be run (``candidates``) and a budget of ``m``:

- ``"top"``: fennec's own ``m`` best predicted models.
- ``"change"``: the models whose forward pass is expected to change the top of the
  ranking most towards the truth, from the fit's evidence model
  (:mod:`fennec.space.evidence`).

The evidence model. Before model ``i`` is run, its true score on the new task is its
prediction ``p_i`` plus ``Delta_i ~ N(0, u_i^2)`` (``u_i`` the prediction's own
uncertainty, the model's spread around its prior; 0 when the space has none), and its
corrected metric score the truth plus ``eps_i ~ N(0, (r_i unit)^2)`` (``r_i`` its
residual spread under the metric on the known tasks, in standardised units; ``unit``
the known tasks' typical spread of normalised scores, which turns them into the
prediction's). The metric's discrepancy from the prediction, ``S_i = Delta_i + eps_i``,
has variance ``tau_i^2 = u_i^2 + (r_i unit)^2``. The fusion standardises the run models'
metric scores among them and blends them, with the fit's weight ``w``, into their
standardised predictions, keeping the predictions' mean and spread among them. Among
the models it would see (``c`` the spread of their predictions, ``mean`` their mean,
``tbar^2`` their mean ``tau^2``), the standardised metric is ``rho (z_i + S_i / c)`` with
``rho = c / sqrt(c^2 + tbar^2)``, the blend's spread ``s = sqrt((1 - w + w rho)^2 +
w^2 (1 - rho^2))``, and model ``i``'s fused score

    F_i = mu_i + (w rho / s) S_i,   mu_i = mean + (1 - w + w rho) / s * (p_i - mean).

The expected change to the top. For every boundary ``k`` of the current ranking (its
top-``k``, ``k = 1 .. n-1``) let ``t_k`` be the ``k``-th best prediction among the *other*
models. Running ``i`` changes that top-``k`` when ``F_i`` crosses ``t_k``: a model outside
enters it (``F_i > t_k``), one inside leaves it (``F_i < t_k``). The change is worth what
it moves towards the truth: ``T_i - t_k`` for an entry, ``t_k - T_i`` for an exit
(negative when the crossing is wrong). Its expectation, with ``G = -|p_i - t_k|`` (the
prediction says the current side is right), ``h`` the fused centre's margin past
``t_k`` in the crossing's direction over ``sigma_i = w rho tau_i / s``, and
``E[Delta_i | S_i] = S_i u_i^2 / tau_i^2``, is

    G Phi(h) + (u_i^2 / tau_i) phi(h)        (G [h > 0] where sigma_i is 0).

A model's expected change is the sum of these over ``k`` weighted ``1 / k``, the
hyperbolic weights of the weighted Kendall tau rankings are judged by, so the very top
counts most and no ``k`` has to be picked. The ``"change"`` rule runs the models with the
largest (ties: the best predicted).

Why this and not the expected size of the move alone (``E[max(0, F_i - t_k)]``): a move
that comes from the metric's error is as large as one that comes from information, and
measured on the default zoo the size alone ran the models whose metric is most erratic.
Here a pass is worth most for a model near a boundary whose prediction is uncertain and
whose metric is precise; a metric that is mostly error makes its crossings a loss. With
an exact metric and the fused score equal to the truth this is the knowledge gradient
of choosing the top-``k``.

A fit that re-ranks only a shortlist of the run models (the best predicted ``n`` of
them) would drop every further model, so the ``"change"`` rule runs at most ``n``; with
no limit (``"all"``) both rules run every candidate.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .fitted import TransferSpace

__all__ = ["CHOICE_RULES", "check_choice", "choose_models", "expected_changes"]

CHOICE_RULES = ("top", "change")
_CELLS_PER_CHUNK = 1 << 21  # candidates x models evaluated at once, to bound memory on large zoos


def check_choice(choose: object) -> str:
    """The rule that chooses a budget's models, as given (None: ``"top"``); every entry point
    (``fennec.rank``, ``fennec.evaluate``, the command line, the service) checks it here."""
    if choose is None:
        return "top"
    if not isinstance(choose, str):
        raise TypeError(f"choose: expected 'top' or 'change' (the rule that picks the models a budget runs), "
                        f"got {choose!r}")
    if choose not in CHOICE_RULES:
        raise ValueError(f"choose: expected 'top' (fennec's own best predicted) or 'change' (the largest expected "
                         f"change to the top of the ranking), got {choose!r}")
    return choose


def choose_models(space: TransferSpace, prediction: np.ndarray, candidates: np.ndarray, budget: int | None,
                  choose: str = "top") -> np.ndarray:
    """The rows of ``candidates`` (models that can be run) a budget of ``budget`` forward passes
    (None: every candidate) runs under rule ``choose``, best predicted first (see the module's
    docstring). ``prediction``: every model's prediction for the new task."""
    rule = check_choice(choose)
    prediction = np.asarray(prediction, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.int64)
    by_prediction = candidates[np.argsort(-prediction[candidates], kind="stable")]
    if budget is None:
        return by_prediction
    top = by_prediction[:budget]
    evidence = space.evidence
    if rule == "top" or evidence is None:  # without a fusion nothing is expected to change
        return top
    fused = budget if evidence.shortlist is None else min(budget, evidence.shortlist)
    changes = expected_changes(space, prediction, by_prediction, top[:fused])
    order = np.lexsort((np.arange(len(by_prediction)), -changes))  # ties: the best predicted first
    chosen = by_prediction[np.sort(order[:fused])]
    return chosen


def expected_changes(space: TransferSpace, prediction: np.ndarray, rows: np.ndarray,
                     reference: np.ndarray) -> np.ndarray:
    """The expected change to the top of the ranking, towards the truth, that running each model
    of ``rows`` would make (see the module's docstring), the fusion's scale taken among the
    models ``reference``."""
    evidence = space.evidence
    if evidence is None:
        raise ValueError("choose='change': the zoo's fit fuses no forward-pass metric, so no forward pass is "
                         "expected to change the ranking")
    if evidence.residual_spread is None:
        raise ValueError("choose='change' needs each model's residual spread under the metric, which this zoo's "
                         "fit predates; refit the zoo (fennec zoo fit) or choose 'top'")
    prediction = np.asarray(prediction, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    out = np.zeros(len(rows))
    n = len(prediction)
    if len(reference) < 2 or prediction[reference].std() == 0 or n < 2:
        return out  # the fusion reorders at least two models that differ; it would change nothing
    mean, scale = prediction[reference].mean(), prediction[reference].std()
    own = np.zeros(n) if space.spread is None else np.asarray(space.spread, dtype=np.float64) ** 2
    discrepancy = (np.asarray(evidence.residual_spread, dtype=np.float64) * _unit(space.normalized)) ** 2 + own
    rho = scale / np.sqrt(scale**2 + discrepancy[reference].mean())
    weight = evidence.weight
    shrink = 1.0 - weight + weight * rho
    blend_spread = np.sqrt(shrink**2 + weight**2 * (1.0 - rho**2))
    centre = mean + shrink / blend_spread * (prediction[rows] - mean)
    tau = np.sqrt(discrepancy[rows])
    sigma = weight * rho * tau / blend_spread
    informed = np.divide(own[rows], tau, out=np.zeros(len(rows)), where=tau > 0)  # u^2 / tau

    order = np.lexsort((np.arange(n), -prediction))
    ranked = prediction[order]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    k = np.arange(1, n)
    weights = 1.0 / k
    chunk = max(1, _CELLS_PER_CHUNK // n)
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        # Boundary k: the k-th best of the others is ranked[k-1] while the model stands at or
        # below place k (outside the top-k), ranked[k] once it is inside.
        outside = k[None, :] <= position[rows[part], None]
        threshold = np.where(outside, ranked[None, k - 1], ranked[None, k])
        direction = np.where(outside, 1.0, -1.0)  # an entry moves up, an exit down
        wrong_side = -np.abs(prediction[rows[part], None] - threshold)
        margin = direction * (centre[part, None] - threshold)
        out[part] = _crossing_gain(wrong_side, margin, sigma[part, None], informed[part, None]) @ weights
    return out


def _crossing_gain(wrong_side: np.ndarray, margin: np.ndarray, sigma: np.ndarray, informed: np.ndarray) -> np.ndarray:
    """``G Phi(h) + informed phi(h)`` with ``h = margin / sigma`` (``G [margin > 0]`` where sigma is 0)."""
    safe = np.where(sigma > 0, sigma, 1.0)
    h = margin / safe
    normal = wrong_side * ndtr(h) + informed * np.exp(-0.5 * h**2) / np.sqrt(2 * np.pi)
    gain: np.ndarray = np.where(sigma > 0, normal, np.where(margin > 0, wrong_side, 0.0))
    return gain


def _unit(normalized: np.ndarray) -> float:
    """The known tasks' typical spread of normalised scores: a standardised unit in the
    prediction's units."""
    values = np.asarray(normalized, dtype=np.float64)
    seen = np.isfinite(values)
    usable = seen.sum(0) >= 2
    if not usable.any():
        return 1.0
    return float(np.sqrt(np.nanvar(np.where(seen, values, np.nan)[:, usable], axis=0).mean()))
