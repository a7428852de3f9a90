"""fennec: recommends which pre-trained model to fine-tune for a new task."""

from __future__ import annotations

from . import archi2vec, kernels, metrics
from .kernels import build_info, pool, topk, wl_features
from .fitting import fit
from .measure import measure  # the function; its modules stay importable as fennec.measure.*
from .ranking import Ranker, Ranking, rank
from .space import TransferSpace
from .registry import add_model, add_task
from .zoo import Zoo, ZooError

__version__ = "0.1.0"

__all__ = [
    "Ranker",
    "Ranking",
    "TransferSpace",
    "Zoo",
    "ZooError",
    "__version__",
    "add_model",
    "add_task",
    "archi2vec",
    "build_info",
    "fit",
    "kernels",
    "measure",
    "metrics",
    "pool",
    "rank",
    "topk",
    "wl_features",
]
