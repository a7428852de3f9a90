"""Running a registered model: the one way other code (a budget's forward passes, measuring) gets
a model of the zoo as a feature extractor.

A model registered with ``fennec zoo add-model --onnx PATH`` or ``--torch MODULE:FACTORY``
(:func:`fennec.add_model`) keeps a runnable reference in the zoo beside its archi2vec
embedding: the ONNX file's absolute path and sha256, or the factory's import path, with its
preprocessing (input size, resize, mean/std, pixel scale, channel order, layout) and the
tensor or submodule its features are read from. The packaged catalogue's models need none.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .demozoo.catalogue import CatalogueModel
    from .measure.finetune import TrainableSplit
    from .proxy import Preprocess, Proxy
    from .zoo import Zoo

__all__ = ["finetune_fallback", "load_factory", "model_extractor", "model_trainable", "onnx_spec", "parse_factory",
           "runnable_models", "torch_spec"]

NO_CONVERTER = ("it is an ONNX graph and fennec fine-tunes torch modules only (no ONNX-to-torch converter is "
                "a dependency)")

SPEC_FORMAT = 1
DEFAULT_SIZE = 224


def how_to_register(model_id: str) -> str:
    return (f"register a runnable reference with `fennec zoo add-model ZOO --id {model_id} --onnx PATH` "
            f"(or --torch MODULE:FACTORY; with --replace when the model is already in the zoo), or "
            f"fennec.add_model(zoo, {model_id!r}, 'model.onnx', replace=True)")


def parse_factory(spec: str, what: str = "factory") -> tuple[str, str]:
    """``package.module:factory`` -> (module, factory name); ``what`` names the argument in errors."""
    if not isinstance(spec, str):
        raise TypeError(f"{what}: expected 'package.module:factory', got {type(spec).__name__}")
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"{what}: expected 'package.module:factory', got {spec!r}")
    return module_name, factory_name


def load_factory(spec: str, what: str = "factory") -> Any:
    """``package.module:factory`` -> the torch module the factory returns (called with no arguments)."""
    module_name, factory_name = parse_factory(spec, what)
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what}: cannot load {spec!r}: {error}") from None
    return factory()


def _preprocess(preprocess: Preprocess | Mapping[str, Any] | None, size: tuple[int, int] | None,
                layout: str | None) -> dict[str, Any]:
    from .proxy import Preprocess

    if isinstance(preprocess, Preprocess):
        return preprocess.params()
    options = dict(preprocess or {})
    if "size" not in options and size is not None:
        options["size"] = size
    if "layout" not in options and layout is not None:
        options["layout"] = layout
    options.setdefault("size", DEFAULT_SIZE)
    return Preprocess(**options).params()  # checked now, so a bad setting is refused before anything is stored


def _onnx_input(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """The static (height, width) and layout of an ONNX file's image input, where it declares them."""
    from .proxy.backends import _load_onnx

    model = _load_onnx(path, "registering an ONNX model")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None, None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return None, None
    if dims[1] in (1, 3):
        height, width, layout = dims[2], dims[3], "NCHW"
    elif dims[3] in (1, 3):
        height, width, layout = dims[1], dims[2], "NHWC"
    else:
        return None, None
    return (None if height is None or width is None else (int(height), int(width))), layout


def onnx_spec(path: str | os.PathLike[str], *, preprocess: Preprocess | Mapping[str, Any] | None = None,
              output: str | None = None, tokens: str = "cls") -> dict[str, Any]:
    """The runnable reference of an ONNX file: its absolute path, sha256, size and preprocessing.

    The input size and layout default to what the file's input declares (else 224, NCHW).
    """
    from .proxy.backends import file_sha256

    file = Path(path).resolve()
    if not file.is_file():
        raise ValueError(f"{path}: no such ONNX file")
    static, layout = _onnx_input(file)
    params = _preprocess(preprocess, static, layout)
    stat = file.stat()
    return {"format": SPEC_FORMAT, "kind": "onnx", "path": str(file), "sha256": file_sha256(file),
            "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "output": output, "tokens": tokens,
            "preprocess": params,
            # a file exported at one size runs at another only with its spatial dimensions freed
            "dynamic_size": static is not None and tuple(params["size"]) != static}


