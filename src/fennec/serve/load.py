"""How fast ranking answers, in process and over HTTP, on a synthetic zoo of any size.

``synthetic_zoo`` builds and fits a zoo of ``n_models`` models: each has a family
and a size, each task a class count and a training-set size, and each model is
measured on a few tasks (a sparse history) with scores made of a model quality,
a size-by-data-size interaction and noise. ``rank_latency`` times
:func:`fennec.rank` with precomputed task features. ``load_test`` starts the real
service (``python -m fennec serve``) in its own process, drives it from a second
process (the keep-alive HTTP/1.1 client below, or ``wrk`` when asked for) and
samples the server's resident memory.

Run as ``python -m fennec.serve.load --url URL --clients N --duration S --bodies F``
it is that load generator: N connections, each sending the next body as soon as
the previous answer is read, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["ServerProcess", "free_port", "generate_load", "load_test", "process_tree", "rank_bodies",
           "rank_latency", "rss_bytes", "synthetic_zoo", "task_queries", "tree_rss_bytes"]

FAMILIES = ("resnet", "vit", "convnext", "swin", "efficientnet", "mobilenet", "deit", "regnet")


def synthetic_zoo(path: str | os.PathLike, *, n_models: int = 100_000, n_tasks: int = 20,
                  results_per_model: int = 5, seed: int = 0, fit: bool = True,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Creates and fits a synthetic zoo at ``path``; returns its sizes and the seconds each step took."""
    from ..history import History
    from ..recommend import fit as fit_zoo
    from ..zoo import Zoo

    for name, value, low in (("n_models", n_models, 1), ("n_tasks", n_tasks, 2),
                             ("results_per_model", results_per_model, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    step = progress or (lambda _: None)
    rng = np.random.default_rng(seed)
    seconds = {}
    started = time.perf_counter()
    step("adding models")
    zoo = Zoo.create(path)
    try:
        models = [f"model{i:07d}" for i in range(n_models)]
        size = 10 ** rng.uniform(5.5, 9.5, n_models)  # over 3 decades: the design matrix takes its log
        family = rng.integers(0, len(FAMILIES), n_models)
        zoo.add_models([{"id": m, "family": FAMILIES[family[i]], "n_params": float(size[i])}
                        for i, m in enumerate(models)])
        tasks = [f"task{j:03d}" for j in range(n_tasks)]
        task_size = 10 ** rng.uniform(3, 5.5, n_tasks)
        zoo.add_tasks([{"id": t, "n_classes": int(rng.integers(2, 1000)), "n_train": int(task_size[j])}
                       for j, t in enumerate(tasks)])
        seconds["add_models"] = time.perf_counter() - started
        step("adding history")
        started = time.perf_counter()
        per_model = min(results_per_model, n_tasks)
        # Each model on `per_model` distinct tasks: a random offset and stride-free shift.
        first = rng.integers(0, n_tasks, n_models)
        model_index = np.repeat(np.arange(n_models), per_model)
        task_index = (np.repeat(first, per_model) + np.tile(np.arange(per_model), n_models)) % n_tasks
        quality = rng.normal(0, 1, n_models)
        fam_effect = rng.normal(0, 1, (len(FAMILIES), n_tasks))
        scores = (70 + 3 * quality[model_index] + 1 * fam_effect[family[model_index], task_index]
                  + 6 * (np.log10(size[model_index]) - 7.5) * (np.log10(task_size[task_index]) - 4.25)
                  + rng.normal(0, 0.5, len(model_index)))
        zoo.add_history(History(models=tuple(models), tasks=tuple(tasks), model_index=model_index,
                                task_index=task_index, scores=scores))
        seconds["add_history"] = time.perf_counter() - started
        summary = {"path": str(path), "n_models": n_models, "n_tasks": n_tasks, "results": int(len(scores))}
        if fit:
            step("fitting")
            started = time.perf_counter()
            summary["fitted_version"] = fit_zoo(zoo)["version"]
            seconds["fit"] = time.perf_counter() - started
        summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        return summary
    finally:
        zoo.close()


def _named_task_columns(meta: dict) -> list[str]:
    return [c for c in meta.get("task_columns", []) if not c.startswith(("descriptor_", "task_descriptor_"))]


def task_queries(meta: dict, n: int, *, seed: int = 0) -> list[dict]:
    """``n`` random task-feature dicts for a zoo fitted with ``meta`` (class counts 2-1,000,
    training sets 100-1,000,000, other features 10-100,000)."""
    rng = np.random.default_rng(seed)
    ranges = {"n_classes": (np.log10(2), 3), "n_train": (2, 6)}
    columns = _named_task_columns(meta)
    if len(columns) != len(meta.get("task_columns", [])):
        raise ValueError("task_queries: this zoo takes task descriptors; give the queries yourself")
    out = []
    for _ in range(n):
        out.append({c: float(round(10 ** rng.uniform(*ranges.get(c, (1, 5))))) for c in columns})
    return out


def _percentiles(seconds) -> dict:
    values = np.asarray(seconds, dtype=float) * 1e3
    if values.size == 0:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(values.max()), 3), "mean_ms": round(float(values.mean()), 3)}


