"""Proxy backends: one interface, ``run(batch) -> (N, D) float32``, over onnxruntime, torch and TensorRT.

A backend turns a preprocessed float32 batch into one feature row per image.
Model outputs are reduced to rows the same way everywhere (:func:`pool_output`):
4-D feature maps are averaged over space, 3-D token sequences give their first
(class) token or their mean.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import numpy as np

from .._atomic import write_atomically
from .._checks import integer
from ._optional import require

__all__ = ["OnnxBackend", "TorchBackend", "TensorRTBackend", "pool_output", "file_sha256", "select_output"]

_TOKENS = ("cls", "mean")


def pool_output(output: Any, *, tokens: str = "cls", channels_last: bool = False) -> np.ndarray:
    """A model output -> (N, D) float32 rows.

    (N,) -> (N, 1); (N, D) as is; (N, T, C) token sequences -> the first token
    (``tokens="cls"``) or the mean over all T tokens (``tokens="mean"``);
    (N, C, H, W) -> global average over H, W ((N, H, W, C) when ``channels_last``).
    """
    output = np.asarray(output)
    if output.ndim == 1:
        output = output[:, None]
    elif output.ndim == 3:
        output = output[:, 0] if tokens == "cls" else output.mean(axis=1)
    elif output.ndim == 4:
        output = output.mean(axis=(1, 2) if channels_last else (2, 3))
    elif output.ndim != 2:
        raise ValueError(f"the model output has shape {output.shape}; expected 1-D to 4-D")
    return np.ascontiguousarray(output, dtype=np.float32)


def _check_tokens(tokens: str) -> str:
    if tokens not in _TOKENS:
        raise ValueError(f"tokens must be 'cls' or 'mean', got {tokens!r}")
    return tokens


def _check_batch(batch: object) -> np.ndarray:
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
        raise TypeError(f"batch must be a float32 numpy array, got "
                        f"{getattr(batch, 'dtype', type(batch).__name__)}")
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise ValueError(f"batch must be a non-empty 4-D image batch, got shape {batch.shape}")
    if not batch.flags.writeable:  # torch.from_numpy warns on read-only memory
        copied: np.ndarray = batch.copy()
        return copied
    return np.ascontiguousarray(batch)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _close_names(name: str, names: Iterable[str], limit: int = 8) -> str:
    names = list(dict.fromkeys(names))
    close = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
    if not close:
        # intermediate tensor names are long paths; match on the last path parts too
        tail = name.rsplit("/", 2)[-1].lower()
        close = [n for n in names if tail and tail in n.lower()][:limit]
    return ", ".join(repr(n) for n in close) if close else "none"


def _subgraph_inputs(node: Any) -> list[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read, outer-scope ones included."""
    names: list[str] = []
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            for inner in graph.node:
                names += [n for n in inner.input if n]
                names += _subgraph_inputs(inner)
    return names


def select_output(model: Any, output: str, *, source: str = "the model", typed: bool = False) -> Any:
    """A copy of an ONNX ModelProto whose only output is the tensor ``output``, pruned to what it needs.

    ``output`` may be a graph output or any intermediate tensor. ValueError, listing
    close names and the graph outputs, when no node produces it. ``typed`` declares
    the new output as float (TensorRT's parser wants a type; onnxruntime infers it).
    """
    onnx = require("onnx", "choosing an ONNX output")
    graph = model.graph
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                producer[name] = index
    graph_outputs = [o.name for o in graph.output]
    graph_inputs = {i.name for i in graph.input}
    if output not in producer and output not in graph_inputs:
        raise ValueError(
            f"output {output!r} is not a tensor of {source}: close names: "
            f"{_close_names(output, list(producer) + graph_outputs)}; graph outputs: {graph_outputs}"
        )
    needed_nodes: set[int] = set()
    seen: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        produced_by = producer.get(name)
        if produced_by is not None and produced_by not in needed_nodes:
            needed_nodes.add(produced_by)
            node = graph.node[produced_by]
            stack += [n for n in node.input if n] + _subgraph_inputs(node)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    new_graph = pruned.graph
    del new_graph.node[:]
    new_graph.node.extend(graph.node[i] for i in sorted(needed_nodes))
    kept_init = [t for t in graph.initializer if t.name in seen]
    del new_graph.initializer[:]
    new_graph.initializer.extend(kept_init)
    kept_inputs = [i for i in graph.input if i.name in seen]
    del new_graph.input[:]
    new_graph.input.extend(kept_inputs)
    known = {v.name: v for v in list(graph.output) + list(graph.value_info)}
    if output in known:
        out_info = known[output]
    elif typed:
        out_info = onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    else:
        out_info = onnx.ValueInfoProto(name=output)
    del new_graph.output[:]
    new_graph.output.append(out_info)
    kept_info = [v for v in graph.value_info if v.name in seen and v.name != output]
    del new_graph.value_info[:]
    new_graph.value_info.extend(kept_info)
    return pruned


