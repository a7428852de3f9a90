"""A new task described from its images: what `fennec rank --images` hands to the ranker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .descriptor import describe
from .images import IMAGE_EXTENSIONS, ImageSet, load_images
from .packaged import DEFAULT_PROXY, PROXIES

__all__ = ["task_from_images"]


def _count_images(source: object) -> int | None:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return sum(1 for p in Path(source).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return None


def task_from_images(source: str | os.PathLike[str] | Sequence[Any] | np.ndarray, *,
                     labels: Sequence[Any] | np.ndarray | None = None, proxy: str | None = None,
                     per_class: int | None = None, seed: int = 0, strict: bool = False,
                     cache_dir: str | os.PathLike[str] | None = None,
                     progress: bool = False) -> tuple[dict[str, Any], ImageSet]:
    """Embeds a task's images with the proxy and returns the task (descriptor, class count,
    training-set size) as :func:`fennec.rank` takes it, and the images read.

    ``proxy`` names one of :data:`PROXIES` (default :data:`DEFAULT_PROXY`); a zoo's
    descriptors and a new task's must come from the same proxy.
    """
    name = proxy or DEFAULT_PROXY
    if name not in PROXIES:
        raise ValueError(f"proxy: unknown proxy {name!r}; known: {sorted(PROXIES)}")
    images = load_images(source, labels=labels, per_class=per_class, seed=seed, strict=strict)
    if len(images) == 0:
        raise ValueError(f"{source}: no readable images ({images.skipped} skipped)")
    extractor = PROXIES[name](cache_dir=cache_dir)
    features = extractor.features(images, progress=progress)
    descriptor = describe(features, images.labels, images.n_classes if images.labels is not None else None)
    total = _count_images(source)
    task = {"descriptor": descriptor.tolist(), "n_train": max(total or 0, len(images)),
            "n_classes": max(images.n_classes, 1)}
    return task, images
