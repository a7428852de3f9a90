"""Uploaded images to pixels, with the size checked before any pixel is decoded (Pillow, on first use)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Iterable

import numpy as np

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "decode_base64_images", "decode_image"]

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, what: str = "image") -> np.ndarray:
    """Decodes an encoded image (PNG, JPEG, ...) to an RGB ``uint8`` array of shape (H, W, 3).

    The size is read from the header before any pixel is decoded, so an image above
    ``max_pixels`` (a decompression bomb) costs nothing; ``OverflowError`` names it.
    ``ValueError`` when ``data`` is not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns or raises at ~89M pixels; ours runs first and lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise OverflowError(f"{what}: {err}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{what}: not an image that can be decoded ({err})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise OverflowError(f"{what}: {width} x {height} = {width * height} pixels, above the limit of "
                                f"{max_pixels}")
        try:
            return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{what}: the image data is damaged ({err})") from None


def decode_base64_images(encoded: Iterable[str], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                         what: str = "images") -> list[np.ndarray]:
    """:func:`decode_image` of each base64 text in turn, named ``what[i]`` in errors
    (``ValueError`` for text that is not base64)."""
    images = []
    for i, text in enumerate(encoded):
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what}[{i}].data: not valid base64") from None
        images.append(decode_image(data, max_pixels=max_pixels, what=f"{what}[{i}]"))
    return images
