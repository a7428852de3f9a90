"""The proxy path: images -> one pretrained model -> features -> a task descriptor.

Needs the ``proxy`` extra (onnxruntime, onnx, pillow, tqdm); the torch backend
and the MobileNetV2 weights need the ``torch`` extra. Both are imported only
when used.
"""

from .backends import OnnxBackend, TensorRTBackend, TorchBackend, pool_output, select_output
from .cache import FeatureCache, pixel_sha256
from .descriptor import SCALARS, describe, descriptor_layout
from .extractor import Proxy
from .images import IMAGE_EXTENSIONS, ImageSet, load_images, read_image
from .packaged import (
    DEFAULT_PROXY,
    PROXIES,
    default_proxy,
    dinov2_small_proxy,
    mobilenet_v2_module,
    mobilenet_v2_onnx,
    mobilenet_v2_proxy,
    packaged_file,
    proxy_cache_dir,
)
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, as_rgb
from .task import task_from_images

__all__ = [
    "DEFAULT_PROXY", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "PROXIES", "SCALARS",
    "FeatureCache", "ImageSet", "OnnxBackend", "Preprocess", "Proxy", "TensorRTBackend", "TorchBackend",
    "as_rgb", "default_proxy", "describe", "descriptor_layout", "dinov2_small_proxy", "load_images",
    "mobilenet_v2_module", "mobilenet_v2_onnx", "mobilenet_v2_proxy", "packaged_file", "pixel_sha256",
    "pool_output", "proxy_cache_dir", "read_image", "select_output", "task_from_images",
]