def _free_spatial_dims(model: Any, input_name: str | None) -> None:
    """Makes an image input's height and width symbolic so the model runs at other sizes."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers or (input_name and value.name != input_name):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            # (N, C, H, W) when axis 1 holds 1 or 3 channels, else (N, H, W, C)
            spatial = (2, 3) if dims[1].HasField("dim_value") and dims[1].dim_value in (1, 3) else (1, 2)
            for axis, label in zip(spatial, ("height", "width")):
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = label
        return


def _load_onnx(path: Path, purpose: str) -> Any:
    onnx = require("onnx", purpose)
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf decode errors have no common public base class
        raise ValueError(f"path: {path} is not a readable ONNX model: {err}") from None


def _default_providers(ort: ModuleType) -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _onnx_providers(
    ort: ModuleType, providers: Sequence[str | tuple[str, dict[str, Any]]] | None
) -> Sequence[str | tuple[str, dict[str, Any]]]:
    """The execution providers asked for, checked against this onnxruntime; default CUDA, then CPU."""
    available = ort.get_available_providers()
    if providers is None:
        return _default_providers(ort)
    providers = list(providers)
    missing = [p for p in providers if (p[0] if isinstance(p, tuple) else p) not in available]
    if missing or not providers:
        raise ValueError(f"providers: {missing or 'empty list'} not available in this onnxruntime; "
                         f"available: {available}")
    return providers


def _onnx_model_source(path: Path, output: str | None, input_name: str | None, dynamic_size: bool) -> str | bytes:
    """The file's path, or the serialised model once cut at ``output`` or freed in size."""
    if output is None and not dynamic_size:
        return str(path)
    model = _load_onnx(path, "OnnxBackend(output=... or dynamic_size=True)")
    if output is not None and [o.name for o in model.graph.output] != [output]:
        model = select_output(model, output, source=str(path))
    if dynamic_size:
        _free_spatial_dims(model, input_name)
    serialised: bytes = model.SerializeToString()
    return serialised


THREADS_VARIABLE = "FENNEC_THREADS"


def default_threads() -> int | None:
    """The intra-op thread count this process gives its onnxruntime sessions when none is asked for:
    ``FENNEC_THREADS`` (a Ray worker of ``fennec zoo measure`` sets it to the CPUs it holds), else
    None (onnxruntime's own default: one thread per physical core)."""
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE}={value!r}: expected a positive number of threads; "
                         f"unset it to let onnxruntime choose")
    return int(value)


DEVICE_VARIABLE = "FENNEC_DEVICE"


