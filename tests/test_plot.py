"""Pictures (fennec.plot), the HTML evaluation report, and their commands."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import fennec  # noqa: E402
from fennec import plot  # noqa: E402
from fennec.evaluate import EvalData, evaluate, ranking_metrics  # noqa: E402
from fennec.benchmarks.synthetic import synthetic_zoo  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "zoo"
    synthetic_zoo(path, n_models=400, n_tasks=6, results_per_model=6)
    return path


def decoded(data: bytes) -> np.ndarray:
    assert data.startswith(PNG_SIGNATURE)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_drawn(pixels: np.ndarray, colours: int = 20):
    """Not blank: many distinct colours and a good share of non-white pixels."""
    flat = pixels.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    assert len(np.unique(packed)) >= colours
    assert np.mean(np.any(flat < 235, axis=1)) > 0.03


def test_space_figure_axes_follow_pca(zoo_path):
    decomposition = pytest.importorskip("sklearn.decomposition")
    with fennec.Zoo.open(zoo_path) as zoo:
        state, _ = zoo.read_fitted()
        figure = plot.zoo_space_figure(zoo)
    ax = figure.axes[0]
    ratio = decomposition.PCA(2).fit(np.asarray(state["model_vectors"], dtype=np.float64)).explained_variance_ratio_
    assert ax.get_xlabel() == f"axis 1 ({ratio[0]:.0%} of the spread)"
    assert ax.get_ylabel() == f"axis 2 ({ratio[1]:.0%} of the spread)"
    points = ax.collections[0].get_offsets()
    assert len(points) == 400
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) >= {"resnet", "vit", "task (direction)"}
    assert len([t for t in ax.texts if t.get_text().startswith("task")]) == 6
    assert_drawn(decoded(plot.figure_png(figure)))


def test_space_figure_samples_large_zoos():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 4))
    figure = plot.space_figure(vectors, ["a"] * 5000, max_points=1000)
    assert len(figure.axes[0].collections[0].get_offsets()) == 1000
    assert "5,000 models, 1,000 drawn" in figure.axes[0].get_title()
    with pytest.raises(ValueError, match="NaN"):
        plot.space_figure(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="families"):
        plot.space_figure(vectors, ["a"])
    one_dimension = plot.space_figure(vectors[:, :1], ["a", "b"] * 2500)
    assert "one dimension" in one_dimension.axes[0].get_title()


def test_task_directions_are_least_squares():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(200, 3))
    truth = rng.normal(size=(3, 4))
    normalized = vectors @ truth
    normalized[rng.random(normalized.shape) < 0.3] = np.nan
    found = plot.task_directions(vectors, normalized, ridge=1e-9)
    for j in range(4):
        seen = ~np.isnan(normalized[:, j])
        expected = np.linalg.lstsq(vectors[seen], normalized[seen, j], rcond=None)[0]
        assert np.allclose(found[j], expected, atol=1e-6)
        assert np.allclose(found[j], truth[:, j], atol=1e-6)


def test_predicted_figure_reports_the_held_out_metrics():
    rng = np.random.default_rng(3)
    quality = rng.normal(size=40)
    scores = 70 + 4 * quality[:, None] + rng.normal(0, 1, (40, 6))
    data = EvalData(scores, [f"m{i}" for i in range(40)], [f"t{j}" for j in range(6)])
    prediction = plot.leave_one_task_out(scores, 2)
    # Independent route: the evaluation protocol's own held-out prediction of the same task.
    lodo = evaluate(data, "lodo")["tasks"]["t2"]["fennec"]
    assert ranking_metrics(prediction, scores[:, 2])["wtau"] == pytest.approx(lodo["wtau"])
    figure = plot.predicted_figure(prediction, scores[:, 2], data.models, task="t2")
    assert f"weighted tau {lodo['wtau']:.3f}" in figure.axes[0].get_title()
    assert np.allclose(figure.axes[0].collections[0].get_offsets(), np.column_stack([prediction, scores[:, 2]]))
    with pytest.raises(ValueError, match="2 are needed"):
        plot.predicted_figure(prediction, np.full(40, np.nan), task="empty")


def test_ranking_figure_bars_are_the_ranking(zoo_path):
    with fennec.Zoo.open(zoo_path) as zoo:
        ranking = fennec.rank(zoo, {"n_classes": 10, "n_train": 2000}, k=12)
        figure = plot.zoo_ranking_figure(zoo, {"n_classes": 10, "n_train": 2000}, k=12)
    ax = figure.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 12
    ends = sorted(((b.get_y(), b.get_x() + b.get_width()) for b in bars), reverse=True)  # top bar first
    assert np.allclose([end for _, end in ends], [r["score"] for r in ranking.rows])
    labels = [t.get_text() for _, t in sorted(zip(ax.get_yticks(), ax.get_yticklabels()), key=lambda x: -x[0])]
    assert labels == [f"{r['rank']}. {r['model']}" for r in ranking.rows]
    from matplotlib.container import BarContainer

    bar_container = next(c for c in ax.containers if isinstance(c, BarContainer))
    errors = bar_container.errorbar.lines[2][0].get_segments()
    widths = sorted(((seg[0][1], (seg[1][0] - seg[0][0]) / 2) for seg in errors), reverse=True)
    assert np.allclose([w for _, w in widths], [r["uncertainty"] for r in ranking.rows])
    with pytest.raises(ValueError, match="no rows"):
        plot.ranking_figure({"rows": []})


def test_save_png_writes_whole_files_and_names_a_missing_folder(tmp_path):
    figure = plot.new_figure(2.0, 1.5)
    figure.add_subplot().plot([0, 1], [1, 0])
    width, height = plot.save_png(figure, tmp_path / "a.png", dpi=50)
    assert decoded((tmp_path / "a.png").read_bytes()).shape[:2] == (height, width) == (75, 100)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left
    with pytest.raises(ValueError, match="output: the folder .* does not exist"):
        plot.save_png(figure, tmp_path / "missing" / "a.png")


def test_plot_command_writes_pngs(zoo_path, tmp_path):
    from click.testing import CliRunner

    from fennec.cli import cli

    for kind, extra in (("space", []), ("predicted", ["--task", "task003"]),
                        ("ranking", ["--task-feature", "n_classes=10", "--task-feature", "n_train=2000",
                                     "--where", "family=vit,swin", "--k", "8"])):
        out = tmp_path / f"{kind}.png"
        result = CliRunner().invoke(cli, ["plot", "--zoo", str(zoo_path), "--kind", kind, "-o", str(out), "--json",
                                          *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output + result.stderr
        printed = json.loads(result.output)
        pixels = decoded(out.read_bytes())
        assert (printed["path"], printed["kind"]) == (str(out), kind)
        assert pixels.shape[:2] == (printed["height"], printed["width"])
        assert_drawn(pixels)
    bad = CliRunner().invoke(cli, ["plot", "--zoo", str(zoo_path), "--kind", "predicted", "--task", "nope",
                                   "-o", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and "'nope' has no results" in bad.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """An evaluation of 24 models on 5 tasks, its data and its report page."""
    from fennec.report import write_eval_report

    rng = np.random.default_rng(4)
    quality = rng.normal(size=24)
    size = rng.uniform(6, 9, 24)
    task_size = rng.uniform(3, 5, 5)
    scores = 70 + 4 * quality[:, None] + 2 * np.outer(size - 7.5, task_size - 4) + rng.normal(0, 0.5, (24, 5))
    scores[rng.random(scores.shape) < 0.15] = np.nan
    data = EvalData(scores, [f"model{i}" for i in range(24)], [f"task{j}" for j in range(5)],
                    model_features=size[:, None], model_types=["cnn" if i % 3 else "vit" for i in range(24)],
                    task_features=task_size[:, None])
    result = evaluate(data, "lodo")
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_eval_report(path, result, data)
    return data, result, path


def test_report_is_one_self_contained_page(report):
    data, result, path = report
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for method, metrics in result["mean"].items():
        assert f"<td>{method}</td>" in page
        assert f"{metrics['wtau']:.3f}" in page
    gap = result["paired"]["prior"]
    assert f"<td>{gap['diff']:+.3f} &plusmn; {gap['se']:.3f} ({gap['wins']}/{gap['losses']})</td>" in page
    for task in data.tasks:
        assert f"<td>{task}</td>" in page
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 4  # metrics, per-task heat map, transfer space, predictions
    import base64

    for chunk in images:
        assert_drawn(decoded(base64.b64decode(chunk.split('"', 1)[0])))
    assert "http://" not in page and "https://" not in page and "<script" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    path = report[2]
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1100,1800",
                    path.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = decoded(shot.read_bytes())
    assert pixels.shape[:2] == (1800, 1100)
    assert_drawn(pixels, colours=200)
    # The pictures are drawn (blue bars, red/blue heat map), not just text.
    blue = np.all(np.abs(pixels.astype(int) - [31, 119, 180]) < 12, axis=2)
    assert blue.sum() > 2000


def test_zoo_predicted_figure_is_the_lodo_prediction_with_descriptors(clustered_zoo):
    """On a zoo with task descriptors the picture shows the prediction `fennec eval --zoo` scores."""
    from fennec.evaluate import load_zoo_eval_data

    zoo, _, _, _ = clustered_zoo(np.random.default_rng(5), n_models=12, clusters=3, per_cluster=3, dims=8)
    held_out = evaluate(load_zoo_eval_data(zoo), "lodo")["tasks"]["t4"]
    lodo = held_out["fennec"]["wtau"]
    figure = plot.zoo_predicted_figure(zoo, "t4")
    assert f"weighted tau {lodo:.3f}" in figure.axes[0].get_title()
    assert lodo > held_out["prior"]["wtau"] + 0.3  # its cluster's order, which the prior alone does not give


# -- legible pictures: labels inside the axes and apart, one colour per family, every task shown ----------


@pytest.fixture(scope="module")
def demo_zoo(tmp_path_factory):
    """The zoo that ships in the package (10 real models x 13 tasks), fitted."""
    from fennec.demozoo.embedded import build_embedded_zoo

    zoo = build_embedded_zoo(tmp_path_factory.mktemp("demo") / "zoo")
    yield zoo
    zoo.close()


def label_extents(figure):
    """The axes and the window extents of its text labels, after a draw."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    texts = [t for t in ax.texts if t.get_text() and t.get_visible()]
    return ax.get_window_extent(renderer), {t.get_text(): t.get_window_extent(renderer) for t in texts}


