"""One model's cells on one task: features once (cached by content), then every kind asked from them."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .inputs import ImageSource, TaskInputs
from .plan import Job

__all__ = ["Extractor", "ExtractorFactory", "JobResult", "Measurer", "kind_recipe"]


class Extractor(Protocol):
    def features(self, images: Any) -> np.ndarray: ...


# (model id, cache dir) -> an object with .features(images) -> (N, D); must pickle to reach Ray workers.
ExtractorFactory = Callable[[str, "str | os.PathLike[str] | None"], Extractor]


@dataclass
class JobResult:
    """What a job gave: a score per kind that worked, a reason per kind that did not.

    ``lost``: the job itself did not finish (its worker died past its retries): nothing is
    recorded for it, so a rerun tries it again.
    """

    model: str
    task: str
    scores: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    extraction_seconds: float = 0.0
    lost: str | None = None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def kind_recipe(kind: str) -> str:
    """How a kind is computed, with the versions that compute it (kept in each result's ``source``)."""
    if kind == "linear_probe":
        from ..demozoo.build import PROBE_C

        return (f"linear probe: held-out accuracy (%) of logistic regression C={PROBE_C}, max_iter=2000 on "
                f"standardised features (scikit-learn {_version('scikit-learn')})")
    return f"forward-pass metric {kind} of fennec.metrics on the training features"


def _score(kind: str, inputs: TaskInputs, x_train: np.ndarray, x_test: np.ndarray) -> float:
    if kind == "linear_probe":
        from ..demozoo.build import linear_probe_accuracy

        return 100.0 * linear_probe_accuracy(x_train, inputs.y_train, x_test, inputs.y_test)
    from ..metrics import METRICS

    return float(METRICS[kind](x_train, inputs.y_train))


def _why(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


class Measurer:
    """One model, loaded once, measuring its jobs one after another; features are kept per image source
    in memory and under ``cache_dir/zoo-features`` (the same files build-demo writes)."""

    def __init__(self, model: str, make_extractor: ExtractorFactory, cache_dir: str | os.PathLike[str],
                 fingerprint: str = "") -> None:
        self.model = model
        self._make = make_extractor
        self.cache_dir = Path(cache_dir)
        self.fingerprint = fingerprint
        self._extractor: Extractor | None = None
        self._load_error: str | None = None
        self._features: dict[str, np.ndarray] = {}

    def _extractor_or_raise(self) -> Extractor:
        if self._load_error is not None:
            raise RuntimeError(self._load_error)
        if self._extractor is None:
            try:
                self._extractor = self._make(self.model, self.cache_dir)
            except Exception as error:
                self._load_error = f"cannot load the model: {_why(error)}"
                raise RuntimeError(self._load_error) from error
        return self._extractor

    def _cache_path(self, source: ImageSource) -> Path:
        from ..demozoo.build import FEATURES_REVISION
        from ..demozoo.catalogue import INPUT_SIZE

        key = hashlib.sha256(f"{self.model}:{FEATURES_REVISION}:{INPUT_SIZE}:".encode() + self.fingerprint.encode()
                             + source.material).hexdigest()[:24]
        return self.cache_dir / "zoo-features" / f"{self.model}-{source.name}-{key}.npy"

    def features(self, source: ImageSource) -> tuple[np.ndarray, float]:
        """The model's features of every image of ``source`` and the seconds the extraction took."""
        from .._atomic import write_atomically

        key = source.key
        if key in self._features:
            return self._features[key], 0.0
        path = self._cache_path(source)
        if path.is_file():
            features = np.load(path, allow_pickle=False)
            seconds = 0.0
        else:
            extractor = self._extractor_or_raise()
            start = time.perf_counter()
            features = np.asarray(extractor.features(list(source.images)))
            seconds = time.perf_counter() - start
            if features.ndim != 2 or len(features) != len(source.images):
                raise ValueError(f"the model gave features of shape {features.shape} for {len(source.images)} "
                                 "images; expected (images, dimensions)")
            if not np.isfinite(features).all():
                raise ValueError("the model gave non-finite features")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda fh: np.save(fh, features), what="measure feature cache")
        self._features = {key: features}  # one source at a time: jobs come grouped by source
        return features, seconds

    def run(self, job: Job, inputs: TaskInputs) -> JobResult:
        """Every kind of ``job``; a failure is caught and given as the reason for the kinds it stops."""
        start = time.perf_counter()
        result = JobResult(job.model, job.task)
        try:
            features, result.extraction_seconds = self.features(inputs.source)
        except Exception as error:
            reason = str(error) if isinstance(error, RuntimeError) and self._load_error else _why(error)
            result.failures = {kind: reason for kind in job.kinds}
            result.seconds = time.perf_counter() - start
            return result
        x_train, x_test = features[inputs.train], features[inputs.test]
        for kind in job.kinds:
            try:
                score = _score(kind, inputs, x_train, x_test)
                if not np.isfinite(score):
                    raise ValueError(f"{kind} gave {score}")
                result.scores[kind] = score
            except Exception as error:
                result.failures[kind] = _why(error)
        result.seconds = time.perf_counter() - start
        return result
