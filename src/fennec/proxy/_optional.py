"""Lazy imports of the optional dependencies, with the pip extra that brings each."""

from __future__ import annotations

import importlib
from types import ModuleType

_EXTRA = {"onnxruntime": "proxy", "onnx": "proxy", "PIL": "proxy", "tqdm": "proxy", "torch": "torch"}
_PIP_NAME = {"PIL": "pillow"}


def require(module: str, purpose: str) -> ModuleType:
    """Imports ``module`` or raises ImportError saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = _EXTRA.get(top)
        how = f"pip install 'fennec[{extra}]'" if extra else f"pip install {_PIP_NAME.get(top, top)}"
        raise ImportError(
            f"{purpose} needs the {_PIP_NAME.get(top, top)!r} package: {how} ({err})"
        ) from err
