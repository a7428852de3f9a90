"""On-disk feature cache: one .npy row per (proxy, image), written atomically.

Layout: ``<cache_dir>/<proxy key>/<first two hex digits>/<image sha256>.npy``.
The proxy key covers the proxy's name, its backend's identity (model file
hash, output tensor) and its preprocessing, so a change to any of them misses
the cache. Each row is written to a temporary name and renamed into place, so
an interrupted extraction leaves only whole rows and the next run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FeatureCache", "atomic_write", "pixel_sha256", "proxy_key"]

_FORMAT = 1


def pixel_sha256(rgb: np.ndarray) -> str:
    """sha256 of an HxWx3 uint8 image's decoded pixels and shape (independent of file format)."""
    digest = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x{rgb.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def proxy_key(description: dict) -> str:
    text = json.dumps({"format": _FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureCache:
    """Feature rows of one proxy, by image hash."""

    def __init__(self, cache_dir, key: str, description: dict | None = None):
        self.folder = Path(cache_dir) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        if description is not None:
            about = self.folder / "proxy.json"
            if not about.exists():
                atomic_write(about, json.dumps(description, sort_keys=True, indent=1, default=str).encode())

    def _path(self, image_hash: str) -> Path:
        return self.folder / image_hash[:2] / f"{image_hash}.npy"

    def get(self, image_hash: str) -> np.ndarray | None:
        path = self._path(image_hash)
        try:
            row = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed (and overwritten) rather than trusted
        if row.ndim != 1 or row.dtype != np.float32:
            return None
        return row

    def put(self, image_hash: str, row: np.ndarray) -> None:
        path = self._path(image_hash)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(row, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_write(path: Path, data: bytes) -> None:
    """Writes to a temporary file in the same folder, then renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