def rank_latency(zoo, *, queries: int = 2000, k: int = 10, where=None, seed: int = 0, warmup: int = 50) -> dict:
    """Times ``fennec.rank(zoo, task, k=k, where=where)`` over ``queries`` precomputed random tasks."""
    from ..recommend import rank

    if queries < 1:
        raise ValueError(f"queries: expected >= 1, got {queries}")
    _, meta = zoo.read_fitted()
    tasks = task_queries(meta, queries + warmup, seed=seed)
    for task in tasks[:warmup]:
        rank(zoo, task, k=k, where=where)
    times = []
    for task in tasks[warmup:]:
        start = time.perf_counter()
        rank(zoo, task, k=k, where=where)
        times.append(time.perf_counter() - start)
    return {"queries": queries, "k": k, "models": len(zoo.read_fitted()[0]["model_ids"]), **_percentiles(times)}


# -- the service in its own process ----------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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

    def __init__(self, zoo: str | os.PathLike, *, host: str = "127.0.0.1", port: int | None = None,
                 token: str | None = None, args: tuple[str, ...] = (), startup_timeout: float = 60.0,
                 env: dict | None = None):
        self.zoo, self.host, self.port = str(zoo), host, port or free_port(host)
        self.token, self.args, self.startup_timeout = token, tuple(args), startup_timeout
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self) -> ServerProcess:
        env = self.env
        if self.token is not None:
            env["FENNEC_TOKEN"] = self.token
        else:
            env.pop("FENNEC_TOKEN", None)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fennec", "serve", "--zoo", self.zoo, "--host", self.host,
             "--port", str(self.port), *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                log = self.log()
                self.close()
                raise RuntimeError(f"the server exited with status {self.process.returncode}:\n{log[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
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

    def __exit__(self, *exc) -> None:
        self.close()


# -- the load generator -----------------------------------------------------------


def rank_bodies(meta: dict, n: int = 1000, *, k: int = 10, seed: int = 0) -> list[bytes]:
    """``n`` JSON bodies for POST /rank with random precomputed task features."""
    return [json.dumps({"task": task, "k": k}).encode() for task in task_queries(meta, n, seed=seed)]


async def _connection(host, port, path, bodies, offset, deadline, latencies, counters, check_every):
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline:
        body = bodies[i % len(bodies)]
        i += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
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
            payload = await reader.readexactly(length)
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


async def _generate(url, clients, duration, bodies, path, check_every):
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
                  check_every: int = 100) -> dict:
    """Drives ``url`` from this process: ``clients`` keep-alive connections, each sending the
    next body when the previous answer is in, for ``duration`` seconds; latency percentiles."""
    if clients < 1 or duration <= 0 or not bodies:
        raise ValueError("generate_load: needs clients >= 1, duration > 0 and at least one body")
    try:
        import uvloop  # a cheaper event loop leaves more of the machine to the server
    except ImportError:
        uvloop = None
    if uvloop is not None:
        return uvloop.run(_generate(url, clients, duration, bodies, path, check_every))
    return asyncio.run(_generate(url, clients, duration, bodies, path, check_every))


