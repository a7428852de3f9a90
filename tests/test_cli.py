"""The fennec command, run as a user would."""

from __future__ import annotations

import json
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


def test_demo_ranks_and_matches_numpy():
    out = fennec("demo", "--models", "20000", "--dim", "16", "--k", "5", "--repeat", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["matches_numpy"] is True
    assert [row["rank"] for row in result["top"]] == [1, 2, 3, 4, 5]
    scores = [row["score"] for row in result["top"]]
    assert scores == sorted(scores, reverse=True)


def test_demo_bad_argument_is_a_clear_error():
    out = fennec("demo", "--models", "100", "--k", "0")
    assert out.returncode == 2
    assert "k must be >= 1" in out.stderr


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
    assert json.loads(run("zoo", "add-history", small_zoo, "--csv", csv, "--json").output) == {"added": 2}
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
