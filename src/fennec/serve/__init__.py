"""Serving a zoo over HTTP (``fennec serve``).

The service needs the ``serve`` extra (FastAPI, uvicorn) and is imported on first use;
:func:`decode_image` needs only Pillow. Synthetic zoos and latency and load
measurement (``fennec bench``) are in :mod:`fennec.benchmarks`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what __getattr__ imports on first use, for the type checker
    from .app import DEFAULT_MAX_BODY_BYTES, create_app, read_token, serve, token_file_warning
    from .images import DEFAULT_MAX_IMAGE_PIXELS, decode_image

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "create_app", "decode_image", "read_token", "serve",
           "token_file_warning"]

# Where each public name lives (imported when first asked for).
_HOMES = {"DEFAULT_MAX_BODY_BYTES": "app", "DEFAULT_MAX_IMAGE_PIXELS": "images", "create_app": "app",
          "decode_image": "images", "read_token": "app", "serve": "app", "token_file_warning": "app"}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fennec.serve' has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)
