"""MobileNetV2 as an ONNX graph built straight from torchvision's checkpoint, without torch.

The proxy then needs onnx and onnxruntime only (a few tens of MB) rather than torch
(hundreds): the checkpoint's pickle is read by a restricted unpickler that rebuilds
numpy arrays and nothing else, and the graph is written node by node with
``onnx.helper``. It computes what :class:`fennec.proxy.mobilenet_v2.MobileNetV2Embedding`
computes (outputs ``features`` (N, 1280) and ``logits`` (N, 1000)); the proxy tests
check the two agree.
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._optional import require

__all__ = ["INVERTED_RESIDUAL_SETTING", "mobilenet_v2_graph", "read_torch_state_dict"]

# (expansion t, output channels c, repeats n, first stride s), table 2 of Sandler et al. (CVPR 2018)
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FEATURE_DIM = 1280
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default, which the checkpoint was trained with

_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    def __init__(self, dtype: type) -> None:
        self.dtype = np.dtype(dtype)


class _Tensor:
    """A tensor whose storage bytes may not have been read yet (legacy files put them after the pickle)."""

    def __init__(self, storage: tuple[str, np.dtype[Any]], offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.key, self.dtype = storage
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)

    def array(self, storages: dict[str, np.ndarray]) -> np.ndarray:
        flat = storages[self.key]
        if not self.size:
            return np.array(flat[self.offset])
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage: tuple[str, np.dtype[Any]], offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """Rebuilds a state dict's tensors as :class:`_Tensor` records; any other object is refused."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storage_dtypes: dict[str, np.dtype[Any]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only a state dict of tensors is read")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        key = str(pid[2])
        self.storage_dtypes[key] = pid[1].dtype
        return key, pid[1].dtype


def _unpickle(file: IO[bytes]) -> tuple[Any, dict[str, np.dtype[Any]]]:
    unpickler = _StateDictUnpickler(file)
    return unpickler.load(), unpickler.storage_dtypes


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A ``torch.save``-d state dict (legacy or zip format) as numpy arrays, without torch."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickled = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            root = pickled[: -len("data.pkl")]
            with archive.open(pickled) as fh:
                state, dtypes = _unpickle(fh)
            storages = {key: np.frombuffer(archive.read(f"{root}data/{key}"), dtype=dtype)
                        for key, dtype in dtypes.items()}
    else:
        with open(path, "rb") as fh:
            if pickle.load(fh) != _LEGACY_MAGIC:  # noqa: S301 - plain ints and dicts, checked below
                raise ValueError(f"{path}: not a torch checkpoint")
            pickle.load(fh)  # noqa: S301 - the protocol version
            info = pickle.load(fh)  # noqa: S301 - {"little_endian": ..., "type_sizes": ...}
            if not isinstance(info, dict) or not info.get("little_endian", sys.byteorder == "little"):
                raise ValueError(f"{path}: a big-endian checkpoint is not supported")
            state, dtypes = _unpickle(fh)
            keys = pickle.load(fh)  # noqa: S301 - the storage keys, in the order their bytes follow
            storages = {}
            for key in keys:
                dtype = dtypes[str(key)]
                count = int.from_bytes(fh.read(8), "little")
                storages[str(key)] = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {str(name): value.array(storages) for name, value in state.items() if isinstance(value, _Tensor)}


def mobilenet_v2_graph(state: dict[str, np.ndarray], *, opset: int = 17) -> Any:
    """The ONNX model (``onnx.ModelProto``) of MobileNetV2 with ``state``'s weights: input ``input``
    (N, 3, H, W), outputs ``features`` and ``logits``; each BatchNorm folded into its convolution."""
    onnx = require("onnx", "building MobileNetV2 as ONNX")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes: list[Any] = []
    weights: list[Any] = []
    counter = iter(range(1_000_000))

    def constant(name: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def conv_bn(x: str, prefix: str, bn: str, *, stride: int = 1, groups: int = 1, relu6: bool = True) -> str:
        """torch's Conv2d (no bias) then BatchNorm2d in eval mode, as one biased convolution."""
        kernel = state[f"{prefix}.weight"].astype(np.float32)
        scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + np.float32(BN_EPSILON))
        bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
        pad = (kernel.shape[-1] - 1) // 2
        out = f"t{next(counter)}"
        nodes.append(helper.make_node(
            "Conv", [x, constant(f"{prefix}.w", kernel * scale[:, None, None, None]), constant(f"{prefix}.b", bias)],
            [out], strides=[stride, stride], pads=[pad] * 4, group=groups, kernel_shape=list(kernel.shape[-2:])))
        if not relu6:
            return out
        clipped = f"t{next(counter)}"
        nodes.append(helper.make_node("Clip", [out, "zero", "six"], [clipped]))
        return clipped

    constant("zero", np.array(0.0))
    constant("six", np.array(6.0))

    def conv_bn_relu6(x: str, index: str, *, stride: int = 1, groups: int = 1) -> str:  # children 0 conv, 1 bn
        return conv_bn(x, f"{index}.0", f"{index}.1", stride=stride, groups=groups)

    x = conv_bn_relu6("input", "features.0", stride=2)
    in_channels, block = 32, 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = in_channels * t
            prefix, j, y = f"features.{block}.conv", 0, x
            if t != 1:
                y = conv_bn_relu6(y, f"{prefix}.{j}")
                j += 1
            y = conv_bn_relu6(y, f"{prefix}.{j}", stride=stride, groups=hidden)
            y = conv_bn(y, f"{prefix}.{j + 1}", f"{prefix}.{j + 2}", relu6=False)
            if stride == 1 and in_channels == c:
                summed = f"t{next(counter)}"
                nodes.append(helper.make_node("Add", [x, y], [summed]))
                y = summed
            x, in_channels, block = y, c, block + 1
    x = conv_bn_relu6(x, f"features.{block}")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    nodes.append(helper.make_node("Gemm", ["features", constant("classifier.w", state["classifier.1.weight"]),
                                           constant("classifier.b", state["classifier.1.bias"])],
                                  ["logits"], transB=1))
    float_type = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "mobilenet_v2", [helper.make_tensor_value_info("input", float_type, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("features", float_type, ["batch", FEATURE_DIM]),
         helper.make_tensor_value_info("logits", float_type, ["batch", state["classifier.1.bias"].shape[0]])],
        initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fennec")
    onnx.checker.check_model(model)
    return model
