"""What the routes share: the zoo, its :class:`~fennec.ranking.Ranker`, and the settings.

The Ranker lives on the event loop's thread (its zoo's SQLite connection belongs to
the thread that opened it); writes open their own connection in a worker thread.
The routes reach the Ranker's state through :meth:`Service.fitted` and
:meth:`Service.catalog` only.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..ranking import FittedVersion, Ranker
from ..zoo import Zoo, ZooError

__all__ = ["ImageEncoder", "Service"]

# image_encoder(images, labels) -> task features: RGB uint8 arrays and their labels in.
ImageEncoder = Callable[[list[np.ndarray], list[str]], Mapping[str, float]]


class Service:
    """The zoo path, its Ranker (event-loop thread only, between :meth:`open` and
    :meth:`close`), the image encoder and the image size limit."""

    def __init__(self, zoo_path: Path, image_encoder: ImageEncoder | None, max_image_pixels: int):
        self.zoo_path = zoo_path
        self.image_encoder = image_encoder
        self.max_image_pixels = max_image_pixels
        self.zoo: Zoo | None = None
        self.ranker: Ranker | None = None
        self._frozen: Catalog | None = None

    def open(self) -> None:
        """Opens the zoo on this thread; loads its fitted arrays and metadata now, not on the first request."""
        self.zoo = Zoo.open(self.zoo_path)
        self.ranker = Ranker(self.zoo)
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

    def write(self, action: Callable[[Zoo], int]) -> dict[str, Any]:
        """Runs ``action`` (it returns how many rows it added) on a connection of its own."""
        with Zoo.open(self.zoo_path) as zoo:
            added = action(zoo)
            return {"added": added, "fitted_version": zoo.fitted_version(),
                    "note": "rankings include these after the next fit (fennec zoo fit)"}
