"""What the routes share: the zoo, its :class:`~fennec.ranking.Ranker`, and the settings.

The Ranker lives on the event loop's thread (its zoo's SQLite connection belongs to
the thread that opened it); writes open their own connection in a worker thread.
The routes reach the Ranker's state through :meth:`Service.fitted` and
:meth:`Service.catalog` only.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..ranking import FittedVersion, Ranker
from ..zoo import Zoo, ZooError
from .images import (DEFAULT_IMAGE_CONCURRENCY, DEFAULT_MAX_IMAGE_SIDE, DEFAULT_MAX_REQUEST_PIXELS,
                     ImagesUnavailable, ProxyEncoder)

__all__ = ["DEFAULT_MAX_BUDGET", "ImageEncoder", "Service"]

# Models a POST /rank/images request may run over its images: each costs seconds of CPU on an image thread.
DEFAULT_MAX_BUDGET = 5

# image_encoder(images, labels) -> task features: RGB uint8 arrays and their labels in.
ImageEncoder = Callable[[list[np.ndarray], Sequence[str]], Mapping[str, Any]]


class Service:
    """The zoo path, its Ranker (event-loop thread only, between :meth:`open` and
    :meth:`close`), the image encoder, the image limits and the threads that decode images.

    Without an ``image_encoder`` the zoo's proxy is used when its fitted state takes task
    descriptors. Images are decoded and encoded on ``image_pool`` (``image_concurrency``
    threads), never on the event loop; ``images_in_flight`` counts the requests doing so.
    A request's budget of forward passes runs on the same threads, at most ``max_budget`` models.
    """

    def __init__(self, zoo_path: Path, image_encoder: ImageEncoder | None, max_image_pixels: int,
                 max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
                 image_concurrency: int = DEFAULT_IMAGE_CONCURRENCY, max_image_side: int = DEFAULT_MAX_IMAGE_SIDE,
                 max_budget: int = DEFAULT_MAX_BUDGET):
        self.zoo_path = zoo_path
        self.max_budget = max_budget
        self.image_encoder = image_encoder
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        self.max_image_side = max_image_side
        self.image_concurrency = image_concurrency
        self.images_in_flight = 0
        self.image_pool: ThreadPoolExecutor | None = None
        self._proxy_encoders: dict[str, ProxyEncoder] = {}
        self.zoo: Zoo | None = None
        self.ranker: Ranker | None = None
        self._frozen: Catalog | None = None

    def open(self) -> None:
        """Opens the zoo on this thread; loads its fitted arrays and metadata now, not on the first request."""
        self.zoo = Zoo.open(self.zoo_path)
        self.ranker = Ranker(self.zoo)
        self.image_pool = ThreadPoolExecutor(self.image_concurrency, thread_name_prefix="fennec-images")
        if self.zoo.fitted_version() is not None:
            self.ranker.catalog(self.ranker.fitted())
            self.ranker.rank(k=1)
            self.settle()

    def settle(self) -> None:
        """Moves a newly loaded catalog out of the garbage collector's sight (``gc.freeze``):
        a zoo's metadata is one dict per model, and collecting the oldest generation would
        otherwise walk all of them, a pause of tens of milliseconds for 100,000 models."""
        assert self.ranker is not None, "the service is not open"
        catalog = self.ranker.loaded_catalog
        if catalog is not None and catalog is not self._frozen:
            gc.collect()
            gc.freeze()
            self._frozen = catalog

    def close(self) -> None:
        if self.image_pool is not None:
            self.image_pool.shutdown(wait=True, cancel_futures=True)
            self.image_pool = None
        if self.zoo is not None:
            self.zoo.close()
            self.zoo = self.ranker = None

    def fitted(self) -> FittedVersion | None:
        """The current fitted version, or None before the first fit."""
        assert self.zoo is not None and self.ranker is not None, "the service is not open"
        try:
            return self.ranker.fitted()
        except ZooError:
            if self.zoo.fitted_version() is None:
                return None
            raise

    def catalog(self) -> tuple[Catalog, FittedVersion | None]:
        """The stored models' metadata, and the fitted version it was aligned with."""
        fitted = self.fitted()
        assert self.ranker is not None, "the service is not open"
        return self.ranker.catalog(fitted), fitted

    def encoder(self) -> ImageEncoder:
        """The image encoder for the fitted state: the one given, else the zoo's proxy
        (``ImagesUnavailable`` saying why there is none; ZooError before the first fit)."""
        if self.image_encoder is not None:
            return self.image_encoder
        fitted = self.fitted()
        if fitted is None:
            raise ZooError(f"{self.zoo_path}: the zoo is not fitted yet (run `fennec zoo fit`)")
        if not fitted.space.takes_descriptor:
            raise ImagesUnavailable(
                "this zoo was fitted without task descriptors, so images cannot describe a task for it: "
                "store its tasks' proxy descriptors (Zoo.set_task_descriptor) and refit, or send task "
                "features to POST /rank instead")
        from ..proxy import DEFAULT_PROXY, PROXIES

        assert self.zoo is not None  # self.fitted() needs it
        name = self.zoo.setting("proxy") or DEFAULT_PROXY
        if name not in PROXIES:
            raise ImagesUnavailable(f"the zoo's descriptors were made by the proxy {name!r}, which this fennec "
                                    f"does not know (known: {', '.join(sorted(PROXIES))}); upgrade fennec, or "
                                    f"send task features to POST /rank instead")
        if name not in self._proxy_encoders:
            self._proxy_encoders[name] = ProxyEncoder(name)
        return self._proxy_encoders[name]

    def write(self, action: Callable[[Zoo], int]) -> dict[str, Any]:
        """Runs ``action`` (it returns how many rows it added) on a connection of its own."""
        with Zoo.open(self.zoo_path) as zoo:
            added = action(zoo)
            return {"added": added, "fitted_version": zoo.fitted_version(),
                    "note": "rankings include these after the next fit (fennec zoo fit)"}
