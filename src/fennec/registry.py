"""Registering models and past tasks in a zoo: a model with its architecture (so it can be ranked
with no history) and a way to run it; a past task from its images (so a new task is placed among
the known ones by its descriptor)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._checks import identifier
from .zoo import Zoo, ZooError

if TYPE_CHECKING:
    from .proxy import Preprocess

__all__ = ["add_model", "add_task", "folder_digest"]

DEFAULT_PER_CLASS = 50  # as `fennec rank --images` samples a new task, so the descriptors compare alike


def add_model(zoo: Zoo, model_id: str, source: Any = None, *, example_input: Any = None,
              metadata: Mapping[str, Any] | None = None, replace: bool = False, factory: str | None = None,
              preprocess: Preprocess | Mapping[str, Any] | None = None, output: str | None = None,
              tokens: str = "cls") -> dict[str, Any]:
    """Adds a model's metadata row and, when ``source`` is given, its archi2vec embedding and a
    runnable reference.

    ``source`` is a ``torch.nn.Module`` or the path of an ONNX file; ``factory``
    (``"package.module:function"``, called with no arguments) builds the module instead and is
    kept as its runnable reference (a module object passed as ``source`` alone keeps none; given
    with ``factory``, it is taken as the module the factory builds). An ONNX
    file is kept by absolute path and sha256. ``preprocess`` (a :class:`fennec.proxy.Preprocess`
    or its keyword arguments; size and layout default to the ONNX input's, else 224 and NCHW),
    ``output`` (an ONNX tensor or a torch submodule; default the model's output) and ``tokens``
    say how features are read (see :mod:`fennec.runnable`). The model is run once on a blank
    image; one that cannot run keeps its embedding but no reference, and ``runnable_error``
    says why. Everything is computed before anything is written, so a model that cannot be
    traced leaves the zoo unchanged. A model already stored is refused unless ``replace=True``
    (metadata given then replaces those fields, others are kept), or unless its row is bare (no
    metadata, embedding or reference: an id a history import added).
    """
    from . import runnable as runnable_module

    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model_id: expected a non-empty string, got {model_id!r}")
    if factory is not None and isinstance(source, (str, os.PathLike)):
        raise ValueError("source, factory: give an ONNX path or a factory, not both")
    stored = zoo.models_by_id([model_id]).get(model_id)
    if stored is not None and not replace:
        if not _bare(zoo, stored):  # refused before the graph is traced and the model run
            raise ZooError(f"add_model: id {model_id!r} is already in the zoo (pass replace=True to update it)")
        replace = True  # an id a history import added: nothing stored to overwrite
    summary: dict[str, Any] = {"model": model_id}
    spec = None
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise ZooError(f"{source}: no such ONNX file for model {model_id!r}")
    if factory is not None:
        spec = runnable_module.torch_spec(factory, preprocess=preprocess, output=output, tokens=tokens)
        if source is None:  # a module given with its factory is the one the factory built
            source = runnable_module.load_factory(factory)
    elif isinstance(source, (str, os.PathLike)):
        spec = runnable_module.onnx_spec(source, preprocess=preprocess, output=output, tokens=tokens)
    vector = None
    if source is not None:
        from . import archi2vec

        graph = archi2vec.graph_of(source, example_input, name=model_id)
        vector = archi2vec.embed([graph])[0]
        summary.update({"route": graph.route, "nodes": len(graph.labels), "embedding_dim": int(len(vector))})
        summary["runnable"] = False
        if spec is None:
            summary["runnable_error"] = ("a module object keeps no runnable reference; pass "
                                         "factory='package.module:function'")
    if spec is not None:
        try:
            spec["dim"] = runnable_module.check_spec(model_id, spec, module=None if factory is None else source)
            summary.update({"runnable": True, "reference": spec.get("path") or spec.get("factory"),
                            "feature_dim": spec["dim"], "preprocess": spec["preprocess"]})
        except ImportError as error:  # no runtime here to check with: kept, and said so
            summary.update({"runnable": True, "reference": spec.get("path") or spec.get("factory"),
                            "preprocess": spec["preprocess"], "unchecked": str(error)})
        except ValueError as error:
            summary["runnable_error"] = str(error)
            spec = None
    row = {"id": model_id, **(metadata or {})}
    if stored is not None:
        kept = {k: v for k, v in stored.items() if k not in ("id", "extra") and v is not None}
        row = {**kept, **stored["extra"], **row}
    zoo.add_models([row], replace=replace)
    if vector is not None:
        zoo.set_model_embeddings({model_id: vector})
    if source is not None:
        zoo.set_model_runtime(model_id, spec)  # None removes a reference to the model this one replaces
    return summary


def _bare(zoo: Zoo, row: Mapping[str, Any]) -> bool:
    """Whether a stored model is an id only: no metadata, architecture embedding or runnable reference."""
    model = row["id"]
    return (all(v is None for k, v in row.items() if k not in ("id", "extra")) and not row["extra"]
            and model not in zoo.model_embeddings() and model not in zoo.model_runtimes())


def _task_files(folder: Path) -> list[Path]:
    """A task folder's image files as :func:`fennec.proxy.load_images` reads them, by relative path."""
    from .proxy.images import _image_files

    files = [f for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
             for f in _image_files(d)]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


def _folder_stamp(folder: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes: a cheap check that a folder did not change while it was read."""
    return [(f.relative_to(folder).as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in _task_files(folder)]


def folder_digest(root: str | os.PathLike[str]) -> tuple[str, int]:
    """sha256 over a task folder's image files (sorted relative paths, sizes and bytes: content, so
    any change is seen) and the number of files, as :func:`fennec.proxy.load_images` lists them."""
    folder = Path(root)
    files = _task_files(folder)
    digest = hashlib.sha256(b"fennec task folder 1\0")
    for file in files:
        name = file.relative_to(folder).as_posix().encode()
        digest.update(len(name).to_bytes(8, "little") + name + file.stat().st_size.to_bytes(8, "little"))
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest(), len(files)


def add_task(zoo: Zoo, task_id: str, images_dir: str | os.PathLike[str], per_class: int | None = DEFAULT_PER_CLASS,
             *, seed: int = 0, strict: bool = False, replace: bool = False,
             cache_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Adds a past task from its images (``images_dir/<class>/<image>``, at least two classes).

    The images (``per_class`` per class, drawn with ``seed``; None: all) are embedded by the
    zoo's proxy (its ``proxy`` setting, else the default proxy, which then becomes the
    setting) into the task's descriptor; its class count, image count, the folder's absolute
    path and content digest are stored with it. A task of that id that has no descriptor yet
    (one a history import added) is filled in. Adding the same folder again, unchanged, is a
    no-op (``outcome`` ``"unchanged"``); a changed folder or other sampling is refused unless
    ``replace=True``. ``cache_dir``: the proxy's cache (default :func:`fennec.proxy.proxy_cache_dir`).
    Returns a summary: task, outcome, n_classes, n_train, images embedded, path, digest, proxy.
    """
    from .proxy import DEFAULT_PROXY, proxy_cache_dir, task_from_images
    from .proxy.images import check_task_folder

    task_id = identifier(task_id, "task_id")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class: expected a positive number of images or None (all), got {per_class!r}")
    check_task_folder(images_dir)
    path = Path(images_dir).resolve()
    stamp = _folder_stamp(path)
    digest, files = folder_digest(path)
    proxy = zoo.setting("proxy") or DEFAULT_PROXY
    source = {"path": str(path), "digest": digest, "files": files, "per_class": per_class, "seed": seed,
              "proxy": proxy}
    summary: dict[str, Any] = {"task": task_id, **source}
    stored = zoo.task_images().get(task_id)
    if stored is not None:
        changed = [f"{key} {stored.get(key)!r} -> {value!r}" for key, value in source.items()
                   if key != "files" and stored.get(key) != value]
        if not changed:
            row = next(t for t in zoo.tasks() if t["id"] == task_id)
            return {**summary, "outcome": "unchanged", "n_classes": row["n_classes"], "n_train": row["n_train"]}
        if not replace:
            shown = "; ".join(c if not c.startswith("digest") else
                              f"the folder's content changed ({stored.get('files')} -> {files} image files)"
                              for c in changed)
            raise ZooError(f"task {task_id!r}: already added from {stored.get('path')}, and {shown} "
                           "(pass replace=True to embed it again)")
    task, images = task_from_images(path, proxy=proxy, per_class=per_class, seed=seed, strict=strict,
                                    cache_dir=proxy_cache_dir(cache_dir), progress=progress)
    if _folder_stamp(path) != stamp:
        raise ZooError(f"{path}: changed while its images were embedded; nothing stored, add it again")
    outcome = zoo.set_task_images(task_id, n_classes=task["n_classes"], n_train=task["n_train"],
                                  descriptor=task["descriptor"], source=source, proxy=proxy, replace=replace)
    return {**summary, "outcome": outcome, "n_classes": task["n_classes"], "n_train": task["n_train"],
            "images": len(images), "skipped_files": list(images.skipped_files), "notes": list(images.notes)}