def assert_inside_and_apart(frame, extents):
    for name, box in extents.items():
        assert frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5, (name, box, frame)
        assert frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5, (name, box, frame)
    boxes = list(extents.items())
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            shared_x = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            shared_y = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert shared_x <= 0 or shared_y <= 0, f"{a!r} and {b!r} overlap"


def test_space_figure_names_every_task_and_model_inside_the_axes_apart(demo_zoo):
    figure = plot.zoo_space_figure(demo_zoo)
    frame, extents = label_extents(figure)
    models = [row["id"] for row in demo_zoo.models()]
    tasks = [row["id"] for row in demo_zoo.tasks()]
    assert set(extents) == set(models) | set(tasks)  # 10 models: few enough to name
    assert_inside_and_apart(frame, extents)
    title = figure.axes[0].title.get_window_extent(figure.canvas.get_renderer())
    assert all(box.y1 <= title.y0 for box in extents.values())  # none runs into the title
    # the written PNG is the figure measured here (the layout no longer moves)
    assert decoded(plot.figure_png(figure)).shape[0] > 0
    again = label_extents(figure)[1]
    assert {k: np.round(v.bounds, 3).tolist() for k, v in again.items()} == \
        {k: np.round(v.bounds, 3).tolist() for k, v in extents.items()}


