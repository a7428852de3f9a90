"""A task's fixed-size descriptor from proxy features, pooled per class by the core.

Layout, for proxy features of width D (length 2 D + 6, whatever the class count):

====================  =========================================================
``[0, D)``            centroid: mean over classes of the class means of the
                      L2-normalised features (each class weighs the same)
``[D, 2D)``           spread: square root of the mean over classes of the
                      per-dimension within-class variance
``2D + 0`` log_k      log of the number of classes present
``2D + 1`` fisher     log1p(tr S_B / tr S_W), between- over within-class
                      variance (Fisher's criterion, Fisher 1936)
``2D + 2`` cos_means  mean cosine between pairs of class means
``2D + 3`` ncm        leave-one-out nearest-class-mean accuracy, chance-corrected:
                      (acc - 1/K) / (1 - 1/K) (Mensink et al., TPAMI 2013)
``2D + 4`` log_var    log of the total variance of the normalised features
``2D + 5`` labelled   1 when labels with at least two classes were given, else 0
====================  =========================================================

Without labels (or with a single class) the whole set is one class: centroid
and spread are the global mean and standard deviation, ``log_k`` is
log(n_classes) when n_classes is given (else 0), and ``fisher``, ``cos_means``,
``ncm`` and ``labelled`` take the neutral value 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .. import kernels
from .._checks import integer

__all__ = ["describe", "descriptor_layout", "SCALARS"]

SCALARS = ("log_k", "fisher", "cos_means", "ncm", "log_var", "labelled")


def descriptor_layout(feature_dim: int) -> dict[str, slice]:
    """Where each part of a descriptor lies, for features of width ``feature_dim``."""
    d = integer(feature_dim, "feature_dim", low=1)
    layout = {"centroid": slice(0, d), "spread": slice(d, 2 * d)}
    for i, name in enumerate(SCALARS):
        layout[name] = slice(2 * d + i, 2 * d + i + 1)
    return layout


def _features(features: ArrayLike) -> np.ndarray:
    array = np.asarray(features)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"features must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (images x dimensions), got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f"features row {row} holds NaN or inf (or a value beyond float32)")
    return array


def _loo_ncm_accuracy(unit: np.ndarray, labels: np.ndarray, means: np.ndarray, counts: np.ndarray) -> float:
    """Leave-one-out nearest-class-mean accuracy; each image's own class mean leaves it out."""
    # ||x - m_c||^2 for every class, in float64
    x = unit.astype(np.float64)
    sq = (x * x).sum(1)[:, None] - 2.0 * x @ means.T + (means * means).sum(1)[None, :]
    own = labels
    n_own = counts[own]
    with np.errstate(divide="ignore", invalid="ignore"):
        # the mean without x is (n m - x) / (n - 1), so ||x - m'|| = n / (n - 1) ||x - m||
        factor = np.where(n_own > 1, (n_own / np.maximum(n_own - 1, 1)) ** 2, np.inf)
    rows = np.arange(len(x))
    sq[rows, own] = np.where(n_own > 1, sq[rows, own] * factor, np.inf)
    sq[:, counts == 0] = np.inf
    return float(np.mean(np.argmin(sq, axis=1) == own))


def describe(features: ArrayLike, labels: ArrayLike | None = None, n_classes: int | None = None, *,
             threads: int | None = None) -> np.ndarray:
    """The task descriptor (float32, length 2 D + 6) of proxy features; see the module doc for the layout.

    Parameters
    ----------
    features : (N, D) array of proxy features (any float dtype; taken as float32)
    labels : optional (N,) integer class indices in [0, n_classes); None = unlabelled
    n_classes : optional int; default max(labels) + 1. Classes with no image are left out.
    """
    x = _features(features)
    n, d = x.shape
    if n_classes is not None:
        n_classes = integer(n_classes, "n_classes", low=1)
    everything = kernels.pool(x, np.zeros(n, dtype=np.int64), 1, normalize=True, threads=threads)
    total_var = float(everything.var[0].sum())
    scalars = dict.fromkeys(SCALARS, 0.0)
    scalars["log_var"] = float(np.log(max(total_var, 1e-12)))

    k_present = 0
    if labels is not None:
        label_array = np.asarray(labels)
        if label_array.dtype == np.bool_ or label_array.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices, got dtype {label_array.dtype}")
        if label_array.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per feature row, got {label_array.shape}")
        top = int(label_array.max()) + 1
        if n_classes is None:
            n_classes = top
        elif top > n_classes:
            raise ValueError(f"labels hold class {top - 1}, beyond n_classes={n_classes}")
        if label_array.min() < 0:
            raise ValueError(f"labels must be >= 0, got {int(label_array.min())}")
        per_class = kernels.pool(x, label_array, n_classes, normalize=True, threads=threads)
        present = per_class.counts > 0
        k_present = int(present.sum())
    if k_present >= 2:
        means = per_class.mean[present]
        variances = per_class.var[present]
        centroid = means.mean(axis=0)
        within = variances.mean(axis=0)
        trace_within = float(within.sum())
        trace_between = float(((means - centroid) ** 2).sum(axis=1).mean())
        norms = np.linalg.norm(means, axis=1)
        unit_means = means / np.maximum(norms, 1e-12)[:, None]
        gram = unit_means @ unit_means.T
        pairs = k_present * (k_present - 1)
        norms_all = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        unit = x / np.maximum(norms_all, 1e-30)
        remap = np.cumsum(present) - 1  # class index -> index among present classes
        accuracy = _loo_ncm_accuracy(unit, remap[label_array], means, per_class.counts[present])
        chance = 1.0 / k_present
        scalars.update(
            log_k=float(np.log(k_present)),
            fisher=float(np.log1p(trace_between / max(trace_within, 1e-12))),
            cos_means=float((gram.sum() - np.trace(gram)) / pairs),
            ncm=(accuracy - chance) / (1.0 - chance),
            labelled=1.0,
        )
    else:
        centroid = everything.mean[0]
        within = everything.var[0]
        if n_classes is not None:
            scalars["log_k"] = float(np.log(n_classes))
    out = np.concatenate([centroid, np.sqrt(np.maximum(within, 0.0)), [scalars[k] for k in SCALARS]])
    return out.astype(np.float32)
