"""Serving a zoo over HTTP (``fennec serve``) and measuring ranking latency (``fennec bench``).

The service needs the ``serve`` extra (FastAPI, uvicorn) and is imported on first use,
so :mod:`fennec.serve.load` (synthetic zoos, latency and load measurement) works without it.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "create_app", "decode_image", "read_token", "serve"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'fennec.serve' has no attribute {name!r}")
