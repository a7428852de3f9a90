"""How fast ranking answers, in process and over HTTP.

``rank_latency`` times :func:`fennec.rank` with precomputed task features.
``load_test`` starts the real service (``python -m fennec serve``) in its own
process, drives it from a second process (the keep-alive HTTP/1.1 client below, or
``wrk`` when asked for) and samples the server's resident memory.

Run as ``python -m fennec.benchmarks.loadgen --url URL --clients N --duration S --bodies F``
it is that load generator: N connections, each sending the next body as soon as
the previous answer is read, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._checks import integer
from ..ranking import rank
from ..zoo import Zoo
from .server import ServerProcess, source_pythonpath, tree_rss_bytes
from .synthetic import task_queries

__all__ = ["generate_load", "load_test", "main", "rank_bodies", "rank_latency"]

ENGINES = ("auto", "wrk", "asyncio")
# The fitted array of a zoo fitted with task descriptors that holds its tasks' descriptors.
DESCRIPTORS = "task_descriptor_descriptors"


def _percentiles(seconds: Iterable[float]) -> dict[str, float | None]:
    values = np.asarray(seconds, dtype=float) * 1e3
    if values.size == 0:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(values.max()), 3), "mean_ms": round(float(values.mean()), 3)}


def rank_latency(zoo: Zoo, *, queries: int = 2000, k: int = 10, where: Mapping[str, object] | None = None,
                 seed: int = 0, warmup: int = 50) -> dict[str, Any]:
    """Times ``fennec.rank(zoo, task, k=k, where=where)`` over ``queries`` precomputed random tasks."""
    integer(queries, "queries", low=1)
    arrays, meta = zoo.read_fitted()
    tasks = task_queries(meta, queries + warmup, seed=seed, descriptors=arrays.get(DESCRIPTORS))
    for task in tasks[:warmup]:
        rank(zoo, task, k=k, where=where)
    times = []
    for task in tasks[warmup:]:
        start = time.perf_counter()
        rank(zoo, task, k=k, where=where)
        times.append(time.perf_counter() - start)
    return {"queries": queries, "k": k, "models": len(zoo.read_fitted()[0]["model_ids"]), **_percentiles(times)}


def rank_bodies(meta: Mapping[str, Any], n: int = 1000, *, k: int = 10, seed: int = 0,
                descriptors: np.ndarray | None = None) -> list[bytes]:
    """``n`` JSON bodies for POST /rank with random precomputed task features (and, for a zoo
    fitted with task descriptors, one of its ``descriptors`` jittered; see :func:`task_queries`)."""
    return [json.dumps({"task": task, "k": k}).encode()
            for task in task_queries(meta, n, seed=seed, descriptors=descriptors)]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str,
                    body: bytes) -> tuple[int, bytes]:
    """One POST on a keep-alive connection: its status and the answer's body."""
    writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ValueError("the answer has no Content-Length")
    return status, await reader.readexactly(length)


async def _connection(host: str, port: int, path: str, bodies: list[bytes], offset: int, deadline: float,
                      latencies: list[float], counters: dict[str, int], check_every: int) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    i = offset
    while time.perf_counter() < deadline:
        body = bodies[i % len(bodies)]
        i += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None  # opened with the writer
            start = time.perf_counter()
            status, payload = await _exchange(reader, writer, host, path, body)
            latencies.append(time.perf_counter() - start)
            if not 200 <= status < 300:
                counters["non_2xx"] += 1
            elif check_every and i % check_every == 0 and "rows" not in json.loads(payload):
                counters["bad_answers"] += 1
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            counters["errors"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _generate(url: str, clients: int, duration: float, bodies: list[bytes], path: str,
                    check_every: int) -> dict[str, Any]:
    host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
    latencies: list[float] = []
    counters = {"errors": 0, "non_2xx": 0, "bad_answers": 0}
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_connection(host, int(port or 80), path, bodies, c * 7919, deadline, latencies,
                                       counters, check_every) for c in range(clients)))
    elapsed = time.perf_counter() - started
    return {"engine": "asyncio", "clients": clients, "duration_s": round(elapsed, 3), "requests": len(latencies),
            **counters, "throughput_rps": round(len(latencies) / elapsed, 1), **_percentiles(latencies)}


def generate_load(url: str, *, clients: int, duration: float, bodies: list[bytes], path: str = "/rank",
                  check_every: int = 100) -> dict[str, Any]:
    """Drives ``url`` from this process: ``clients`` keep-alive connections, each sending the
    next body when the previous answer is in, for ``duration`` seconds; latency percentiles."""
    integer(clients, "clients", low=1)
    if duration <= 0 or not bodies:
        raise ValueError("generate_load: needs duration > 0 and at least one body")
    try:
        import uvloop  # a cheaper event loop leaves more of the machine to the server
    except ImportError:
        pass
    else:
        return uvloop.run(_generate(url, clients, duration, bodies, path, check_every))
    return asyncio.run(_generate(url, clients, duration, bodies, path, check_every))


# Appended to the bodies table: cycles through it, and prints wrk's numbers as one JSON line.
_WRK_SCRIPT = (
    "}\nlocal i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
    "  return wrk.format(nil, nil, nil, bodies[i])\nend\n"
    "done = function(summary, latency, requests)\n"
    '  io.write(string.format("JSON {\\"requests\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, '
    '\\"p99_us\\": %d, \\"max_us\\": %d, \\"mean_us\\": %f, \\"connect\\": %d, \\"read\\": %d, '
    '\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"duration_us\\": %d}\\n", '
    "summary.requests, latency:percentile(50), latency:percentile(90), latency:percentile(99), "
    "latency.max, latency.mean, summary.errors.connect, summary.errors.read, summary.errors.write, "
    "summary.errors.status, summary.errors.timeout, summary.duration))\nend\n")