def torch_spec(factory: str, *, preprocess: Preprocess | Mapping[str, Any] | None = None,
               output: str | None = None, tokens: str = "cls") -> dict[str, Any]:
    """The runnable reference of a torch module built by ``factory`` (``package.module:function``)."""
    if not isinstance(factory, str) or ":" not in factory:
        raise ValueError(f"factory: expected 'package.module:factory', got {factory!r}")
    return {"format": SPEC_FORMAT, "kind": "torch", "factory": factory, "output": output, "tokens": tokens,
            "preprocess": _preprocess(preprocess, None, None)}


def _onnx_changed(spec: Mapping[str, Any], *, full: bool) -> str | None:
    """Why the registered ONNX file can no longer be used as registered, or None.

    ``full`` compares the sha256; otherwise an unchanged size and mtime are taken as unchanged
    (a hash per model per ranking would cost seconds on large files).
    """
    from .proxy.backends import file_sha256

    path = Path(spec["path"])
    if not path.is_file():
        return f"its ONNX file {path} is gone"
    stat = path.stat()
    if stat.st_size == spec.get("bytes") and stat.st_mtime_ns == spec.get("mtime_ns") and not full:
        return None
    if stat.st_size != spec.get("bytes") or file_sha256(path) != spec["sha256"]:
        return f"its ONNX file {path} changed since it was registered (sha256 {str(spec['sha256'])[:12]}...)"
    return None


def _why_not(model_id: str, spec: Mapping[str, Any]) -> str | None:
    if spec.get("kind") == "onnx":
        changed = _onnx_changed(spec, full=False)
        if changed:
            return f"{changed}; {how_to_register(model_id)}"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install 'fennec[proxy]')"
        return None
    if spec.get("kind") == "torch":
        module = str(spec.get("factory", "")).partition(":")[0]
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install 'fennec[torch]')"
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"its factory's module {module!r} cannot be imported here"
    return f"unknown runnable reference kind {spec.get('kind')!r} (stored by a newer fennec?)"


def extractor_from_spec(model_id: str, spec: Mapping[str, Any], cache_dir: str | os.PathLike[str] | None = None,
                        *, module: Any = None, device: str | None = None, batch_size: int = 64) -> Proxy:
    """The feature extractor a runnable reference describes (``module``: the torch module already
    built, to spare a second call of its factory)."""
    from .proxy import OnnxBackend, Preprocess, Proxy, TorchBackend

    backend: OnnxBackend | TorchBackend
    if spec.get("kind") == "onnx":
        changed = _onnx_changed(spec, full=True)
        if changed:
            raise ValueError(f"model {model_id!r}: {changed}; {how_to_register(model_id)}")
        backend = OnnxBackend(spec["path"], output=spec.get("output"), tokens=spec.get("tokens", "cls"),
                              dynamic_size=bool(spec.get("dynamic_size")))
    elif spec.get("kind") == "torch":
        built = module if module is not None else load_factory(spec["factory"])
        backend = TorchBackend(built, output=spec.get("output"), tokens=spec.get("tokens", "cls"), device=device)
    else:
        raise ValueError(f"model {model_id!r}: {_why_not(model_id, spec)}")
    return Proxy(backend, Preprocess(**spec["preprocess"]), name=model_id, batch_size=batch_size,
                 cache_dir=None if cache_dir is None else Path(cache_dir) / "features")


def check_spec(model_id: str, spec: Mapping[str, Any], *, module: Any = None) -> int:
    """Runs the model once on a blank image; its feature width, or a ValueError saying why it cannot run."""
    try:
        extractor = extractor_from_spec(model_id, spec, module=module)
        features = extractor.features([np.full((32, 32, 3), 128, dtype=np.uint8)])
    except ImportError:
        raise  # no runtime here to check with: the reference is still kept
    except Exception as error:  # onnxruntime and torch raise their own types for a model that cannot run
        raise ValueError(f"model {model_id!r} does not run as registered ({type(error).__name__}: {error}); "
                         "match the preprocessing to the model (input size, layout, --output)") from None
    return int(features.shape[1])


def _catalogue_entry(zoo: Zoo | None, model_id: str) -> CatalogueModel:
    """The packaged catalogue's model of that id, for a model the zoo keeps no runnable reference
    for; a ValueError saying how to register one when the catalogue has none either."""
    from .demozoo.catalogue import CATALOGUE

    entry = next((m for m in CATALOGUE if m.id == model_id), None)
    if entry is None:
        where = f"in {zoo.path}" if zoo is not None else "(no zoo given)"
        raise ValueError(f"model {model_id!r} has no runnable reference {where} and is not a packaged catalogue "
                         f"model: {how_to_register(model_id)}")
    return entry


