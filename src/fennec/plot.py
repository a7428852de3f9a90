"""Pictures of a zoo with matplotlib: the transfer space, predicted against measured
scores for a task, and a ranking with its uncertainty.

Figures are drawn with matplotlib's object interface on the Agg canvas, so nothing
here changes the backend of a program that imports it (Jupyter, a GUI). Needs the
``plot`` extra (matplotlib).

- :func:`space_figure`: models projected on the first two principal axes of their
  transfer-space vectors (Pearson, 1901), coloured by architecture family and named
  when few; known tasks drawn as arrows along their direction in the same plane (a
  biplot, Gabriel 1971), so models further along a task's arrow are predicted to do
  better on it. Labels are placed by :func:`place_labels` inside the axes, apart.

A family has one colour in every picture (:func:`family_colour`).
- :func:`predicted_figure`: a held-out task's predicted scores against the measured
  ones, with the field's ranking metrics in the title.
- :func:`ranking_figure`: the top of a ranking as bars with +/- uncertainty.
- :func:`budget_figure`: mean weighted tau against a budget of forward passes (0 to all)
  for fennec, the forward-pass metric alone on the same models and the prior, from
  :func:`budget_curves`.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ._atomic import write_atomically
from ._checks import integer

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

    from .zoo import Zoo

__all__ = ["budget_curves", "budget_figure", "family_colour", "figure_png", "held_out_scores", "leave_one_task_out",
           "method_colour", "new_figure", "parse_budgets", "place_labels", "predicted_figure", "ranking_figure",
           "save_png", "space_figure", "task_directions", "zoo_budget_figure", "zoo_predicted_figure",
           "zoo_ranking_figure", "zoo_space_figure"]

MAX_FAMILIES = 12  # families named in a legend; the rest are counted in one entry
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
OTHER = "#b0b0b0"  # no family recorded
# Fixed colours of common architecture families, so a family looks the same in every picture
# whatever else is drawn beside it; a family not listed takes one of EXTRA_COLOURS by a hash of
# its name (the same in every picture too).
FAMILY_COLOURS = {
    "resnet": "#2ca02c", "vit": "#d62728", "efficientnet": "#1f77b4", "mobilenet": "#ff7f0e",
    "mobilenetv3": "#17becf", "vgg": "#8c564b", "lcnet": "#9467bd", "yolo": "#e377c2", "convnext": "#bcbd22",
    "swin": "#5254a3", "beit": "#aec7e8", "deit": "#ff9896", "regnet": "#98df8a", "densenet": "#c5b0d5",
    "inception": "#c49c94", "dinov2": "#f7b6d2", "cnn": "#ffbb78", "mlp": "#9edae5",
}
# No greys among these: grey is for a model with no family recorded.
EXTRA_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
                 "#756bb1", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#e7ba52", "#ad494a", "#a55194")
MAX_NAMED_POINTS = 30  # models named in the space picture when at most this many are drawn
MAX_TASK_LABELS = 30  # tasks named there: the longest arrows first


def new_figure(width: float, height: float) -> Figure:
    """An empty matplotlib figure of ``width`` x ``height`` inches (100 dpi, constrained layout) on its
    own Agg canvas, so drawing it leaves the program's matplotlib backend alone."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("pictures need matplotlib: pip install 'fennec[plot]'") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> tuple[int, int]:
    """Writes the figure as a PNG, atomically (:func:`fennec._atomic.write_atomically`); returns
    its (width, height) in pixels."""
    data = figure_png(figure, dpi=dpi)
    write_atomically(path, data, what="output")
    # The IHDR chunk follows the 8-byte signature: length, type, then width and height.
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def family_colour(family: str | None) -> str:
    """The colour of an architecture family in every picture fennec draws (grey: none recorded)."""
    if not family or family == "unknown":
        return OTHER
    key = str(family).strip().lower()
    if key in FAMILY_COLOURS:
        return FAMILY_COLOURS[key]
    return EXTRA_COLOURS[zlib.crc32(key.encode("utf-8")) % len(EXTRA_COLOURS)]


