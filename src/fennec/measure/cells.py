"""One model's cells on one task: features once (cached by content), then every kind asked from them.

The ``finetune`` kind (:mod:`~fennec.measure.finetune`) needs the model as a torch module cut into
a frozen trunk and a trainable tail: the factory gives it through an optional
``trainable(model_id, cache_dir)`` method (:class:`fennec.measure.ZooExtractors` has one); the
trunk's activations are cached per image source as the features are.
"""

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
# For the finetune kind it may also have ``trainable(model id, cache dir)`` -> a
# fennec.measure.finetune.TrainableSplit (raising NotTrainable for a model measured by linear probe).
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
    # per kind, what the kind's recipe leaves to the model (finetune: the modules trained)
    notes: dict[str, str] = field(default_factory=dict)


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
    if kind == "finetune":
        from .finetune import recipe_text

        return recipe_text()
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
        self._split: Any = None  # the model's TrainableSplit, once loaded
        self._split_error: str | None = None
        self._trunk: dict[str, Any] = {}  # one source's trunk activations: original and augmented views

    def _trainable(self) -> Any:
        """The model's :class:`~fennec.measure.finetune.TrainableSplit`; RuntimeError saying why there is none
        (beginning with :data:`~fennec.measure.finetune.FALLBACK` for a model measured by linear probe)."""
        from .finetune import FALLBACK, NotTrainable

        if self._split_error is not None:
            raise RuntimeError(self._split_error)
        if self._split is None:
            trainable = getattr(self._make, "trainable", None)
            try:
                if trainable is None:
                    raise RuntimeError(f"cannot fine-tune: the extractors given ({type(self._make).__name__}) have "
                                       "no trainable(model_id, cache_dir) method to give the model as a torch module")
                self._split = trainable(self.model, self.cache_dir)
            except NotTrainable as error:
                self._split_error = (f"{FALLBACK}: not fine-tuned, as {error}; measured by linear probe only (kind "
                                     "linear_probe), and not stored as finetune so that a fit on finetune keeps "
                                     "to fine-tuning results")
            except RuntimeError as error:
                self._split_error = str(error)
            except Exception as error:
                self._split_error = f"cannot load the model to fine-tune: {_why(error)}"
            if self._split_error is not None:
                raise RuntimeError(self._split_error)
        return self._split

    def _trunk_path(self, source: ImageSource, split: Any, view: str) -> Path:
        from .finetune import trunk_key

        key = trunk_key(self.model, self.fingerprint, split.key, source.material)
        return self.cache_dir / "finetune-trunk" / f"{self.model}-{source.name}-{key}-{view}.npz"

    def _trunk_views(self, source: ImageSource, split: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The trunk's activations of every image of ``source`` as it is, and of the crop view of
        ``rows``: each image goes through the trunk once per view (cached on disk, by content), the
        crops only of the rows some task trains on."""
        from .finetune import RECIPE, trunk_activations

        seconds = 0.0
        if self._trunk.get("key") != source.key:
            self._trunk = {"key": source.key}
            for view in ("original", "crops"):
                path = self._trunk_path(source, split, view)
                if path.is_file():
                    with np.load(path, allow_pickle=False) as stored:
                        self._trunk[view] = (stored["rows"], stored["activations"])
        if "original" not in self._trunk:
            start = time.perf_counter()
            activations = trunk_activations(split, list(source.images))
            seconds += time.perf_counter() - start
            self._save(source, split, "original", np.arange(len(activations)), activations)
        done, crops = self._trunk.get("crops", (np.zeros(0, dtype=np.int64), None))
        missing = np.setdiff1d(rows, done)
        if len(missing):
            start = time.perf_counter()
            made = trunk_activations(split, [source.images[int(r)] for r in missing], crops=[int(r) for r in missing],
                                     seed=int(RECIPE["seed"]))
            seconds += time.perf_counter() - start
            all_rows = np.concatenate([done, missing])
            order = np.argsort(all_rows, kind="stable")
            merged = made if crops is None else np.concatenate([crops, made])
            self._save(source, split, "crops", all_rows[order], merged[order])
        original = self._trunk["original"][1]
        done, crops = self._trunk["crops"]
        return original, crops[np.searchsorted(done, rows)], seconds

    def _save(self, source: ImageSource, split: Any, view: str, rows: np.ndarray, activations: np.ndarray) -> None:
        from .._atomic import write_atomically

        path = self._trunk_path(source, split, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda fh: np.savez(fh, rows=rows.astype(np.int64), activations=activations),
                         what="finetune trunk cache")
        self._trunk[view] = (rows.astype(np.int64), activations)

    def finetune(self, inputs: TaskInputs) -> tuple[float, float]:
        """The model's finetune accuracy (%) on a task, and the seconds its trunk ran."""
        from .finetune import finetune_accuracy

        split = self._trainable()
        original, crops, seconds = self._trunk_views(inputs.source, split, np.asarray(inputs.train, dtype=np.int64))
        x_train = np.concatenate([original[inputs.train], crops])
        y_train = np.concatenate([inputs.y_train, inputs.y_train])
        return finetune_accuracy(split, x_train, y_train, original[inputs.test], inputs.y_test), seconds

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
        from_features = [kind for kind in job.kinds if kind != "finetune"]
        if from_features:
            self._from_features(from_features, inputs, result)
        if "finetune" in job.kinds:
            try:
                score, seconds = self.finetune(inputs)
                result.extraction_seconds += seconds
                if not np.isfinite(score):
                    raise ValueError(f"finetune gave {score}")
                result.scores["finetune"] = score
                result.notes["finetune"] = f"trained: {self._split.trained}"
            except Exception as error:
                result.failures["finetune"] = str(error) if isinstance(error, RuntimeError) else _why(error)
        result.seconds = time.perf_counter() - start
        return result

    def _from_features(self, kinds: list[str], inputs: TaskInputs, result: JobResult) -> None:
        try:
            features, result.extraction_seconds = self.features(inputs.source)
        except Exception as error:
            reason = str(error) if isinstance(error, RuntimeError) and self._load_error else _why(error)
            result.failures.update({kind: reason for kind in kinds})
            return
        x_train, x_test = features[inputs.train], features[inputs.test]
        for kind in kinds:
            try:
                score = _score(kind, inputs, x_train, x_test)
                if not np.isfinite(score):
                    raise ValueError(f"{kind} gave {score}")
                result.scores[kind] = score
            except Exception as error:
                result.failures[kind] = _why(error)
