"""The proxy: a backend plus its preprocessing, batching, a progress bar and the feature cache."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence, cast

import numpy as np

from .._checks import integer
from .cache import FeatureCache, pixel_sha256, proxy_key
from .images import ImageSet
from .preprocess import Preprocess, as_rgb

__all__ = ["Proxy"]

_PROGRESS_MIN = 256  # below this many images to compute a bar is noise


def _as_image_list(images: object) -> list[Any]:
    if isinstance(images, ImageSet):
        return images.images
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"images: a batch array must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
        return list(images)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return list(images)
    raise TypeError(f"images must be an ImageSet, a sequence of images or a uint8 batch array, "
                    f"got {type(images).__name__}")


class Proxy:
    """One proxy model: ``features(images)`` gives one float32 row per image.

    Parameters
    ----------
    backend : OnnxBackend, TorchBackend, TensorRTBackend (anything with ``run`` and ``identity``)
    preprocess : Preprocess
    name : a short name for the proxy (part of the cache key, shown in reports)
    batch_size : images per forward pass
    cache_dir : optional folder for the feature cache; None disables caching
    """

    def __init__(self, backend: Any, preprocess: Preprocess, *, name: str, batch_size: int = 64,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if not callable(getattr(backend, "run", None)):
            raise TypeError(f"backend must have a run(batch) method, got {type(backend).__name__}")
        if not isinstance(preprocess, Preprocess):
            raise TypeError(f"preprocess must be a Preprocess, got {type(preprocess).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.batch_size = integer(batch_size, "batch_size", low=1)
        self.backend = backend
        self.preprocess = preprocess
        self.name = name
        self.cache_dir = cache_dir
        self._cache: FeatureCache | None = None

    def __repr__(self) -> str:
        return f"Proxy(name={self.name!r}, backend={type(self.backend).__name__}, {self.preprocess!r})"

    def description(self) -> dict[str, Any]:
        """What determines this proxy's features: name, backend identity, preprocessing."""
        identity = self.backend.identity() if hasattr(self.backend, "identity") else {
            "kind": type(self.backend).__qualname__}
        return {"name": self.name, "backend": identity, "preprocess": self.preprocess.params()}

    @property
    def cache(self) -> FeatureCache | None:
        """The feature cache of this proxy (None without a ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        if self._cache is None:
            description = self.description()
            self._cache = FeatureCache(self.cache_dir, proxy_key(description), description)
        return self._cache

    def _forward(self, rgb_images: list[np.ndarray]) -> np.ndarray:
        rows: np.ndarray = self.backend.run(self.preprocess.from_rgb(rgb_images))
        if rows.ndim != 2 or rows.shape[0] != len(rgb_images):
            raise RuntimeError(f"backend returned shape {rows.shape} for {len(rgb_images)} images")
        return rows

    def features(self, images: ImageSet | Sequence[Any] | np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Feature rows (N, D) float32, one per image, in order.

        ``images``: an ImageSet, a sequence of PIL images / uint8 arrays, or a
        uint8 batch array. With a cache, images already seen (same decoded
        pixels, same proxy) are not run again, identical images in one call run
        once, and each finished batch is stored at once, so an interrupted call
        resumes where it stopped.
        """
        items = _as_image_list(images)
        if not items:
            raise ValueError("images: no images given")
        cache = self.cache
        rows: list[np.ndarray | None] = [None] * len(items)
        positions: dict[str, list[int]] = {}  # image key -> its positions, in first-seen order
        rgb_of: dict[str, np.ndarray] = {}
        for i, item in enumerate(items):
            rgb = as_rgb(item, f"images[{i}]")
            key = pixel_sha256(rgb) if cache is not None else str(i)
            if key not in positions:
                positions[key] = []
                rgb_of[key] = rgb
            positions[key].append(i)
        keys: list[str] = []
        for key, where in positions.items():
            cached = cache.get(key) if cache is not None else None
            if cached is None:
                keys.append(key)
            else:
                del rgb_of[key]
                for i in where:
                    rows[i] = cached
        bar = None
        if progress and len(keys) >= _PROGRESS_MIN:
            try:
                from tqdm import tqdm
                bar = tqdm(total=len(keys), desc=f"{self.name} features", unit="img")
            except ImportError:
                bar = None
        try:
            for start in range(0, len(keys), self.batch_size):
                chunk = keys[start:start + self.batch_size]
                out = self._forward([rgb_of.pop(k) for k in chunk])
                bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
                if bad.size:
                    first = positions[chunk[bad[0]]][0]
                    raise ValueError(f"the proxy gave NaN or inf features for images[{first}]")
                for key, row in zip(chunk, out):
                    if cache is not None:
                        cache.put(key, row)
                    for i in positions[key]:
                        rows[i] = row
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        done = cast("list[np.ndarray]", rows)  # every position was filled from the cache or a batch
        widths = {len(r) for r in done}
        if len(widths) != 1:
            raise RuntimeError(f"feature rows of different widths {sorted(widths)}: the cache at "
                               f"{self.cache_dir} holds rows from another model version; clear it")
        return np.ascontiguousarray(np.stack(done), dtype=np.float32)

    def throughput(self, images: ImageSet | Sequence[Any] | np.ndarray, *, repeats: int = 1,
                   warmup: bool = True) -> float:
        """Images per second of preprocessing plus forward passes (no cache), best of ``repeats``."""
        items = _as_image_list(images)
        rgb = [as_rgb(item, f"images[{i}]") for i, item in enumerate(items)]
        if warmup:
            self._forward(rgb[: min(len(rgb), self.batch_size)])
        best = float("inf")
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            for s in range(0, len(rgb), self.batch_size):
                self._forward(rgb[s:s + self.batch_size])
            best = min(best, time.perf_counter() - start)
        return len(rgb) / best