def test_space_figure_leaves_out_labels_it_has_no_room_for_and_says_so():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(25, 4))
    tasks = rng.normal(size=(60, 4))
    names = [f"a_rather_long_task_name_{j:02d}" for j in range(60)]
    figure = plot.space_figure(vectors, ["resnet"] * 25, task_vectors=tasks, task_names=names,
                               model_names=[f"model_{i}" for i in range(25)])
    frame, extents = label_extents(figure)
    assert_inside_and_apart(frame, extents)
    shown_tasks = [n for n in extents if n.startswith("a_rather")]
    assert len(shown_tasks) <= plot.MAX_TASK_LABELS
    assert "left out for room" in figure.axes[0].get_title()


def test_predicted_figure_labels_inside_the_axes_apart(demo_zoo):
    figure = plot.zoo_predicted_figure(demo_zoo, "fashion10")
    frame, extents = label_extents(figure)
    assert len(extents) == 5
    assert_inside_and_apart(frame, extents)
    assert "as fennec rank prints it" in figure.axes[0].get_xlabel()


def test_a_family_has_one_colour_in_every_picture():
    from matplotlib.colors import to_hex

    vectors = np.random.default_rng(1).normal(size=(8, 3))
    families = ["resnet"] * 5 + ["vit"] * 2 + ["my_family"]
    space = plot.space_figure(vectors, families)
    dots = space.axes[0].collections[0].get_facecolors()
    space_colour = {family: to_hex(dots[i], keep_alpha=False) for i, family in enumerate(families)}
    rows = [{"rank": 1, "model": "a", "score": 2.0, "uncertainty": 0.1, "family": "vit"},
            {"rank": 2, "model": "b", "score": 1.0, "uncertainty": 0.1, "family": "my_family"}]
    bars = plot.ranking_figure({"rows": rows, "basis": "test"}).axes[0].patches
    ranking_colour = {row["family"]: to_hex(bar.get_facecolor(), keep_alpha=False) for row, bar in zip(rows, bars)}
    assert ranking_colour == {family: space_colour[family] for family in ranking_colour}
    assert len(set(space_colour.values())) == 3
    assert space_colour["vit"] == plot.family_colour("vit") == plot.family_colour("ViT")