def _wrk(url: str, clients: int, duration: float, bodies: list[bytes], path: str) -> dict[str, Any]:
    """The same load with wrk (one thread); its latency percentiles and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        script = fh.name
        fh.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal bodies = {\n')
        for body in bodies:
            fh.write(f"  {json.dumps(body.decode())},\n")
        fh.write(_WRK_SCRIPT)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                              "-s", script, url.rstrip("/") + path], capture_output=True, text=True,
                             timeout=duration + 60)
    finally:
        os.unlink(script)
    line = next((x for x in out.stdout.splitlines() if x.startswith("JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")
    raw = json.loads(line[5:])
    elapsed = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {"engine": "wrk", "clients": clients, "duration_s": round(elapsed, 3), "requests": raw["requests"],
            "errors": errors, "non_2xx": raw["status"], "bad_answers": 0,
            "throughput_rps": round(raw["requests"] / elapsed, 1),
            **{f"{name}_ms": round(raw[f"{name}_us"] / 1e3, 3) for name in ("p50", "p90", "p99", "max", "mean")}}


def _generator_process(url: str, clients: int, bodies_file: Path) -> Callable[[float], dict[str, Any]]:
    """Runs of the asyncio generator in a process of its own, ``seconds`` long each."""

    def drive(seconds: float) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "fennec.benchmarks.loadgen", "--url", url, "--clients",
                              str(clients), "--duration", str(seconds), "--bodies", str(bodies_file)],
                             capture_output=True, text=True, timeout=seconds + 120,
                             env={**os.environ, "PYTHONPATH": source_pythonpath(os.environ.get("PYTHONPATH"))})
        if out.returncode != 0:
            raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])  # generate_load's numbers
        return result

    return drive


class _RssSampler:
    """The resident memory of ``pid`` and its children: at the start of the ``with`` block,
    at its end, and the largest of the samples taken every 0.25 s in between."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss: dict[str, int | None] = {"start": None, "max": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            # "max" starts at 0 and only grows: never None
            self.rss["max"] = max(cast(int, self.rss["max"]), tree_rss_bytes(self.pid) or 0)

    def __enter__(self) -> _RssSampler:
        self.rss["start"] = tree_rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.rss["end"] = tree_rss_bytes(self.pid)

    def megabytes(self) -> dict[str, float | None]:
        return {key: None if value is None else round(value / 2**20, 1) for key, value in self.rss.items()}


def load_test(zoo: str | os.PathLike[str], *, clients: int = 64, duration: float = 30.0, engine: str = "auto",
              warmup: float = 2.0, k: int = 10, seed: int = 0, bodies: int = 1000,
              server_args: tuple[str, ...] = (), workers: int = 1) -> dict[str, Any]:
    """Starts the service on ``zoo`` with ``workers`` processes, warms it up, then loads
    ``POST /rank`` from a second process for ``duration`` seconds; returns the generator's
    numbers with the server's RSS, its workers included (start: after the warm-up; end:
    after the run; max: sampled every 0.25 s)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected 'auto', 'wrk' or 'asyncio', got {engine!r}")
    if engine == "auto":
        # The asyncio generator (on uvloop when installed) costs the shared cores less than
        # wrk's Lua request hook, so it disturbs the server less on a small machine.
        engine = "asyncio"
    elif engine == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("engine 'wrk': wrk is not installed (apt-get install wrk), use engine='asyncio'")
    with Zoo.open(zoo) as opened:
        arrays, meta = opened.read_fitted()
        n_models = int(len(arrays["model_ids"]))
    descriptors = arrays.get(DESCRIPTORS)
    # A descriptor makes a body some 30 KB: fewer distinct ones, cycled, keep the file small.
    payloads = rank_bodies(meta, bodies if descriptors is None else min(bodies, 100), k=k, seed=seed,
                           descriptors=descriptors)
    server_args = (*server_args, "--workers", str(workers)) if workers != 1 else tuple(server_args)
    with tempfile.TemporaryDirectory() as scratch, ServerProcess(zoo, args=server_args) as server:
        bodies_file = Path(scratch) / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(payloads) + b"\n")
        drive = (functools.partial(_wrk, server.url, clients, bodies=payloads, path="/rank") if engine == "wrk"
                 else _generator_process(server.url, clients, bodies_file))
        if warmup > 0:
            drive(warmup)
        with _RssSampler(server.pid) as sampler:
            result = drive(duration)
        assert server.process is not None  # started by the with statement
        alive = server.process.poll() is None
    mb = sampler.megabytes()
    return {**result, "models": n_models, "k": k, "workers": workers, "server_alive": alive, "rss_start_mb": mb["start"],
            "rss_end_mb": mb["end"], "rss_max_mb": mb["max"], "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    """The load generator's command line; prints one JSON line of results."""
    parser = argparse.ArgumentParser(prog="python -m fennec.benchmarks.loadgen",
                                     description="Load generator: POSTs bodies to URL/rank over keep-alive "
                                                 "connections and prints one JSON line of results.")
    parser.add_argument("--url", required=True, help="http://host:port of the service")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--bodies", required=True, help="a file of JSON bodies, one per line")
    parser.add_argument("--path", default="/rank")
    args = parser.parse_args(argv)
    bodies = [line for line in Path(args.bodies).read_bytes().splitlines() if line.strip()]
    print(json.dumps(generate_load(args.url, clients=args.clients, duration=args.duration, bodies=bodies,
                                   path=args.path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
