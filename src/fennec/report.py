"""One self-contained HTML page of an evaluation (``fennec eval --report out.html``).

The page holds the mean metrics of every method, the per-task weighted Kendall tau,
and pictures inlined as base64 PNG (no file beside it, nothing fetched): the mean
weighted tau per method, the per-task weighted tau as a heat map, and, when the
evaluation data is given, the transfer space fitted on every task and each task's
held-out prediction against its measured scores. An evaluation with a budget of forward
passes (``fennec eval --budget M``, lodo) also gets weighted tau against the budget: 0, M and
all, for fennec, the metric alone and the prior (one more evaluation, at all). Needs the
``plot`` extra.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from ._atomic import write_atomically
from .evaluate import METRICS, EvalData, fit_on_tasks, ranking_metrics
from .plot import (PALETTE, budget_curves, budget_figure, figure_png, held_out_scores, new_figure, space_figure,
                   task_directions)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["eval_report_html", "write_eval_report"]

HIGHER_IS_BETTER = {"wtau": True, "kendall": True, "pearson": True, "regret": False, "top3": True}
METRIC_NAMES = {"wtau": "weighted tau", "kendall": "Kendall tau", "pearson": "Pearson", "regret": "top-1 regret",
                "top3": "top-3 hit"}
TASK_PANELS = 12  # held-out panels per picture; every task gets one, in as many pictures as it takes

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
p.meta { color: #555; margin-top: 0; } code { background: #f4f4f4; padding: 0 0.3em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { padding: 0.3em 0.8em; text-align: right; border-bottom: 1px solid #e4e4e4; }
th:first-child, td:first-child { text-align: left; } thead th { background: #f2f5f9; }
td.best { font-weight: bold; background: #eaf5ea; } td.na { color: #aaa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _image(figure: Figure, caption: str) -> str:
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _methods_by_wtau(mean: dict[str, dict[str, float]]) -> list[str]:
    return sorted(mean, key=lambda m: -np.nan_to_num(mean[m].get("wtau", np.nan), nan=-9.0))


def _mean_table(result: dict[str, Any]) -> str:
    mean = result["mean"]
    methods = _methods_by_wtau(mean)
    best = {}
    for metric in METRICS:
        values = [mean[m][metric] for m in methods if not math.isnan(mean[m][metric])]
        if values:
            best[metric] = max(values) if HIGHER_IS_BETTER[metric] else min(values)
    paired = result.get("paired") or {}
    rows = []
    for method in methods:
        cells = []
        for metric in METRICS:
            value = mean[method][metric]
            css = "na" if math.isnan(value) else "best" if value == best.get(metric) else ""
            cells.append(f'<td class="{css}">{_fmt(value)}</td>')
        if paired:
            gap = paired.get(method)
            cells.append("<td></td>" if gap is None else
                         f"<td>{gap['diff']:+.3f} &plusmn; {_fmt(gap['se'])} ({gap['wins']}/{gap['losses']})</td>")
        rows.append(f"<tr><td>{html.escape(method)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(METRIC_NAMES[m])}</th>" for m in METRICS)
    if paired:
        head += "<th>fennec minus it, weighted tau &plusmn; s.e. (tasks won/lost)</th>"
    return f"<table><thead><tr><th>method</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _task_table(result: dict[str, Any], methods: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for task, by_method in result["tasks"].items():
        values = [by_method.get(m, {}).get("wtau", float("nan")) for m in methods]
        finite = [v for v in values if not math.isnan(v)]
        top = max(finite) if finite else None
        cells = "".join(f'<td class="{"na" if math.isnan(v) else "best" if v == top else ""}">{_fmt(v)}</td>'
                        for v in values)
        rows.append(f"<tr><td>{html.escape(task)}</td>{cells}</tr>")
    return f"<table><thead><tr><th>task</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metric_bars(result: dict[str, Any], methods: Sequence[str]) -> Figure:
    figure = new_figure(7.5, 0.6 + 0.4 * len(methods))
    ax = figure.add_subplot()
    means: list[float] = []
    errors: list[float] = []
    for method in methods:
        values = np.array([t[method]["wtau"] for t in result["tasks"].values() if method in t], dtype=float)
        values = values[~np.isnan(values)]
        means.append(values.mean() if values.size else np.nan)
        errors.append(values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else 0.0)
    y = np.arange(len(methods))[::-1]
    colours = [PALETTE[0] if not m.startswith(("random", "prior")) else "#999999" for m in methods]
    ax.barh(y, np.nan_to_num(means), xerr=errors, color=colours, error_kw={"capsize": 3, "lw": 1})
    ax.set_yticks(y, list(methods), fontsize=9)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("mean weighted Kendall tau over tasks (+/- standard error)")
    ax.set_title(f"protocol {result['protocol']}: {result['n_tasks']} tasks, {result['n_models']} models",
                 fontsize=11)
    return figure


def _task_heatmap(result: dict[str, Any], methods: Sequence[str]) -> Figure:
    tasks = list(result["tasks"])
    values = np.array([[result["tasks"][t].get(m, {}).get("wtau", np.nan) for m in methods] for t in tasks])
    figure = new_figure(1.6 + 0.75 * len(methods), 1.2 + 0.32 * len(tasks))
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(methods)), list(methods), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    for i in range(len(tasks)):
        for j in range(len(methods)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(values[i, j]) > 0.6 else "black")
    figure.colorbar(image, ax=ax, label="weighted tau", shrink=0.8)
    ax.set_title("weighted tau per held-out task", fontsize=11)
    return figure


def _prediction_grid(data: EvalData, tasks: Sequence[int], seed: int) -> Figure:
    """One panel per task: its held-out prediction (the score ``fennec rank`` prints) against the
    measured score."""
    columns = min(4, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure = new_figure(3.2 * columns, 2.9 * rows)
    for panel, j in enumerate(tasks):
        ax = figure.add_subplot(rows, columns, panel + 1)
        truth = data.scores[:, j]
        prediction = held_out_scores(data, j, seed)
        seen = ~np.isnan(truth)
        ax.scatter(prediction[seen], truth[seen], s=9, alpha=0.8, color=PALETTE[0], linewidths=0)
        best = np.flatnonzero(seen)[int(np.argmax(truth[seen]))]
        ax.scatter([prediction[best]], [truth[best]], s=45, facecolors="none", edgecolors=PALETTE[3])
        metrics = ranking_metrics(prediction, truth)
        ax.set_title(f"{data.tasks[j]}  (w.tau {metrics['wtau']:.2f})", fontsize=9)
        ax.tick_params(labelsize=7)
    figure.supxlabel("predicted score, task held out (as fennec rank prints it)", fontsize=9)
    figure.supylabel("measured score", fontsize=9)
    return figure


def _budget_section(result: dict[str, Any], data: EvalData, metric: str | None, seed: int) -> list[str]:
    """Weighted tau against the budget: the result gives budgets 0 (its fennec_history) and its own;
    one more evaluation gives all."""
    spent = result["budget"]
    budgets: list[int | str] = [0, spent] + ([] if spent == "all" else ["all"])
    curves = budget_curves(data, budgets, metric=metric, seed=seed,
                           exclude_related=bool(result.get("exclude_related")), results={0: result, spent: result})
    rows = "".join(f"<tr><td>{html.escape(str(b))}</td>"
                   + "".join(f"<td>{_fmt(line['mean'][i])} &plusmn; {_fmt(line['se'][i])}</td>"
                             for line in curves["methods"].values()) + "</tr>"
                   for i, b in enumerate(curves["budgets"]))
    head = "".join(f"<th>{html.escape(m + (' alone' if m == curves['metric'] else ''))}</th>"
                   for m in curves["methods"])
    return ["<h2>Forward passes: weighted tau against the budget</h2>",
            f"<p>Models run per held-out task (fennec's own top ones); the metric alone is "
            f"<code>{html.escape(curves['metric'])}</code> on the same models with the prior elsewhere "
            f"(at all: on every model). More budgets: <code>fennec plot --kind budget</code>.</p>",
            f"<table><thead><tr><th>budget</th>{head}</tr></thead><tbody>{rows}</tbody></table>",
            _image(budget_figure(curves), "Mean weighted tau over the held-out tasks (+/- one standard error) "
                                          "against the forward passes spent per task.")]


def eval_report_html(result: dict[str, Any], data: EvalData | None = None, *, title: str | None = None,
                     command: str | None = None, seed: int = 0, metric: str | None = None) -> str:
    """The HTML page of an :func:`~fennec.evaluate.evaluate` result (and its data, for the pictures of the space).
    ``metric``: the forward-pass metric the evaluation's budget was given (``evaluate(metrics=[metric])``)."""
    if not isinstance(result, dict) or "mean" not in result or "tasks" not in result:
        raise ValueError("result: expected the dict fennec.evaluate.evaluate returns")
    methods = _methods_by_wtau(result["mean"])
    title = title or f"fennec evaluation: {result['protocol']}"
    setting = f"protocol <code>{html.escape(str(result['protocol']))}</code>"
    if result.get("protocol") == "kshot":
        setting += f", {result['shots']} shots, probe <code>{html.escape(str(result['probe']))}</code>"
    setting += f", {result['n_tasks']} tasks, {result['n_models']} models, seed {result.get('seed', 0)}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='meta'>{setting}; fennec {html.escape(__version__)}</p>"]
    if command:
        parts.append(f"<p class='meta'><code>{html.escape(command)}</code></p>")
    parts += ["<h2>Mean over tasks</h2>",
              "<p>Best value per column in bold; top-1 regret is lower-is-better, the others higher.</p>",
              _mean_table(result), _image(_metric_bars(result, methods), "Mean weighted Kendall tau per method "
                                                                           "(grey: baselines without information "
                                                                           "about the task)."),
              "<h2>Per task: weighted Kendall tau</h2>", _task_table(result, methods),
              _image(_task_heatmap(result, methods), "Weighted tau of each method on each held-out task.")]
    if (data is not None and result.get("budget") is not None and result.get("protocol") == "lodo"
            and data.forward_scores):
        parts += _budget_section(result, data, metric, seed)
    if data is not None and result.get("protocol") in ("lodo", "kshot"):
        model = fit_on_tasks(data, np.arange(len(data.tasks)), seed)
        tasks = task_directions(model.model_vectors, model.normalized)
        parts += ["<h2>The transfer space</h2>",
                  _image(space_figure(model.model_vectors, data.model_types, task_vectors=tasks,
                                      task_names=data.tasks, model_names=data.models, seed=seed),
                         "Models on the first two principal axes of their transfer-space vectors (fitted on "
                         "every task), coloured by family; each task's arrow points where its best models lie."
                         if model.model_vectors.shape[1] > 1 else
                         "The space fitted on every task has one dimension (side information unused): each "
                         "model's prior, one row per family.")]
        measured = [j for j in range(len(data.tasks)) if np.sum(~np.isnan(data.scores[:, j])) >= 2]
        if len(data.tasks) >= 3 and measured:
            parts.append("<h2>Predicted against measured, task held out</h2>")
            unmeasured = len(data.tasks) - len(measured)
            size = math.ceil(len(measured) / math.ceil(len(measured) / TASK_PANELS))  # balanced pictures
            for start in range(0, len(measured), size):
                chunk = measured[start:start + size]
                where = (f" (tasks {start + 1} to {start + len(chunk)} of {len(measured)})"
                         if len(measured) > TASK_PANELS else "")
                parts.append(_image(
                    _prediction_grid(data, chunk, seed),
                    f"Each task{where}: fennec's prediction from the other tasks, in the units fennec rank "
                    "prints, against the measured score; the circle is the best measured model."
                    + (f" {unmeasured} task(s) with fewer than 2 measured models have no panel."
                       if unmeasured and start + size >= len(measured) else "")))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_eval_report(path: str | os.PathLike[str], result: dict[str, Any], data: EvalData | None = None,
                      **options: Any) -> None:
    """Writes :func:`eval_report_html` to ``path``, atomically (:func:`fennec._atomic.write_atomically`)."""
    write_atomically(path, eval_report_html(result, data, **options).encode("utf-8"), what="report")
