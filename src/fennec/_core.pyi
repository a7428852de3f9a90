"""fennec's compiled core (cpp/bindings): fused top-k scoring, per-class pooling, WL graph hashing.

Hand-written and checked against the built module by ``python -m mypy.stubtest fennec._core``.
The functions take arrays as they are (dtype, C order) and refuse anything else
rather than copy; fennec.kernels is the validated interface over them. The module
has the same names with or without CUDA compiled in: without it, device="cuda"
and DeviceMatrix raise ValueError.
"""

from collections.abc import Sequence
from typing import Any, Literal, type_check_only

import numpy as np
import numpy.typing as npt

CUDA_MAX_K: int

class CudaError(RuntimeError):
    """A CUDA runtime failure: out of GPU memory, a failed kernel launch, a lost device."""

@type_check_only
class _pybind11_type(type):
    """pybind11's metaclass of its classes (pybind11_builtins.pybind11_type); typing only."""

class DeviceMatrix(metaclass=_pybind11_type):
    """A model matrix resident in GPU memory."""

    def __init__(self, model_vectors: npt.NDArray[np.float32] | npt.NDArray[np.float16]) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def fp16(self) -> bool: ...
    def topk(
        self, queries: npt.NDArray[np.float32], k: int, metric: Literal[0, 1], skip: npt.NDArray[np.uint8] | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], int]: ...
    def stream_read(self) -> int: ...

def build_info() -> dict[str, Any]: ...
def cuda_device_count() -> int: ...
def set_simd_level(name: str) -> None: ...
def topk(
    model_vectors: npt.NDArray[np.float32] | npt.NDArray[np.float16],
    queries: npt.NDArray[np.float32],
    k: int,
    metric: Literal[0, 1],
    skip: npt.NDArray[np.uint8] | None,
    threads: int,
    device: Literal["cpu", "cuda"],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], int]: ...
def stream_read(model_vectors: npt.NDArray[np.float32] | npt.NDArray[np.float16], threads: int) -> float: ...
def pool(
    features: npt.NDArray[np.float32] | npt.NDArray[np.float16],
    labels: npt.NDArray[np.int64],
    n_classes: int,
    normalize: bool,
    ddof: int,
    threads: int,
    device: Literal["cpu", "cuda"],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], int]: ...
def wl_features(
    graph_offsets: npt.NDArray[np.int64],
    node_labels: npt.NDArray[np.uint64],
    edge_offsets: npt.NDArray[np.int64],
    edges_src: npt.NDArray[np.int64],
    edges_dst: npt.NDArray[np.int64],
    iterations: int,
    dim: int,
    direction: Literal[0, 1, 2],
    threads: int,
) -> npt.NDArray[np.float32]: ...
def wl_hash_labels(labels: Sequence[str]) -> npt.NDArray[np.uint64]: ...