def method_colour(method: str) -> str:
    """The colour of an evaluated method: fennec blue, the baselines without task information grey
    (as the report's bars draw them), any other by :func:`family_colour` of its name."""
    if method.startswith("fennec"):
        return PALETTE[0]
    if method.startswith(("prior", "random")):
        return "#999999"
    return family_colour(method)


def _family_colours(families: Sequence[str | None]) -> tuple[list[str], list[tuple[str, str]]]:
    """Each entry's family colour, and the legend: the most common families, then a count of the rest."""
    names = [f if f else "unknown" for f in families]
    counts = Counter(names)
    common = [name for name, _ in counts.most_common(MAX_FAMILIES)]
    legend = [(name, family_colour(name)) for name in common]
    if len(counts) > len(common):
        legend.append((f"{len(counts) - len(common)} more families", "#ffffff"))
    return [family_colour(name) for name in names], legend


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The area two boxes (x0, y0, x1, y1) share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(ax: Any, anchors: Sequence[tuple[float, float]], texts: Sequence[str], *,
                 directions: Sequence[float | None] | None = None, obstacles: Sequence[tuple[float, float]] = (),
                 fontsize: float = 8, margin: float = 3.0) -> list[int]:
    """Writes each text near its anchor (data coordinates), inside the axes and clear of every other
    label, and returns the indices of the texts written (a text that finds no room is left out).

    Deterministic greedy placement in display space: for each label in turn, candidate spots at
    growing distances around its anchor (first along ``directions[i]``, radians, when given) are
    tried, and the first that lies inside the axes and overlaps no label placed before, nor an
    ``obstacles`` point (a model's dot), is kept; when only obstacles are in the way the spot that
    covers the fewest is kept. A label set away from its anchor gets a thin leader line. The axes'
    limits must be final: call after setting them. The figure is drawn once (the layout settles),
    then its layout engine is switched off so that later drawing keeps these positions.
    """
    figure = ax.figure
    figure.canvas.draw()  # constrained layout places the axes during a draw
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    inner = (frame.x0 + margin, frame.y0 + margin, frame.x1 - margin, frame.y1 - margin)
    to_display = ax.transData.transform
    to_data = ax.transData.inverted().transform
    dots = to_display(np.asarray(obstacles, dtype=float).reshape(-1, 2)) if len(obstacles) else np.zeros((0, 2))
    dot_radius = 3.0
    placed: list[tuple[float, float, float, float]] = []
    written: list[int] = []
    angles = [k * math.pi / 8 for k in range(16)]
    radii = (4.0, 10.0, 18.0, 28.0, 40.0, 55.0, 72.0, 92.0, 115.0, 140.0)
    for i, (anchor, text) in enumerate(zip(anchors, texts)):
        if not (np.isfinite(anchor[0]) and np.isfinite(anchor[1])):
            continue
        label = ax.text(anchor[0], anchor[1], text, fontsize=fontsize, ha="center", va="center", zorder=4,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        label.set_in_layout(False)
        box = label.get_window_extent(renderer)
        half_w, half_h = box.width / 2 + 1.5, box.height / 2 + 1.5
        ax_x, ax_y = to_display([anchor])[0]
        preferred = None if directions is None else directions[i]
        order = angles if preferred is None or not np.isfinite(preferred) else sorted(
            angles, key=lambda a: abs(math.remainder(a - float(preferred), 2 * math.pi)))
        best: tuple[float, float, float, float] | None = None
        best_cover = math.inf
        best_centre = (ax_x, ax_y)
        for radius in radii:
            for angle in order:
                cx = ax_x + math.cos(angle) * (radius + half_w)
                cy = ax_y + math.sin(angle) * (radius + half_h)
                spot = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
                if spot[0] < inner[0] or spot[1] < inner[1] or spot[2] > inner[2] or spot[3] > inner[3]:
                    continue
                if any(_overlap(spot, other) > 0 for other in placed):
                    continue
                cover = int(np.count_nonzero((np.abs(dots[:, 0] - cx) < half_w + dot_radius)
                                             & (np.abs(dots[:, 1] - cy) < half_h + dot_radius)))
                if cover < best_cover:
                    best, best_cover, best_centre = spot, cover, (cx, cy)
                if cover == 0:
                    break
            if best is not None and best_cover == 0:
                break
        if best is None:
            label.remove()
            continue
        x, y = to_data([best_centre])[0]
        label.set_position((x, y))
        if math.hypot(best_centre[0] - ax_x, best_centre[1] - ax_y) > max(half_w, half_h) + 12:
            ax.plot([anchor[0], x], [anchor[1], y], color="#777777", lw=0.6, zorder=3)
        placed.append(best)
        written.append(i)
    return written


def task_directions(model_vectors: ArrayLike, normalized: ArrayLike, *, ridge: float = 1.0) -> np.ndarray:
    """Per known task, the vector t minimising ||y - V t||^2 + ridge ||t||^2 over the models
    measured on it (y: their normalised scores): where the task sits in the transfer space
    according to its own results. Tasks x dim; a row of NaN for a task measured on no model."""
    vectors = np.asarray(model_vectors, dtype=np.float64)
    normalized = np.asarray(normalized, dtype=np.float64)
    if normalized.shape[0] != vectors.shape[0]:
        raise ValueError(f"normalized: expected {vectors.shape[0]} rows (one per model), got {normalized.shape[0]}")
    out = np.full((normalized.shape[1], vectors.shape[1]), np.nan)
    for j in range(normalized.shape[1]):
        seen = ~np.isnan(normalized[:, j])
        if seen.any():
            v = vectors[seen]
            out[j] = np.linalg.solve(v.T @ v + ridge * np.eye(v.shape[1]), v.T @ normalized[seen, j])
    return out


def space_figure(model_vectors: ArrayLike, families: Sequence[str | None] | None = None, *,
                 task_vectors: ArrayLike | None = None, task_names: Sequence[str] | None = None,
                 model_names: Sequence[str] | None = None, max_points: int = 20_000, seed: int = 0,
                 title: str = "the transfer space") -> Figure:
    """Models on the first two principal axes of their vectors, coloured by family (and named, from
    ``model_names``, when at most :data:`MAX_NAMED_POINTS` are drawn); tasks as arrows."""
    vectors = np.asarray(model_vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise ValueError(f"model_vectors: expected at least 2 rows of a 2-D array, got shape {vectors.shape}")
    if not np.all(np.isfinite(vectors)):
        raise ValueError("model_vectors: contains NaN or inf")
    families = list(families) if families is not None else [None] * len(vectors)
    if len(families) != len(vectors):
        raise ValueError(f"families: expected {len(vectors)} entries, got {len(families)}")
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(vectors), max_points, replace=False)) if len(vectors) > max_points else \
        np.arange(len(vectors))
    if vectors.shape[1] < 2 or np.ptp(vectors[shown][:, 1:], axis=0).max(initial=0.0) == 0:
        return _strip_figure(vectors[shown, 0], [families[i] for i in shown], len(vectors), rng, title)
    centre = vectors[shown].mean(0)
    _, singular, axes = np.linalg.svd(vectors[shown] - centre, full_matrices=False)
    axes = axes[:2] if len(axes) >= 2 else np.vstack([axes, np.zeros_like(axes)])
    explained = singular[:2] ** 2 / max(float((singular**2).sum()), 1e-300)
    points = (vectors[shown] - centre) @ axes.T
    colours, legend = _family_colours([families[i] for i in shown])

    figure = new_figure(8.5, 6.0)
    ax = figure.add_subplot()
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=14 if len(shown) < 2000 else 3, alpha=0.85, linewidths=0,
               zorder=2)
    for name, colour in legend:
        ax.scatter([], [], c=colour, s=25, label=name, edgecolors="#999999" if colour == "#ffffff" else "none")
    tips = np.zeros((0, 2))
    names: list[str] = []
    if task_vectors is not None:
        tasks = np.asarray(task_vectors, dtype=np.float64)
        names = list(task_names) if task_names is not None else [f"task {j}" for j in range(len(tasks))]
        directions = tasks @ axes.T
        length = np.linalg.norm(directions, axis=1)
        reach = np.percentile(np.linalg.norm(points, axis=1), 90) if len(points) else 1.0
        scale = reach / np.nanmax(length) if np.any(length > 0) else 0.0
        tips = directions * scale
        for dx, dy in tips:
            if np.isfinite(dx) and np.isfinite(dy):
                ax.annotate("", xy=(dx, dy), xytext=(0, 0), annotation_clip=False,
                            arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.1})
        ax.plot([], [], color="black", marker=r"$\rightarrow$", linestyle="none", label="task (direction)")
    # Limits first (every dot and arrow tip, with room around them): labels are placed inside them.
    finite_tips = tips[np.all(np.isfinite(tips), axis=1)] if len(tips) else tips
    extent = np.vstack([points, finite_tips, np.zeros((1, 2))])
    low, high = extent.min(0), extent.max(0)
    pad = 0.12 * np.maximum(high - low, 1e-9)
    ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
    ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    ax.axhline(0, color="#dddddd", lw=0.8, zorder=0)
    ax.axvline(0, color="#dddddd", lw=0.8, zorder=0)
    ax.set_xlabel(f"axis 1 ({explained[0]:.0%} of the spread)")
    ax.set_ylabel(f"axis 2 ({explained[1]:.0%} of the spread)" if len(explained) > 1 else "axis 2")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.8, title="family",
              title_fontsize=8, borderaxespad=0.0)
    subtitle = f"{len(vectors):,} models" + (f", {len(shown):,} drawn" if len(shown) < len(vectors) else "")
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    # Tasks by arrow length (the longest say most), then the models when few enough to read.
    lengths = np.nan_to_num(np.linalg.norm(tips, axis=1), nan=-1.0) if len(tips) else np.zeros(0)
    task_order = [int(j) for j in np.argsort(-lengths, kind="stable") if lengths[j] >= 0][:MAX_TASK_LABELS]
    anchors = [tuple(tips[j]) for j in task_order]
    texts = [str(names[j]) for j in task_order]
    angles: list[float | None] = [math.atan2(tips[j][1], tips[j][0]) for j in task_order]
    name_models = model_names is not None and len(shown) <= MAX_NAMED_POINTS
    if name_models:
        assert model_names is not None
        model_names = list(model_names)
        if len(model_names) != len(vectors):
            raise ValueError(f"model_names: expected {len(vectors)} entries, got {len(model_names)}")
        anchors += [tuple(points[r]) for r in range(len(shown))]
        texts += [str(model_names[i]) for i in shown]
        angles += [None] * len(shown)
    # Dots are kept clear of labels where they are few enough for that to be possible.
    written = place_labels(ax, anchors, texts, directions=angles,
                           obstacles=[tuple(p) for p in points] if len(points) <= 2000 else ())
    missing_tasks = sum(1 for w in range(len(task_order)) if w not in written)
    missing_tasks += max(0, int(np.sum(lengths >= 0)) - len(task_order))
    missing_models = (len(shown) - sum(1 for w in written if w >= len(task_order))) if name_models else 0
    notes = []
    if missing_tasks:
        notes.append(f"{missing_tasks} task label(s) left out for room")
    if missing_models:
        notes.append(f"{missing_models} model label(s) left out for room")
    if notes:
        ax.set_title(f"{title}\n{subtitle}; {', '.join(notes)}", fontsize=11)
    return figure


