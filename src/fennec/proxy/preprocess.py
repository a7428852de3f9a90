"""Per-model image preprocessing: any image -> RGB -> resized -> normalised float32 batch."""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from .._checks import integer, real
from ._optional import require

__all__ = ["Preprocess", "as_rgb", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESIZE = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _pil() -> ModuleType:
    return require("PIL.Image", "image preprocessing")


def _array_to_rgb(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise TypeError(
            f"{where}: image arrays must be uint8 (0-255), got dtype {array.dtype}; "
            "convert with np.clip(a, 0, 255).astype(np.uint8)"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        rgb = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        rgb = array[:, :, :3]  # RGBA: alpha is dropped, as Pillow's convert("RGB") does
    else:
        raise ValueError(
            f"{where}: an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}"
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{where}: empty image of shape {array.shape}")
    return np.ascontiguousarray(rgb)


def _pil_to_rgb(image: Any, where: str) -> np.ndarray:
    Image = _pil()
    image.load()
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in ("I", "F") or mode.startswith("I;16"):
        # 16-bit and float greyscale: scale 16-bit ranges down to 8 bits, clip the rest
        values = np.asarray(image, dtype=np.float64)
        if mode != "F" and values.size and values.max() > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return _array_to_rgb(grey, where)
    if mode in ("P", "PA") or "transparency" in image.info:
        # palette transparency must go through RGBA (Pillow warns on a direct RGB conversion)
        image = image.convert("RGBA")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{where}: empty image")
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


def as_rgb(image: Any, where: str = "image") -> np.ndarray:
    """An image (PIL.Image of any mode, or a uint8 array HxW / HxWx1 / HxWx3 / HxWx4) as HxWx3 uint8.

    Grey is replicated to three channels; alpha is dropped; palette, CMYK, YCbCr and
    16-bit images go through Pillow's conversions.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, where)
    Image = _pil()
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, where)
    raise TypeError(f"{where}: expected a PIL.Image or a uint8 numpy array, got {type(image).__name__}")


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        side = integer(value, name, low=1)
        return side, side
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}") from None
    return integer(h, f"{name}[0] (height)", low=1), integer(w, f"{name}[1] (width)", low=1)


def _triple(value: Any, name: str, positive: bool) -> tuple[float, float, float]:
    try:
        values = list(value)
    except TypeError:
        raise TypeError(f"{name} must be three numbers (one per RGB channel), got {value!r}") from None
    if len(values) != 3:
        raise ValueError(f"{name} must be three finite numbers, got {value!r}")
    first, second, third = (real(v, f"{name}[{i}]") for i, v in enumerate(values))
    if positive and min(first, second, third) <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return first, second, third


class Preprocess:
    """How one proxy model wants its input.

    Each image becomes RGB (grey replicated, alpha dropped), is resized, then
    ``(pixel * scale - mean) / std`` per channel, in ``channels`` order and ``layout``.

    Parameters
    ----------
    size : int or (height, width)
    mean, std : three floats, in RGB order (reordered with the channels for "BGR")
    channels : "RGB" or "BGR"
    scale : multiplies the 0-255 pixel values before mean/std
    resize : Pillow filter: "bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"
    center_crop : None, or a fraction in (0, 1]. None stretches the image to ``size``.
        A fraction f scales the image, keeping its aspect ratio, until it covers
        ``size / f``, then takes the central ``size`` crop (ImageNet evaluation uses
        0.875, i.e. resize to 256 and crop 224).
    layout : "NCHW" or "NHWC"
    """

    def __init__(self, size: int | tuple[int, int] = (224, 224), mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, channels: str = "RGB", scale: float = 1 / 255,
                 resize: str = "bilinear", center_crop: float | None = None, layout: str = "NCHW") -> None:
        self.size = _pair(size, "size")
        self.mean = _triple(mean, "mean", positive=False)
        self.std = _triple(std, "std", positive=True)
        if channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {channels!r}")
        self.channels = channels
        scale = real(scale, "scale")
        if scale <= 0:
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.scale = scale
        if resize not in _RESIZE:
            raise ValueError(f"resize must be one of {', '.join(_RESIZE)}, got {resize!r}")
        self.resize = resize
        if center_crop is not None:
            center_crop = real(center_crop, "center_crop")
            if not 0 < center_crop <= 1:
                raise ValueError(f"center_crop must be None or a fraction in (0, 1], got {center_crop!r}")
        self.center_crop = center_crop
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        self.layout = layout
        order = slice(None, None, -1) if channels == "BGR" else slice(None)
        std_array = np.asarray(self.std, dtype=np.float64)[order]
        self._gain = (self.scale / std_array).astype(np.float32)
        self._offset = (-np.asarray(self.mean, dtype=np.float64)[order] / std_array).astype(np.float32)

    def params(self) -> dict[str, Any]:
        """Every setting, JSON-serialisable (part of the feature cache key)."""
        return {
            "size": list(self.size), "mean": list(self.mean), "std": list(self.std),
            "channels": self.channels, "scale": self.scale, "resize": self.resize,
            "center_crop": self.center_crop, "layout": self.layout,
        }

    def __repr__(self) -> str:
        return "Preprocess(" + ", ".join(f"{k}={v!r}" for k, v in self.params().items()) + ")"

    def resize_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 image resized (and cropped) to ``size``."""
        Image = _pil()
        height, width = self.size
        h, w = rgb.shape[:2]
        if self.center_crop is None:
            if (h, w) == (height, width):
                return rgb
            resample = getattr(Image.Resampling, self.resize.upper())
            return np.asarray(Image.fromarray(rgb).resize((width, height), resample))
        factor = max(height / self.center_crop / h, width / self.center_crop / w)
        new_w, new_h = max(width, round(w * factor)), max(height, round(h * factor))
        if (new_h, new_w) != (h, w):
            resample = getattr(Image.Resampling, self.resize.upper())
            rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), resample))
        top, left = round((new_h - height) / 2), round((new_w - width) / 2)
        return rgb[top:top + height, left:left + width]

    def from_rgb(self, rgb_images: Sequence[np.ndarray]) -> np.ndarray:
        """Already-RGB uint8 images -> the normalised float32 batch."""
        height, width = self.size
        batch = np.empty((len(rgb_images), height, width, 3), dtype=np.float32)
        for i, rgb in enumerate(rgb_images):
            batch[i] = self.resize_rgb(rgb)
        if self.channels == "BGR":
            batch = batch[..., ::-1]
        batch = batch * self._gain + self._offset
        if self.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch, dtype=np.float32)

    def __call__(self, images: Sequence[Any] | np.ndarray) -> np.ndarray:
        """A batch of images -> float32 array (N, 3, H, W) or (N, H, W, 3).

        ``images``: a sequence of PIL images or uint8 arrays (any sizes and modes,
        mixed), or one uint8 array holding a batch, (N, H, W) or (N, H, W, C).
        """
        if isinstance(images, np.ndarray):
            if images.ndim not in (3, 4):
                raise ValueError(
                    f"images: a batch array must be (N, H, W) or (N, H, W, C), got shape {images.shape}"
                )
            images = list(images)
        elif not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise TypeError(f"images must be a sequence of images or a batch array, got {type(images).__name__}")
        return self.from_rgb([as_rgb(image, f"images[{i}]") for i, image in enumerate(images)])
