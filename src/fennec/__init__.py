"""fennec: recommends which pre-trained model to fine-tune for a new task."""

from __future__ import annotations

from . import kernels
from .kernels import build_info, pool, topk, wl_features

__version__ = "0.1.0"

__all__ = ["__version__", "build_info", "kernels", "pool", "topk", "wl_features"]