def _strip_figure(prior: np.ndarray, families: list[str | None], n_models: int, rng: np.random.Generator,
                  title: str) -> Figure:
    """A one-dimensional space (the fit used no side information): the models' prior score,
    one row per family."""
    colours, legend = _family_colours(families)
    names = [f if f else "unknown" for f in families]
    order = [name for name, _ in legend if name != "other"]
    row_of = {name: i for i, name in enumerate(order)}
    rows = np.array([row_of.get(name, len(order)) for name in names], dtype=float)
    labels = order + (["other"] if len(legend) > len(order) else [])
    figure = new_figure(7.5, 1.5 + 0.45 * len(labels))
    ax = figure.add_subplot()
    ax.scatter(prior, rows + rng.uniform(-0.25, 0.25, len(rows)), c=colours, s=12, alpha=0.75, linewidths=0)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("the models' prior (their one coordinate; every task ranks along it)")
    ax.set_title(f"{title}\n{n_models:,} models; one dimension: this fit uses no side information", fontsize=11)
    return figure


def predicted_figure(predicted: ArrayLike, measured: ArrayLike, names: Sequence[str] | None = None, *,
                     task: str = "", annotate: int = 5,
                     xlabel: str = "predicted score, task held out (as fennec rank prints it)") -> Figure:
    """A task's predicted scores (x) against its measured ones (y), with the weighted Kendall
    tau, Kendall tau and top-1 regret of the prediction in the title."""
    from .evaluate import ranking_metrics

    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if predicted.shape != measured.shape or predicted.ndim != 1:
        raise ValueError(f"predicted and measured: expected two 1-D arrays of one length, got {predicted.shape} "
                         f"and {measured.shape}")
    seen = ~np.isnan(measured) & ~np.isnan(predicted)
    if seen.sum() < 2:
        raise ValueError(f"measured: task {task!r} has {int(seen.sum())} measured model(s); 2 are needed")
    metrics = ranking_metrics(predicted, measured)
    x, y = predicted[seen], measured[seen]
    figure = new_figure(6.5, 5.5)
    ax = figure.add_subplot()
    ax.scatter(x, y, s=18, alpha=0.8, color=PALETTE[0], linewidths=0)
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        line = np.linspace(x.min(), x.max(), 2)
        ax.plot(line, intercept + slope * line, color="#555555", lw=1, ls="--", label="least squares")
    top = np.argsort(-x, kind="stable")[:annotate]
    best = int(np.argmax(y))
    ax.scatter([x[best]], [y[best]], s=80, facecolors="none", edgecolors=PALETTE[3], label="best measured")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured score")
    ax.set_title(f"{task}: {int(seen.sum())} models\nweighted tau {metrics['wtau']:.3f}, Kendall tau "
                 f"{metrics['kendall']:.3f}, top-1 regret {metrics['regret']:.3g}", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    for values, setter in ((x, ax.set_xlim), (y, ax.set_ylim)):
        pad = 0.1 * max(float(np.ptp(values)), 1e-9)
        setter(float(values.min()) - pad, float(values.max()) + pad)
    if names is not None:
        labels = np.asarray(list(names), dtype=object)[seen]
        place_labels(ax, [(x[i], y[i]) for i in top], [str(labels[i]) for i in top], fontsize=7,
                     obstacles=list(zip(x, y)))
    return figure


def ranking_figure(ranking: Any, *, title: str | None = None) -> Figure:
    """The ranked models as horizontal bars (best on top) with +/- uncertainty, coloured by
    family; measured scores, when given, as diamonds."""
    data = ranking.to_dict() if hasattr(ranking, "to_dict") else dict(ranking)
    rows = data.get("rows", [])
    if not rows:
        raise ValueError("ranking: has no rows to draw")
    names = [str(r["model"]) for r in rows]
    scores = np.array([float(r["score"]) for r in rows])
    errors = np.array([float(r.get("uncertainty", 0.0)) for r in rows])
    colours, legend = _family_colours([r.get("family") for r in rows])
    figure = new_figure(7.5, 1.2 + 0.32 * len(rows))
    ax = figure.add_subplot()
    y = np.arange(len(rows))[::-1]
    measured = [float(r["observed"]) for r in rows if r.get("observed") is not None]
    low = float(min(np.min(scores - errors), *measured)) if measured else float(np.min(scores - errors))
    high = float(max(np.max(scores + errors), *measured)) if measured else float(np.max(scores + errors))
    pad = 0.08 * max(high - low, 1e-9)
    base = low - pad
    ax.barh(y, scores - base, left=base, xerr=errors, color=colours, alpha=0.85,
            error_kw={"ecolor": "#333333", "capsize": 3, "lw": 1})
    observed = [(yy, float(r["observed"])) for yy, r in zip(y, rows) if r.get("observed") is not None]
    if observed:
        ax.scatter([o for _, o in observed], [yy for yy, _ in observed], marker="D", color="black", s=25,
                   zorder=3, label="measured")
    ax.set_yticks(y, [f"{r['rank']}. {n}" for r, n in zip(rows, names)], fontsize=8)
    ax.set_xlim(base, high + pad)
    ax.set_xlabel("predicted score (+/- uncertainty)")
    from matplotlib.patches import Patch

    handles: list[Artist] = [Patch(color=colour, label=name) for name, colour in legend]
    handles += [h for h in ax.get_legend_handles_labels()[0]]  # the measured diamonds
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
    ax.set_title(title or f"ranked by {data.get('basis', '?')}", fontsize=11)
    return figure


Budget = int | str  # a number of models run per task (0: none), or "all"


def parse_budgets(text: str | Sequence[int | str]) -> list[Budget]:
    """Budgets as ``"0,1,3,5,all"`` (or a sequence): numbers of models >= 0 and ``"all"``, each once,
    in increasing order with ``"all"`` last."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    budgets: list[Budget] = []
    for item in items:
        if item == "all":
            value: Budget = "all"
        elif isinstance(item, str) and item.isdigit():
            value = int(item)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            value = item
        else:
            raise ValueError(f"budgets: expected numbers of models (0 or more) and 'all', got {item!r}")
        if value in budgets:
            raise ValueError(f"budgets: {value!r} is given twice")
        budgets.append(value)
    if not budgets:
        raise ValueError("budgets: give at least one, e.g. 0,1,3,5,all")
    return sorted(budgets, key=lambda b: (b == "all", b if isinstance(b, int) else 0))


def _budget_metric(data: Any, metric: str | None) -> str:
    """The metric the budget is spent on: the one given, else LogME where the data holds it (the
    plain baseline :func:`fennec.evaluate.evaluate` scores), else the first by name."""
    forward = getattr(data, "forward_scores", None) or {}
    if not forward:
        raise ValueError("budget: the data holds no forward-pass scores (a zoo's logme/parc... kinds, or "
                         "--forward-scores with --history)")
    if metric is not None:
        if metric not in forward:
            raise ValueError(f"metric: {metric!r} is not among the forward-pass scores ({sorted(forward)})")
        return metric
    return "logme" if "logme" in forward else sorted(forward)[0]


def _tau_mean_se(result: dict[str, Any], method: str) -> tuple[float, float, int]:
    """The mean weighted tau of ``method`` over the result's tasks, its standard error, the task count."""
    values = np.array([rows[method]["wtau"] for rows in result["tasks"].values() if method in rows], dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        raise ValueError(f"budget: the evaluation has no weighted tau for {method!r}")
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    return float(values.mean()), se, int(values.size)


def budget_curves(data: Any, budgets: str | Sequence[int | str] = (0, 1, 3, 5, "all"), *,
                  metric: str | None = None, seed: int = 0, exclude_related: bool = False,
                  results: Mapping[Budget, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mean weighted tau (and its standard error over tasks) against the budget of forward passes.

    For each budget, :func:`fennec.evaluate.evaluate` of ``data`` (``lodo``; budget 0 is no
    budget) gives three lines: ``fennec``; the metric alone (``<metric>_top<M>``: the metric on
    the M models fennec ran, the prior elsewhere; at budget 0 the prior, at ``"all"`` the metric
    on every model); and the prior (the mean score on the other tasks). ``results`` maps a budget
    to an evaluation already made (a budget's result also gives budget 0: its ``fennec_history``).
    Returns ``{"budgets", "x", "metric", "methods": {name: {"mean", "se"}}, "n_tasks"}``; ``x`` is
    each budget as a number of models (``"all"``: the data's model count).
    """
    from .evaluate import evaluate

    budgets = parse_budgets(budgets)
    name = _budget_metric(data, metric)
    given = dict(results or {})
    lines: dict[str, dict[str, list[float]]] = {m: {"mean": [], "se": []} for m in ("fennec", name, "prior")}
    n_tasks: list[int] = []
    for budget in budgets:
        result = given.get(budget)
        if result is None:
            result = evaluate(data, "lodo", seed=seed, exclude_related=exclude_related,
                              budget=None if budget == 0 else budget, metrics=None if metric is None else [metric])
        spent = result.get("budget") is not None
        methods = {"fennec": "fennec_history" if budget == 0 and spent else "fennec",
                   name: "prior" if budget == 0 else name if budget == "all" else f"{name}_top{budget}",
                   "prior": "prior"}
        for line, method in methods.items():
            mean, se, count = _tau_mean_se(result, method)
            lines[line]["mean"].append(mean)
            lines[line]["se"].append(se)
        n_tasks.append(count)
    x = [float(len(data.models)) if b == "all" else float(b) for b in budgets]
    return {"budgets": budgets, "x": x, "metric": name, "methods": lines, "n_tasks": n_tasks}


def budget_figure(curves: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """:func:`budget_curves` drawn: one line per method with +/- one standard error, named at its end."""
    x = np.asarray(curves["x"], dtype=float)
    budgets = list(curves["budgets"])
    figure = new_figure(7.0, 4.6)
    ax = figure.add_subplot()
    ends: list[tuple[float, float]] = []
    names: list[str] = []
    for method, line in curves["methods"].items():
        mean, se = np.asarray(line["mean"], dtype=float), np.asarray(line["se"], dtype=float)
        label = f"{method} alone" if method == curves["metric"] else method
        ax.errorbar(x, mean, yerr=se, color=method_colour(method), marker="o", ms=4, lw=1.6, capsize=3,
                    label=label, ls="--" if method == "prior" else "-")
        ends.append((float(x[-1]), float(mean[-1])))
        names.append(label)
    ax.set_xticks(x, [f"all ({int(v)})" if b == "all" else str(b) for b, v in zip(budgets, x)])
    ax.set_xlabel("forward passes per task (models run over its images)")
    ax.set_ylabel("mean weighted Kendall tau (+/- s.e. over tasks)")
    low = min(min(np.subtract(l["mean"], l["se"])) for l in curves["methods"].values())
    high = max(max(np.add(l["mean"], l["se"])) for l in curves["methods"].values())
    pad = 0.08 * max(high - low, 1e-3)
    span = max(float(x[-1] - x[0]), 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlim(float(x[0]) - 0.05 * span, float(x[-1]) + 0.35 * span)  # room for the names at the right
    ax.grid(alpha=0.3)
    ax.set_title(title or f"weighted tau against the budget ({curves['metric']}, {max(curves['n_tasks'])} tasks)",
                 fontsize=11)
    place_labels(ax, ends, names, directions=[0.0] * len(names), fontsize=8,
                 obstacles=[(float(v), float(m)) for line in curves["methods"].values()
                            for v, m in zip(x, line["mean"])])
    return figure


def held_out_scores(data: Any, target: int, seed: int = 0) -> np.ndarray:
    """fennec's prediction for task ``target`` of an :class:`~fennec.evaluate.EvalData` from a fit on
    the other tasks (the ``lodo`` protocol), on the history's scale: the score ``fennec rank`` prints."""
    from .evaluate import fit_on_tasks, place_held_out

    train = np.array([j for j in range(len(data.tasks)) if j != target])
    space = fit_on_tasks(data, train, seed)
    placed = place_held_out(data, space, target, train)
    prediction = space.predict(placed.features, placed.distances)
    if not space.slope > 0:  # a degenerate calibration would flatten or flip the order the metrics score
        return np.asarray(prediction, dtype=np.float64)
    return np.asarray(space.calibrated(prediction), dtype=np.float64)


def leave_one_task_out(scores: ArrayLike, task: int, *, model_features: np.ndarray | None = None,
                       task_features: ArrayLike | None = None, task_distances: ArrayLike | None = None,
                       seed: int = 0) -> np.ndarray:
    """Predicted scores of every model on task ``task`` from a transfer space fitted on the
    other tasks (``task_distances``: tasks x tasks, for the neighbour-task term), as the
    ``lodo`` protocol of :func:`fennec.evaluate.evaluate` predicts it."""
    from .evaluate import EvalData, held_out_prediction

    scores = np.asarray(scores, dtype=np.float64)
    task = integer(task, "task", low=0, high=scores.shape[1] - 1)
    if scores.shape[1] < 3:
        raise ValueError(f"scores: a held-out prediction needs at least 3 tasks, got {scores.shape[1]}")
    data = EvalData(scores, [str(i) for i in range(scores.shape[0])], [str(j) for j in range(scores.shape[1])],
                    model_features=model_features,
                    task_features=None if task_features is None else np.asarray(task_features),
                    task_distances=None if task_distances is None else np.asarray(task_distances, dtype=float))
    return held_out_prediction(data, task, seed)


# -- from a zoo -------------------------------------------------------------------


def zoo_space_figure(zoo: Zoo, *, max_points: int = 20_000, seed: int = 0) -> Figure:
    """The transfer space of a fitted zoo, with its known tasks."""
    state, meta = zoo.read_fitted()
    ids = [str(x) for x in state["model_ids"]]
    family = {row["id"]: row.get("family") or row.get("architecture") for row in zoo.models()}
    tasks = task_directions(state["model_vectors"], state["normalized"])
    return space_figure(state["model_vectors"], [family.get(m) for m in ids], task_vectors=tasks,
                        task_names=list(meta.get("tasks", [])), model_names=ids, max_points=max_points, seed=seed,
                        title=f"the transfer space of {zoo.path.name} (fitted version {zoo.fitted_version()})")


def zoo_predicted_figure(zoo: Zoo, task: str | None = None, *, seed: int = 0) -> Figure:
    """Predicted (task held out) against measured scores for one of the zoo's tasks
    (default: the task with the most results), from the side information, task
    descriptors and neighbour tasks that ``fennec.fit`` uses."""
    from .evaluate import load_zoo_eval_data

    data = load_zoo_eval_data(zoo)
    if len(data.tasks) < 3:
        raise ValueError(f"{zoo.path}: a held-out prediction needs results on at least 3 tasks")
    if task is None:
        task = data.tasks[int(np.argmax((~np.isnan(data.scores)).sum(0)))]
    if task not in data.tasks:
        raise ValueError(f"task: {task!r} has no results in the zoo; tasks are {list(data.tasks)[:20]}")
    j = data.tasks.index(task)
    return predicted_figure(held_out_scores(data, j, seed), data.scores[:, j], data.models, task=task)


def zoo_ranking_figure(zoo: Zoo, task: Mapping[str, Any] | None = None, *, k: int = 20, where: Any = None,
                       observed: Any = None) -> Figure:
    """A ranking of the zoo's models (as :func:`fennec.rank`) drawn with its uncertainty."""
    from .ranking import rank

    ranking = rank(zoo, task, k=k, where=where, observed=observed)
    return ranking_figure(ranking, title=f"top {len(ranking)} of {zoo.path.name}, ranked by {ranking.basis}")


def zoo_budget_figure(zoo: Zoo, budgets: str | Sequence[int | str] = (0, 1, 3, 5, "all"), *,
                      metric: str | None = None, seed: int = 0) -> Figure:
    """:func:`budget_figure` of the zoo's evaluation (its stored forward-pass kinds are the metrics)."""
    from .evaluate import load_zoo_eval_data

    data = load_zoo_eval_data(zoo)
    curves = budget_curves(data, budgets, metric=metric, seed=seed)
    return budget_figure(curves, title=f"{zoo.path.name}: weighted tau against the budget of forward passes "
                                       f"({curves['metric']}, {max(curves['n_tasks'])} tasks)")
