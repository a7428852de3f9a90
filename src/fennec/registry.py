"""Registering a model in a zoo with its architecture, so it can be ranked with no history."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .zoo import Zoo, ZooError

__all__ = ["add_model"]


def add_model(zoo: Zoo, model_id: str, source: Any = None, *, example_input: Any = None,
              metadata: Mapping[str, Any] | None = None, replace: bool = False) -> dict[str, Any]:
    """Adds a model's metadata row and, when ``source`` is given, its archi2vec embedding.

    ``source`` is a ``torch.nn.Module`` or the path of an ONNX file; its graph is
    embedded before anything is written, so a model that cannot be traced
    leaves the zoo unchanged. The next :func:`fennec.fit` uses the embedding as
    side information once every model of the zoo has one.
    """
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model_id: expected a non-empty string, got {model_id!r}")
    summary: dict[str, Any] = {"model": model_id}
    vector = None
    if source is not None:
        from . import archi2vec

        if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
            raise ZooError(f"{source}: no such ONNX file for model {model_id!r}")
        graph = archi2vec.graph_of(source, example_input, name=model_id)
        vector = archi2vec.embed([graph])[0]
        summary.update({"route": graph.route, "nodes": len(graph.labels), "embedding_dim": int(len(vector))})
    zoo.add_models([{"id": model_id, **(metadata or {})}], replace=replace)
    if vector is not None:
        zoo.set_model_embeddings({model_id: vector})
    return summary
