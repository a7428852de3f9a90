"""One atomic file write for every writer in fennec.

A reader sees the old file or the new one, never half of either, and a write
that returned survives a crash: the bytes go to a temporary file in the target's
folder, are fsynced, renamed over the target, and the folder is fsynced so the
rename itself is durable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["fsync_folder", "write_atomically"]


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[IO[bytes]], object],
    *,
    what: str | None = None,
    durable: bool = True,
) -> None:
    """Writes ``data`` (bytes, text as UTF-8, or a function given the open binary file) to ``path``.

    ``what`` names the output in the error raised when the folder does not exist.
    ``durable=False`` keeps the all-or-nothing rename but skips both fsyncs: only for a
    cache, whose entry lost in a crash is recomputed, and which writes too many small
    files to pay two disk flushes for each.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        label = f"{what}: " if what else ""
        raise ValueError(f"{label}the folder {folder.resolve()} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_folder(folder)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Makes a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