def test_report_grid_shows_every_task_in_the_units_rank_prints():
    from fennec.report import TASK_PANELS, _prediction_grid, eval_report_html

    rng = np.random.default_rng(2)
    n_models, n_tasks = 8, TASK_PANELS + 2
    quality = rng.normal(size=n_models)
    scores = 70 + 5 * quality[:, None] + rng.normal(0, 1, (n_models, n_tasks))
    data = EvalData(scores, [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)],
                    model_features=quality[:, None] + rng.normal(0, 0.3, (n_models, 1)))
    page = eval_report_html(evaluate(data, "lodo"), data)
    half = (n_tasks + 1) // 2  # two pictures of about the same size
    assert f"tasks 1 to {half} of {n_tasks}" in page and f"tasks {half + 1} to {n_tasks} of {n_tasks}" in page
    figure = _prediction_grid(data, list(range(3)), 0)
    for j, ax in enumerate(figure.axes[:3]):
        x = ax.collections[0].get_offsets()[:, 0]
        np.testing.assert_allclose(x, plot.held_out_scores(data, j, 0), rtol=1e-9)
        assert abs(np.mean(x) - np.mean(scores[:, j])) < 5  # accuracy-like units, not normalised ones
    assert "as fennec rank prints it" in figure.get_supxlabel()


def _forward_data(n_models=12, n_tasks=6, seed=0):
    """True scores and a 'logme' metric that follows them with noise."""
    rng = np.random.default_rng(seed)
    truth = 70 + 3 * rng.standard_normal(n_models)[:, None] + 3 * rng.standard_normal((n_models, n_tasks))
    metric = truth + rng.normal(0, 1.0, truth.shape)
    return EvalData(truth, [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)],
                    forward_scores={"logme": metric, "noise": rng.standard_normal(truth.shape)})


