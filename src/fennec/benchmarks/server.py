"""``fennec serve`` in a child process, and the resident memory of a process and its children (Linux ``/proc``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

__all__ = ["ServerProcess", "free_port", "process_tree", "rss_bytes", "source_pythonpath", "tree_rss_bytes"]


def source_pythonpath(pythonpath: str | None = None) -> str:
    """``PYTHONPATH`` for a child process that imports this fennec: its folder first, then ``pythonpath``."""
    package_root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (package_root, pythonpath) if p)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``; just ``pid`` where it cannot be read)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as fh:
                    todo.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` and its children together (a server and its workers)."""
    sizes = [rss_bytes(p) for p in process_tree(pid)]
    known = [x for x in sizes if x is not None]
    return sum(known) if known else None


class ServerProcess:
    """``python -m fennec serve`` in a child process: started, polled on /healthz until it
    answers, and always stopped (terminate, then kill) when the ``with`` block ends."""

    def __init__(self, zoo: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int | None = None,
                 token: str | None = None, args: tuple[str, ...] = (), startup_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.zoo, self.host, self.port = str(zoo), host, port or free_port(host)
        self.token, self.args, self.startup_timeout = token, tuple(args), startup_timeout
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server has not been started"
        return self.process.pid

    def log(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self) -> ServerProcess:
        """Starts the server and returns once it answers ``/healthz`` (RuntimeError, with
        the end of its log, when it exits or stays silent past ``startup_timeout``)."""
        env = self.env
        if self.token is not None:
            env["FENNEC_TOKEN"] = self.token
        else:
            env.pop("FENNEC_TOKEN", None)
        env["PYTHONPATH"] = source_pythonpath(env.get("PYTHONPATH"))
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fennec", "serve", "--zoo", self.zoo, "--host", self.host,
             "--port", str(self.port), *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert self.process is not None  # started by start(), the only caller
        while True:
            if self.process.poll() is not None:
                log = self.log()
                self.close()
                raise RuntimeError(f"the server exited with status {self.process.returncode}:\n{log[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                log = self.log()
                self.close()
                raise RuntimeError(f"the server did not answer /healthz within {self.startup_timeout} s:\n"
                                   f"{log[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Terminates the server (its workers stop with it), then kills whatever is left."""
        if self.process is not None and self.process.poll() is None:
            children = process_tree(self.process.pid)[1:]
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            for pid in children:  # workers a killed supervisor could not stop
                deadline = time.monotonic() + 5
                while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                    time.sleep(0.05)
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass

    def close(self) -> None:
        """Stops the server and drops its log."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