def model_extractor(zoo: Zoo | None, model_id: str, cache_dir: str | os.PathLike[str] | None = None, *,
                    device: str | None = None, batch_size: int = 64) -> Proxy:
    """A model of the zoo as a feature extractor: ``.features(images) -> (N, D) float32``.

    From the zoo's runnable reference when it keeps one, else the packaged catalogue's model of
    that id; a ValueError says how to register a reference otherwise, and refuses an ONNX file
    whose contents changed since it was registered. ``cache_dir`` holds the feature cache
    (None: none); ``device`` applies to torch models (default :func:`fennec.proxy.backends.default_device`).
    """
    spec = zoo.model_runtimes().get(model_id) if zoo is not None else None
    if spec is not None:
        return extractor_from_spec(model_id, spec, cache_dir, device=device, batch_size=batch_size)
    from .demozoo.catalogue import model_proxy

    return model_proxy(_catalogue_entry(zoo, model_id).id, cache_dir)


def finetune_fallback(zoo: Zoo | None, model_id: str) -> str | None:
    """Why a model is known, without loading it, to have no trainable split here (an ONNX model), else
    None (a torch model; a ``--torch`` one may still turn out not to split: :func:`model_trainable`)."""
    spec = zoo.model_runtimes().get(model_id) if zoo is not None else None
    if spec is not None:
        return NO_CONVERTER if spec.get("kind") == "onnx" else None
    try:
        entry = _catalogue_entry(zoo, model_id)
    except ValueError:
        return None  # nothing known about it: measuring it says why it cannot be run
    return NO_CONVERTER if entry.trainable is None else None


def model_trainable(zoo: Zoo | None, model_id: str, cache_dir: str | os.PathLike[str] | None = None
                    ) -> TrainableSplit:
    """A model of the zoo as a frozen trunk and a trainable tail (for the ``finetune`` kind):
    a ``--torch`` reference split by :func:`fennec.measure.finetune.sequential_split`, a catalogue
    torch model by the split its catalogue entry declares. Raises
    :class:`~fennec.measure.finetune.NotTrainable` (saying why) for a model measured by linear
    probe instead, ValueError for a model that cannot be run at all."""
    from .measure.finetune import NotTrainable, sequential_split

    spec = zoo.model_runtimes().get(model_id) if zoo is not None else None
    if spec is not None:
        if spec.get("kind") == "onnx":
            raise NotTrainable(NO_CONVERTER)
        if spec.get("kind") != "torch":
            raise ValueError(f"model {model_id!r}: {_why_not(model_id, spec)}")
        from .proxy import Preprocess

        return sequential_split(load_factory(spec["factory"]), Preprocess(**spec["preprocess"]),
                                output=spec.get("output"), tokens=spec.get("tokens", "cls"),
                                key=f"torch:{spec['factory']}:{spec.get('output')}:{spec.get('tokens', 'cls')}")
    from .demozoo.catalogue import why_unavailable

    entry = _catalogue_entry(zoo, model_id)
    if entry.trainable is None:
        raise NotTrainable(NO_CONVERTER)
    missing = why_unavailable(entry)
    if missing:
        raise ValueError(f"model {model_id!r} is not installed: {missing}")
    return entry.trainable(cache_dir)


def runnable_models(zoo: Zoo | None, models: Sequence[str]) -> tuple[set[str], dict[str, str]]:
    """The models that can be run here, and why each other one cannot (cheap: no model is loaded)."""
    from .demozoo.catalogue import why_unavailable

    specs = zoo.model_runtimes() if zoo is not None else {}
    runnable: set[str] = set()
    why: dict[str, str] = {}
    for model in models:
        spec = specs.get(model)
        if spec is not None:
            reason = _why_not(model, spec)
        else:
            try:
                missing = why_unavailable(_catalogue_entry(zoo, model))
            except ValueError as error:
                reason = str(error)
            else:
                reason = f"not installed: {missing}" if missing else None
        if reason is None:
            runnable.add(model)
        else:
            why[model] = reason
    return runnable, why