def test_budget_curves_give_one_line_per_method_over_the_budgets():
    data = _forward_data()
    curves = plot.budget_curves(data, "0,3,all")
    assert curves["budgets"] == [0, 3, "all"] and curves["x"] == [0.0, 3.0, 12.0]
    assert curves["metric"] == "logme" and set(curves["methods"]) == {"fennec", "logme", "prior"}
    for line in curves["methods"].values():
        assert len(line["mean"]) == len(line["se"]) == 3
        assert np.all(np.isfinite(line["mean"])) and np.all(np.isfinite(line["se"])) and min(line["se"]) > 0
    prior, alone = curves["methods"]["prior"]["mean"], curves["methods"]["logme"]["mean"]
    assert np.allclose(prior, prior[0]) and alone[0] == prior[0]  # nothing run: the metric alone is the prior
    full = evaluate(data, "lodo", budget="all")
    assert alone[-1] == pytest.approx(full["mean"]["logme"]["wtau"])
    assert curves["methods"]["fennec"]["mean"][-1] == pytest.approx(full["mean"]["fennec"]["wtau"])

    figure = plot.budget_figure(curves)
    lines = {c.get_label(): c for c in figure.axes[0].containers}
    assert set(lines) == {"fennec", "logme alone", "prior"}
    for name, container in lines.items():
        x, y = container.lines[0].get_data()
        assert list(x) == curves["x"]
        assert np.allclose(y, curves["methods"]["logme" if name == "logme alone" else name]["mean"])
    assert container.lines[0].get_color() == plot.method_colour("prior")
    assert_drawn(decoded(plot.figure_png(figure)))
    with pytest.raises(ValueError, match="forward-pass scores"):
        plot.budget_curves(EvalData(data.scores, data.models, data.tasks), "0,3")
    with pytest.raises(ValueError, match="metric"):
        plot.budget_curves(data, "0,3", metric="parc")
    for bad in ("", "0,0", "-1", "three", "1,2.5"):
        with pytest.raises(ValueError, match="budgets"):
            plot.parse_budgets(bad)
    assert plot.parse_budgets("all,5,0") == [0, 5, "all"]


def test_a_report_of_an_evaluation_with_a_budget_draws_tau_against_it(tmp_path, report):
    from fennec.report import write_eval_report

    data = _forward_data()
    result = evaluate(data, "lodo", budget=3)
    write_eval_report(tmp_path / "budget.html", result, data)
    page = (tmp_path / "budget.html").read_text(encoding="utf-8")
    assert "weighted tau against the budget" in page and "<code>logme</code>" in page
    assert len(page.split('src="data:image/png;base64,')) - 1 == 5  # the four, and the budget's
    assert "against the budget" not in report[2].read_text(encoding="utf-8")  # no budget: no picture of it


def test_plot_budget_command_draws_a_zoos_forward_kinds(tmp_path, zoo_path):
    from click.testing import CliRunner

    from fennec.cli import cli
    from fennec.history import History

    data = _forward_data()
    with fennec.Zoo.create(tmp_path / "zoo") as zoo:
        zoo.add_models([{"id": m} for m in data.models])
        zoo.add_tasks([{"id": t} for t in data.tasks])
        zoo.add_history(History.from_matrix(data.models, data.tasks, data.scores, kind="finetune"))
        zoo.add_history(History.from_matrix(data.models, data.tasks, data.forward_scores["logme"], kind="logme"))
        fennec.fit(zoo)
    out = tmp_path / "budget.png"
    result = CliRunner().invoke(cli, ["plot", "--zoo", str(tmp_path / "zoo"), "--kind", "budget", "--budgets",
                                      "0,2,all", "--metric", "logme", "-o", str(out), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.output)["kind"] == "budget"
    assert_drawn(decoded(out.read_bytes()))
    for args, message in ((["--kind", "space", "--metric", "logme"], "for --kind budget"),
                          (["--kind", "budget", "--budgets", "0,x"], "budgets")):
        bad = CliRunner().invoke(cli, ["plot", "--zoo", str(tmp_path / "zoo"), *args, "-o", str(tmp_path / "x.png")])
        assert bad.exit_code == 2 and message in bad.stderr, bad.output + bad.stderr
    none = CliRunner().invoke(cli, ["plot", "--zoo", str(zoo_path), "--kind", "budget", "-o", str(tmp_path / "x.png")])
    assert none.exit_code == 1 and "no forward-pass scores" in none.stderr, none.output + none.stderr