def default_device() -> str:
    """The device a torch model runs on when none is asked for: ``FENNEC_DEVICE`` (``cpu``,
    ``cuda`` or ``cuda:N``; a Ray worker of ``fennec zoo measure --gpus`` sets it to ``cuda``),
    else ``cpu``."""
    value = os.environ.get(DEVICE_VARIABLE, "").strip() or "cpu"
    if value not in ("cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise ValueError(f"{DEVICE_VARIABLE}={value!r}: expected cpu, cuda or cuda:N; unset it to run on the CPU")
    return value


def _onnx_session(ort: ModuleType, path: Path, model_source: str | bytes,
                  providers: Sequence[str | tuple[str, dict[str, Any]]], threads: int | None) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is None:
        threads = default_threads()
    if threads is not None:
        options.intra_op_num_threads = integer(threads, "threads", low=0)
    try:
        return ort.InferenceSession(model_source, options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise ValueError(f"path: {path} could not be loaded by onnxruntime: {err}") from None


def _onnx_image_input(inputs: Sequence[Any], input_name: str | None, path: Path) -> Any:
    """The session input images go to: the named one, or the only one; it must be float."""
    if input_name is None:
        if len(inputs) != 1:
            raise ValueError(f"input_name: {path} has {len(inputs)} inputs "
                             f"({[i.name for i in inputs]}); name the image input")
        image_input = inputs[0]
    else:
        by_name = {i.name: i for i in inputs}
        if input_name not in by_name:
            raise ValueError(f"input_name: {input_name!r} is not an input of {path}; "
                             f"inputs: {list(by_name)}")
        image_input = by_name[input_name]
    if image_input.type not in _ORT_DTYPES:
        raise ValueError(f"{path}: input {image_input.name!r} has type {image_input.type}; "
                         "a float image input is needed")
    return image_input


def _onnx_feature_output(outputs: Sequence[Any], output: str | None, path: Path) -> str:
    """The name of the session output features are read from (the first, or ``output``); it must be float."""
    out = outputs[0] if output is None else next(o for o in outputs if o.name == output)
    if out.type not in _ORT_DTYPES:
        raise ValueError(f"output {out.name!r} of {path} has type {out.type}; "
                         "a float tensor is needed for features")
    name: str = out.name
    return name


class OnnxBackend:
    """Runs an ONNX model with onnxruntime.

    Parameters
    ----------
    path : the .onnx file
    output : optional tensor name
        A graph output, or any intermediate tensor of the graph (the graph is then
        cut, in memory, to end at that tensor). Default: the first graph output.
    input_name : optional; default the graph's only image input
    providers : optional list of onnxruntime execution providers;
        default CUDA first when this onnxruntime has it, then CPU
    tokens : "cls" or "mean", for (N, T, C) token outputs (see :func:`pool_output`)
    channels_last_output : 4-D outputs are (N, H, W, C) rather than (N, C, H, W)
    dynamic_size : make the input's height and width symbolic, so a model exported
        at one size runs at another (works when the graph computes its shapes at
        run time, as DINOv2's position-embedding interpolation does)
    threads : optional onnxruntime intra-op thread count (default: ``FENNEC_THREADS``
        when set, else onnxruntime's choice)
    """

    kind = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, output: str | None = None, input_name: str | None = None,
                 providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None, tokens: str = "cls",
                 channels_last_output: bool = False, dynamic_size: bool = False,
                 threads: int | None = None) -> None:
        ort = require("onnxruntime", "OnnxBackend")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"path: no ONNX file at {self.path}")
        self.tokens = _check_tokens(tokens)
        self.channels_last_output = bool(channels_last_output)
        self.dynamic_size = bool(dynamic_size)
        self._sha256: str | None = None
        providers = _onnx_providers(ort, providers)
        model_source = _onnx_model_source(self.path, output, input_name, self.dynamic_size)
        self._session = _onnx_session(ort, self.path, model_source, providers, threads)
        self.providers = self._session.get_providers()
        image_input = _onnx_image_input(self._session.get_inputs(), input_name, self.path)
        self.input_name = image_input.name
        self.input_shape = [d if isinstance(d, int) else None for d in image_input.shape]
        self._input_dtype = _ORT_DTYPES[image_input.type]
        self.output = _onnx_feature_output(self._session.get_outputs(), output, self.path)

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def identity(self) -> dict[str, Any]:
        """What determines this backend's features (part of the feature cache key)."""
        return {"kind": "onnx", "sha256": self.sha256, "output": self.output, "tokens": self.tokens,
                "channels_last_output": self.channels_last_output}

    def _check_shape(self, batch: np.ndarray) -> None:
        expected = self.input_shape
        if len(expected) != batch.ndim or any(
            e is not None and e != b for e, b in zip(expected[1:], batch.shape[1:])
        ):
            shown = "x".join("?" if e is None else str(e) for e in expected)
            raise ValueError(
                f"batch of shape {batch.shape} does not fit the input {self.input_name!r} of "
                f"{self.path.name} ({shown}); match Preprocess(size=..., layout=...) to the model, "
                "or pass dynamic_size=True if the model allows other sizes"
            )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Feature rows (N, D) float32 of a preprocessed float32 batch."""
        batch = _check_batch(batch)
        self._check_shape(batch)
        fixed = self.input_shape[0]
        chunk = fixed if fixed else len(batch)
        rows = []
        for start in range(0, len(batch), chunk):
            part = batch[start:start + chunk]
            real = len(part)
            if fixed and real < fixed:  # a fixed batch size: pad the last chunk and drop the padding
                part = np.concatenate([part, np.zeros((fixed - real,) + part.shape[1:], part.dtype)])
            out = self._session.run([self.output], {self.input_name: part.astype(self._input_dtype, copy=False)})[0]
            rows.append(pool_output(out, tokens=self.tokens, channels_last=self.channels_last_output)[:real])
        return rows[0] if len(rows) == 1 else np.concatenate(rows)


class _Captured(Exception):
    """Carries a hooked submodule's output out of the forward pass, skipping the layers after it."""

    def __init__(self, value: Any) -> None:
        super().__init__("captured")
        self.value = value