def _wrk(url: str, clients: int, duration: float, bodies: list[bytes], path: str) -> dict:
    """The same load with wrk (one thread); its latency percentiles and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        script = fh.name
        fh.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal bodies = {\n')
        for body in bodies:
            fh.write(f"  {json.dumps(body.decode())},\n")
        fh.write("}\nlocal i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
                 "  return wrk.format(nil, nil, nil, bodies[i])\nend\n"
                 "done = function(summary, latency, requests)\n"
                 '  io.write(string.format("JSON {\\"requests\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, '
                 '\\"p99_us\\": %d, \\"max_us\\": %d, \\"mean_us\\": %f, \\"connect\\": %d, \\"read\\": %d, '
                 '\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"duration_us\\": %d}\\n", '
                 "summary.requests, latency:percentile(50), latency:percentile(90), latency:percentile(99), "
                 "latency.max, latency.mean, summary.errors.connect, summary.errors.read, summary.errors.write, "
                 "summary.errors.status, summary.errors.timeout, summary.duration))\nend\n")
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


def load_test(zoo: str | os.PathLike, *, clients: int = 64, duration: float = 30.0, engine: str = "auto",
              warmup: float = 2.0, k: int = 10, seed: int = 0, bodies: int = 1000,
              server_args: tuple[str, ...] = (), workers: int = 1) -> dict:
    """Starts the service on ``zoo`` with ``workers`` processes, warms it up, then loads
    ``POST /rank`` from a second process for ``duration`` seconds; returns the generator's
    numbers with the server's RSS, its workers included (start: after the warm-up; end:
    after the run; max: sampled every 0.25 s)."""
    from ..zoo import Zoo

    if engine not in ("auto", "wrk", "asyncio"):
        raise ValueError(f"engine: expected 'auto', 'wrk' or 'asyncio', got {engine!r}")
    if engine == "auto":
        # The asyncio generator (on uvloop when installed) costs the shared cores less than
        # wrk's Lua request hook, so it disturbs the server less on a small machine.
        engine = "asyncio"
    elif engine == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("engine 'wrk': wrk is not installed (apt-get install wrk), use engine='asyncio'")
    with Zoo.open(zoo) as opened:
        _, meta = opened.read_fitted()
        n_models = int(len(opened.read_fitted()[0]["model_ids"]))
    payloads = rank_bodies(meta, bodies, k=k, seed=seed)
    server_args = (*server_args, "--workers", str(workers)) if workers != 1 else tuple(server_args)
    with tempfile.TemporaryDirectory() as scratch, ServerProcess(zoo, args=server_args) as server:
        bodies_file = Path(scratch) / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(payloads) + b"\n")

        def drive(seconds):
            if engine == "wrk":
                return _wrk(server.url, clients, seconds, payloads, "/rank")
            out = subprocess.run([sys.executable, "-m", "fennec.serve.load", "--url", server.url, "--clients",
                                  str(clients), "--duration", str(seconds), "--bodies", str(bodies_file)],
                                 capture_output=True, text=True, timeout=seconds + 120,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     p for p in (str(Path(__file__).resolve().parents[2]),
                                                 os.environ.get("PYTHONPATH")) if p)})
            if out.returncode != 0:
                raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])

        if warmup > 0:
            drive(warmup)
        rss = {"start": tree_rss_bytes(server.pid), "max": 0}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                value = tree_rss_bytes(server.pid) or 0
                rss["max"] = max(rss["max"], value)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = drive(duration)
        finally:
            stop.set()
            sampler.join()
        rss["end"] = tree_rss_bytes(server.pid)
        alive = server.process.poll() is None
    mb = {key: None if value is None else round(value / 2**20, 1) for key, value in rss.items()}
    return {**result, "models": n_models, "k": k, "workers": workers, "server_alive": alive, "rss_start_mb": mb["start"],
            "rss_end_mb": mb["end"], "rss_max_mb": mb["max"], "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fennec.serve.load",
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
