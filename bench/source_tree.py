"""Lets a bench script import fennec from this checkout when it is built in place.

The checkout's ``src`` goes first on the path only when it holds the compiled core
(``src/fennec/_core.*.so`` or ``.pyd``; the ``_core.pyi`` stub is always there): an
unbuilt source tree first on the path would hide the installed fennec.
"""

from __future__ import annotations

import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"


def use_source_tree() -> None:
    if any(p.suffix in (".so", ".pyd") for p in (SOURCE / "fennec").glob("_core*")):
        sys.path.insert(0, str(SOURCE))
