"""What ``fennec bench`` and the benchmarks in ``bench/`` measure with.

:mod:`.synthetic` builds and fits synthetic zoos of any size and random task
queries for them; :mod:`.server` runs ``fennec serve`` in a child process;
:mod:`.loadgen` times rankings in process and loads the HTTP service from a second
process (``python -m fennec.benchmarks.loadgen`` is that load generator).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what __getattr__ imports on first use, for the type checker
    from .loadgen import generate_load, load_test, rank_bodies, rank_latency
    from .server import ServerProcess, free_port, process_tree, rss_bytes, tree_rss_bytes
    from .synthetic import synthetic_zoo, task_queries

__all__ = ["ServerProcess", "free_port", "generate_load", "load_test", "process_tree", "rank_bodies",
           "rank_latency", "rss_bytes", "synthetic_zoo", "task_queries", "tree_rss_bytes"]

# Where each public name lives: imported when first asked for, so that running
# ``python -m fennec.benchmarks.loadgen`` does not import it twice.
_HOMES = {"synthetic_zoo": "synthetic", "task_queries": "synthetic", "ServerProcess": "server",
          "free_port": "server", "process_tree": "server", "rss_bytes": "server", "tree_rss_bytes": "server",
          "generate_load": "loadgen", "load_test": "loadgen", "rank_bodies": "loadgen", "rank_latency": "loadgen"}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fennec.benchmarks' has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)