def _capture(_module: Any, _inputs: Any, value: Any) -> NoReturn:
    raise _Captured(value)


class TorchBackend:
    """Runs a torch module (in eval mode, under inference mode).

    ``output`` names a submodule (as in ``module.named_modules()``) whose output
    becomes the features; the forward pass stops there. Default: the module's
    own output (the first element when it returns a tuple). ``channels_last``
    runs the module and its input in channels-last memory format. ``device``:
    ``cpu``, ``cuda`` or ``cuda:N`` (default :func:`default_device`).
    """

    kind = "torch"

    def __init__(self, module: Any, *, output: str | None = None, device: str | None = None, tokens: str = "cls",
                 channels_last_output: bool = False, channels_last: bool = False) -> None:
        torch = require("torch", "TorchBackend")
        if device is None:
            device = default_device()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:n]', got {device!r}")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA GPU")
        self._torch = torch
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        # channels-last memory often runs convolutions faster on CPUs; the numbers are unchanged
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.tokens = _check_tokens(tokens)
        self.channels_last_output = bool(channels_last_output)
        self.output = output
        self._sha256: str | None = None
        self._hooked: Any = None
        if output is not None:
            submodules = dict(module.named_modules())
            if output not in submodules or output == "":
                raise ValueError(f"output {output!r} is not a submodule of {type(module).__name__}: "
                                 f"close names: {_close_names(output, [n for n in submodules if n])}")
            self._hooked = submodules[output]

    def identity(self) -> dict[str, Any]:
        """What determines this backend's features (part of the feature cache key)."""
        if self._sha256 is None:
            digest = hashlib.sha256(type(self.module).__qualname__.encode())
            for name, tensor in self.module.state_dict().items():
                value = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
                digest.update(value.reshape(-1).view(self._torch.uint8).numpy().tobytes())
            self._sha256 = digest.hexdigest()
        return {"kind": "torch", "sha256": self._sha256, "output": self.output, "tokens": self.tokens,
                "channels_last_output": self.channels_last_output}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Feature rows (N, D) float32 of a preprocessed float32 batch."""
        torch = self._torch
        batch = _check_batch(batch)
        x = torch.from_numpy(batch).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # the hook lives only for this call, so the caller's module is left as it was
        handle = None if self._hooked is None else self._hooked.register_forward_hook(_capture)
        try:
            with torch.inference_mode():
                value = self.module(x)
            if handle is not None:
                raise RuntimeError(f"submodule {self.output!r} did not run in the forward pass")
        except _Captured as captured:
            value = captured.value
        finally:
            if handle is not None:
                handle.remove()
        if isinstance(value, (tuple, list)):
            value = value[0]
        if isinstance(value, dict):
            value = next(iter(value.values()))
        return pool_output(value.float().cpu().numpy(), tokens=self.tokens,
                           channels_last=self.channels_last_output)


def _gpu_name(torch: ModuleType) -> str:
    name: str = torch.cuda.get_device_name(torch.cuda.current_device())
    return name


def _tensorrt_and_torch() -> tuple[Any, ModuleType]:
    """The tensorrt and torch modules, or ImportError/RuntimeError saying which is missing."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise ImportError(
            "TensorRTBackend needs NVIDIA's 'tensorrt' Python package (pip install tensorrt, "
            f"from NVIDIA's index, on a machine with an NVIDIA GPU): {err}"
        ) from err
    torch = require("torch", "TensorRTBackend (GPU buffers)")
    if not torch.cuda.is_available():
        raise RuntimeError("TensorRTBackend needs a CUDA GPU, and torch sees none "
                           "(or this torch was built without CUDA)")
    return trt, torch


