"""Validated Python interface to fennec's compiled kernels.

Every function checks its arguments here and raises ``TypeError`` or
``ValueError`` naming the argument and what was expected, then hands the
arrays to ``fennec._core`` as they are: large inputs (model matrices, feature
matrices) are never copied, so they must already have a supported dtype and be
C-contiguous (``np.memmap`` arrays qualify).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _core
from ._checks import integer
from ._wl import GraphBatch, hash_labels, wl_features

__all__ = [
    "CUDA_COMPILED",
    "CudaError",
    "DeviceMatrix",
    "to_device",
    "GraphBatch",
    "PoolResult",
    "build_info",
    "cuda_available",
    "hash_labels",
    "pool",
    "topk",
    "wl_features",
]

CUDA_COMPILED: bool = bool(_core.build_info()["cuda_compiled"])
# Raised by any call that reaches the GPU when the CUDA runtime fails (out of GPU
# memory, a failed launch, a lost device); a RuntimeError.
CudaError = _core.CudaError
DeviceMatrix = _core.DeviceMatrix
_METRICS: dict[str, Literal[0, 1]] = {"ip": 0, "l2": 1}

_FloatMatrix = npt.NDArray[np.float32] | npt.NDArray[np.float16]
_Device = Literal["auto", "cpu", "cuda"]


def build_info() -> dict[str, Any]:
    """Compiler, SIMD level in use, CUDA compiled in or not, CUDA devices seen."""
    return dict(_core.build_info())


def cuda_available() -> bool:
    """True when CUDA is compiled in and at least one GPU is visible."""
    return CUDA_COMPILED and _core.cuda_device_count() > 0


def _threads(threads: int | None) -> int:
    return 0 if threads is None else integer(threads, "threads", low=1)


def _float_matrix(array: object, name: str) -> _FloatMatrix:
    """A float32/float16 C-contiguous 2-D ndarray, taken without a copy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array (np.ndarray or np.memmap), got {type(array).__name__}"
        )
    if array.dtype not in (np.float32, np.float16):
        raise TypeError(
            f"{name} must have dtype float32 or float16, got {array.dtype}; "
            f"convert it once with {name}.astype(np.float32)"
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x dimensions), got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (fennec does not copy large matrices); "
            f"use np.ascontiguousarray({name})"
        )
    return array


def _device(device: str, cuda_refusal: str | None = None) -> str:
    """Checks ``device``; ``cuda_refusal`` says why this call cannot run on CUDA, if it cannot."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not CUDA_COMPILED:
            raise ValueError("device='cuda' was asked for, but fennec was built without CUDA "
                             "(rebuild with FENNEC_ENABLE_CUDA=ON)")
        if _core.cuda_device_count() == 0:
            raise ValueError("device='cuda' was asked for, but no CUDA GPU is visible")
        if cuda_refusal:
            raise ValueError(f"device='cuda' cannot serve this call: {cuda_refusal}")
    return device


def to_device(model_vectors: _FloatMatrix) -> DeviceMatrix:
    """Copies a model matrix to GPU memory once; pass the result to :func:`topk` as model_vectors.

    Raises ValueError when CUDA is not compiled in or no GPU is visible.
    """
    _device("cuda")
    return _core.DeviceMatrix(_float_matrix(model_vectors, "model_vectors"))


def _topk_matrix(
    model_vectors: _FloatMatrix | DeviceMatrix, device: _Device
) -> tuple[_FloatMatrix | DeviceMatrix, int, int]:
    """The checked model matrix and its (n, d)."""
    if isinstance(model_vectors, DeviceMatrix):
        if device == "cpu":
            raise ValueError("device='cpu' was asked for, but model_vectors live on the GPU (to_device)")
        return model_vectors, model_vectors.n, model_vectors.d
    model_vectors = _float_matrix(model_vectors, "model_vectors")
    n, d = model_vectors.shape
    return model_vectors, n, d


def _topk_queries(queries: npt.ArrayLike, d: int) -> tuple[npt.NDArray[np.float32], bool]:
    """Queries as a finite float32 (q, d) matrix, and whether a single (d,) query was given."""
    query_array = np.asarray(queries)
    if query_array.dtype == object or not (
        np.issubdtype(query_array.dtype, np.floating) or np.issubdtype(query_array.dtype, np.integer)
    ) or query_array.dtype == np.bool_:
        raise TypeError(f"queries must be a numeric array, got dtype {query_array.dtype}")
    single = query_array.ndim == 1
    if query_array.ndim not in (1, 2):
        raise ValueError(f"queries must have shape (d,) or (q, d), got {query_array.shape}")
    query_array = np.ascontiguousarray(query_array.reshape(1, -1) if single else query_array,
                                       dtype=np.float32)
    if query_array.shape[1] != d:
        raise ValueError(
            f"queries have dimension {query_array.shape[1]} but model_vectors have dimension {d}"
        )
    if query_array.shape[0] == 0:
        raise ValueError("queries must hold at least one query")
    if not np.isfinite(query_array).all():
        row = int(np.argwhere(~np.isfinite(query_array))[0][0])
        raise ValueError(f"queries contain NaN or inf (query {row}) or values beyond float32")
    return query_array, single


def _topk_skip(mask: npt.ArrayLike | None, n: int) -> tuple[npt.NDArray[np.uint8] | None, int]:
    """The mask as the core's uint8 skip flags (None: skip nothing), and how many models are kept."""
    if mask is None:
        return None, n
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array (True = skip the model), got dtype {mask.dtype}")
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), one entry per model, got {mask.shape}")
    skip = np.ascontiguousarray(mask).view(np.uint8)
    return skip, n - int(np.count_nonzero(skip))


