"""On-disk feature cache: one .npy row per (proxy, image), written atomically.

Layout: ``<cache_dir>/<proxy key>/<first two hex digits>/<image sha256>.npy``.
The proxy key covers the proxy's name, its backend's identity (model file
hash, output tensor) and its preprocessing, so a change to any of them misses
the cache. Each row is written through :func:`fennec._atomic.write_atomically`
(a temporary file renamed into place), so an interrupted extraction leaves
only whole rows and the next run resumes. Rows are not fsynced: a row a crash
loses is recomputed, and a disk flush per image would cost more than the
extraction.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_atomically

__all__ = ["FeatureCache", "pixel_sha256", "proxy_key"]

_FORMAT = 1


def pixel_sha256(rgb: np.ndarray) -> str:
    """sha256 of an HxWx3 uint8 image's decoded pixels and shape (independent of file format)."""
    digest = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x{rgb.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def proxy_key(description: dict[str, Any]) -> str:
    """A short hash of a proxy's description (with the cache format): its cache folder's name."""
    text = json.dumps({"format": _FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureCache:
    """Feature rows of one proxy, by image hash."""

    def __init__(self, cache_dir: str | os.PathLike[str], key: str, description: dict[str, Any] | None = None) -> None:
        self.folder = Path(cache_dir) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        if description is not None:
            about = self.folder / "proxy.json"
            if not about.exists():
                write_atomically(about, json.dumps(description, sort_keys=True, indent=1, default=str),
                                 what="feature cache")

    def _path(self, image_hash: str) -> Path:
        return self.folder / image_hash[:2] / f"{image_hash}.npy"

    def get(self, image_hash: str) -> np.ndarray | None:
        """The stored float32 row of an image, or None when absent or damaged."""
        path = self._path(image_hash)
        try:
            row: np.ndarray = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed (and overwritten) rather than trusted
        if row.ndim != 1 or row.dtype != np.float32:
            return None
        return row

    def put(self, image_hash: str, row: np.ndarray) -> None:
        """Stores an image's row as float32, atomically (readers see the old row or the new one)."""
        path = self._path(image_hash)
        path.parent.mkdir(exist_ok=True)
        row = np.ascontiguousarray(row, dtype=np.float32)
        write_atomically(path, lambda fh: np.save(fh, row, allow_pickle=False), what="feature cache",
                         durable=False)