def _trt_input_name(model: Any, input_name: str | None, path: Path) -> str:
    """The image input: the named one, or the graph's only input that is not an initializer."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if input_name is None:
        if len(inputs) != 1:
            raise ValueError(f"input_name: {path} has inputs {[i.name for i in inputs]}; name one")
        name: str = inputs[0].name
        return name
    if input_name not in {i.name for i in inputs}:
        raise ValueError(f"input_name: {input_name!r} is not an input of {path}")
    return input_name


def _trt_input_shape(model: Any, input_name: str, input_size: tuple[int, int] | None,
                     path: Path) -> tuple[list[int | None], bool]:
    """The 4-D input's shape with ``input_size`` filling a symbolic image size, and whether any
    dimension of the graph's input was symbolic (the engine then needs an optimization profile)."""
    dims = next(i for i in model.graph.input if i.name == input_name).type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4:
        raise ValueError(f"{path}: input {input_name!r} is {len(shape)}-D; a 4-D image batch is needed")
    nchw = shape[1] in (1, 3)
    spatial = (2, 3) if nchw else (1, 2)
    symbolic = any(d is None for d in shape)
    if any(shape[a] is None for a in spatial):
        if input_size is None:
            raise ValueError(f"input_size: {path} has a symbolic image size; give input_size=(h, w)")
        for axis, value, label in zip(spatial, input_size, ("input_size[0]", "input_size[1]")):
            shape[axis] = integer(value, label, low=1)
    return shape, symbolic