def _topk_run(
    model_vectors: _FloatMatrix | DeviceMatrix,
    query_array: npt.NDArray[np.float32],
    k_eff: int,
    metric: Literal[0, 1],
    skip: npt.NDArray[np.uint8] | None,
    threads: int | None,
    dev: str,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Scores the queries where the matrix lives (or on ``dev``); ``k_eff`` >= 1."""
    if isinstance(model_vectors, DeviceMatrix):
        if k_eff > _core.CUDA_MAX_K:
            raise ValueError(f"a GPU-resident matrix is scored on the GPU, which handles k <= "
                             f"{_core.CUDA_MAX_K}; got {k_eff}")
        scores, indices, bad_row = model_vectors.topk(query_array, k_eff, metric, skip)
    else:
        run_on: Literal["cpu", "cuda"] = "cuda" if dev == "cuda" else "cpu"
        scores, indices, bad_row = _core.topk(
            model_vectors, query_array, k_eff, metric, skip, _threads(threads), run_on
        )
    if bad_row >= 0:
        raise ValueError(
            f"model_vectors row {bad_row} gives a non-finite score: the row holds NaN or inf, "
            "or its values overflow float32"
        )
    return scores, indices


def topk(
    model_vectors: _FloatMatrix | DeviceMatrix,
    queries: npt.ArrayLike,
    k: int,
    metric: Literal["ip", "l2"] = "ip",
    mask: npt.ArrayLike | None = None,
    device: _Device = "auto",
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Best ``k`` models for each query, scored by inner product or L2 distance.

    Parameters
    ----------
    model_vectors : np.ndarray, shape (N, d), float32 or float16, C-contiguous
        One row per model. Memory-mapped arrays are read in place. A matrix
        already on the GPU (:func:`to_device`) is scored there.
    queries : array-like, shape (d,) or (q, d)
        Task vectors; converted to float32 (they are small).
    k : int >= 1
        Results per query; at most the number of models not masked out.
    metric : "ip" or "l2"
        "ip": scores are inner products, highest first. "l2": scores are
        squared euclidean distances, nearest first.
    mask : optional bool array, shape (N,)
        True marks a model to skip (a filter); skipped models are never returned.
    device : "auto", "cpu" or "cuda"
        "auto" runs on the CPU for host arrays (copying the matrix to a GPU
        costs more than scoring it here); "cuda" copies to the GPU and raises
        when CUDA is not compiled in or no GPU is visible.
    threads : optional int
        CPU threads; default all hardware threads.

    Returns
    -------
    (scores, indices): float32 and int64 arrays of shape (k',) for one query
    or (q, k') for several, k' = min(k, number of kept models). Ties go to the
    lower index.
    """
    model_vectors, n, d = _topk_matrix(model_vectors, device)
    k = integer(k, "k", low=1)
    if metric not in _METRICS:
        raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
    query_array, single = _topk_queries(queries, d)
    skip, kept = _topk_skip(mask, n)
    k_eff = min(k, kept)
    nq = query_array.shape[0]
    too_wide = k_eff > _core.CUDA_MAX_K
    # Checked even when nothing is left to score, so a bad device is never silently accepted.
    dev = _device(device, f"the CUDA top-k handles k <= {_core.CUDA_MAX_K}, got {k_eff}" if too_wide else None)
    if k_eff == 0:
        scores = np.empty((nq, 0), dtype=np.float32)
        indices = np.empty((nq, 0), dtype=np.int64)
    else:
        scores, indices = _topk_run(model_vectors, query_array, k_eff, _METRICS[metric], skip, threads, dev)
    if single:
        return scores[0], indices[0]
    return scores, indices


class PoolResult(NamedTuple):
    """Per-class statistics: counts (n_classes,), mean and var (n_classes, d), float64.

    Empty classes have NaN mean and variance; classes with count <= ddof have NaN variance.
    """

    counts: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def pool(
    features: _FloatMatrix,
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    normalize: bool = False,
    ddof: int = 0,
    device: _Device = "auto",
    threads: int | None = None,
) -> PoolResult:
    """Per-class count, mean and variance of feature rows (one pass, float64 accumulation).

    Parameters
    ----------
    features : np.ndarray, shape (n, d), float32 or float16, C-contiguous
    labels : integer array-like, shape (n,), values in [0, n_classes)
    n_classes : int >= 1
    normalize : bool
        L2-normalise each row before pooling (all-zero rows stay zero).
    ddof : int >= 0
        Variance divisor is count - ddof.
    device : "auto", "cpu" or "cuda"
        "auto" uses a GPU when CUDA is compiled in and one is visible.
    """
    features = _float_matrix(features, "features")
    n, d = features.shape
    n_classes = integer(n_classes, "n_classes", low=1)
    ddof = integer(ddof, "ddof", low=0)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    label_array = np.asarray(labels)
    if label_array.dtype == np.bool_ or not np.issubdtype(label_array.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {label_array.dtype}")
    if label_array.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per feature row, got {label_array.shape}")
    label_array = np.ascontiguousarray(label_array, dtype=np.int64)
    if n:
        bad = np.flatnonzero((label_array < 0) | (label_array >= n_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"labels[{i}] = {int(label_array[i])} is outside [0, n_classes={n_classes})"
            )
    dev = _device(device)
    run_on: Literal["cpu", "cuda"] = "cuda" if dev == "cuda" or (dev == "auto" and cuda_available()) else "cpu"
    counts, mean, var, bad_row = _core.pool(
        features, label_array, n_classes, bool(normalize), ddof, _threads(threads), run_on
    )
    if bad_row >= 0:
        raise ValueError(f"features row {bad_row} holds NaN or inf")
    return PoolResult(counts, mean, var)