class TensorRTBackend:
    """Runs an ONNX model through a TensorRT engine built from it once and cached.

    The serialized engine is written beside the ONNX file (or in ``cache_dir``),
    named by a key over the file's sha256, the chosen output, the GPU name, the
    TensorRT version, the input size, the batch range and the precision; a later
    run with the same key deserializes it instead of building. Needs the
    ``tensorrt`` package and torch with CUDA (its tensors hold the GPU buffers);
    raises ImportError or RuntimeError saying which is missing.

    ``input_size`` (height, width) is required when the ONNX input's spatial
    size is symbolic; ``max_batch`` bounds the engine's batch dimension when that is symbolic.
    """

    kind = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike[str], *, output: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, input_name: str | None = None,
                 input_size: tuple[int, int] | None = None, max_batch: int = 64, fp16: bool = False,
                 tokens: str = "cls", channels_last_output: bool = False,
                 workspace_bytes: int = 1 << 30) -> None:
        trt, torch = _tensorrt_and_torch()
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"onnx_path: no ONNX file at {self.path}")
        self.tokens = _check_tokens(tokens)
        self.channels_last_output = bool(channels_last_output)
        self._trt, self._torch = trt, torch
        self.sha256 = file_sha256(self.path)

        model = _load_onnx(self.path, "TensorRTBackend")
        input_name = _trt_input_name(model, input_name, self.path)
        graph_outputs = [o.name for o in model.graph.output]
        self.output = output if output is not None else graph_outputs[0]
        if graph_outputs != [self.output]:
            model = select_output(model, self.output, source=str(self.path), typed=True)
        self.input_name = input_name
        shape, symbolic = _trt_input_shape(model, input_name, input_size, self.path)
        self.max_batch = integer(max_batch, "max_batch", low=1)
        self.fixed_batch = shape[0]
        self.fp16 = bool(fp16)
        self.engine_path = self._engine_file(cache_dir, shape)
        self._load_engine(model, shape, symbolic, fp16, workspace_bytes)
        self._input_shape = shape
        self._torch_dtype = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        self._input_dtype = self._torch_dtype.get(self._engine.get_tensor_dtype(input_name), torch.float32)
        self._output_dtype = self._torch_dtype.get(self._engine.get_tensor_dtype(self.output), torch.float32)

    def _engine_file(self, cache_dir: str | os.PathLike[str] | None, shape: list[int | None]) -> Path:
        """Where the engine for this model, output, shape, batch range, precision, GPU and TensorRT lives."""
        key_text = json.dumps({
            "onnx": self.sha256, "output": self.output, "input": self.input_name, "shape": shape,
            "max_batch": self.max_batch, "fp16": self.fp16, "gpu": _gpu_name(self._torch),
            "tensorrt": self._trt.__version__,
        }, sort_keys=True)
        key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
        folder = Path(cache_dir) if cache_dir is not None else self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{self.path.stem}.{key}.engine"

    def _load_engine(self, model: Any, shape: list[int | None], symbolic: bool, fp16: bool,
                     workspace_bytes: int) -> None:
        """Deserializes the cached engine, building and caching it first when there is none."""
        trt = self._trt
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        if not self.engine_path.is_file():
            serialized = self._build(trt, logger, model.SerializeToString(), shape, symbolic, fp16,
                                     workspace_bytes)
            write_atomically(self.engine_path, serialized, what="TensorRT engine")
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path}; delete it to rebuild")
        self._context = self._engine.create_execution_context()

    def _build(self, trt: Any, logger: Any, model_bytes: bytes, shape: list[int | None], symbolic: bool,
               fp16: bool, workspace_bytes: int) -> bytes:
        builder = trt.Builder(logger)
        major = int(trt.__version__.split(".")[0])
        # explicit batch is the only mode from TensorRT 10 on, and a flag before it
        flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {self.path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if symbolic:  # any symbolic input dimension needs an optimization profile
            profile = builder.create_optimization_profile()
            rest = tuple(shape[1:])
            if shape[0] is None:
                low, mid, high = 1, max(1, self.max_batch // 2), self.max_batch
            else:
                low = mid = high = shape[0]
            profile.set_shape(self.input_name, (low,) + rest, (mid,) + rest, (high,) + rest)
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {self.path} (see its log above)")
        return bytes(serialized)

    def identity(self) -> dict[str, Any]:
        """What determines this backend's features (part of the feature cache key)."""
        return {"kind": "tensorrt", "sha256": self.sha256, "output": self.output, "tokens": self.tokens,
                "channels_last_output": self.channels_last_output, "fp16": self.fp16}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Feature rows (N, D) float32 of a preprocessed float32 batch."""
        torch = self._torch
        batch = _check_batch(batch)
        expected = self._input_shape
        if any(e is not None and e != b for e, b in zip(expected[1:], batch.shape[1:])):
            raise ValueError(f"batch of shape {batch.shape} does not fit the engine input {expected}")
        chunk = self.fixed_batch or self.max_batch
        rows = []
        stream = torch.cuda.current_stream()
        for start in range(0, len(batch), chunk):
            part = batch[start:start + chunk]
            real = len(part)
            if self.fixed_batch and real < self.fixed_batch:
                part = np.concatenate([part, np.zeros((self.fixed_batch - real,) + part.shape[1:], part.dtype)])
            x = torch.from_numpy(part).to("cuda", dtype=self._input_dtype).contiguous()
            self._context.set_input_shape(self.input_name, tuple(x.shape))
            out_shape = tuple(self._context.get_tensor_shape(self.output))
            y = torch.empty(out_shape, dtype=self._output_dtype, device="cuda")
            self._context.set_tensor_address(self.input_name, x.data_ptr())
            self._context.set_tensor_address(self.output, y.data_ptr())
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            stream.synchronize()
            rows.append(pool_output(y.float().cpu().numpy(), tokens=self.tokens,
                                    channels_last=self.channels_last_output)[:real])
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

