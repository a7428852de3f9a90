"""Hostile image bodies against ``POST /rank/images``: the server's memory and ``/healthz`` latency.

Starts the service on ``--zoo`` (by default ``python -m fennec serve``, which ranks images with
the zoo's proxy), samples its RSS every 20 ms and times ``GET /healthz`` every 50 ms from a
thread of its own, and sends, one scenario after the other:

- ``bomb``: one body of ``--images`` blank ``--side`` x ``--side`` PNGs (60 of 4096 x 4096:
  a 171 KB body that decodes to 3 GB of RGB);
- ``busy``: ``--parallel`` requests at once, each with two blank images at the per-image
  limit (within every limit, so they are decoded).

Prints one JSON object: per scenario the answers' statuses, its duration, the server's RSS
before, at most and after, and the /healthz latencies measured while it ran.

    python bench/image_attack.py --zoo /work/zoos/demo13
    # the same attack on another source tree (e.g. an older checkout), whose `fennec serve`
    # may rank no images: --encoder stub serves it with a stand-in encoder that
    # needs no proxy, so that the images are decoded there too
    python bench/image_attack.py --zoo /work/zoos/demo13 --src /tmp/fennec-old/src --encoder stub
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# A stand-in encoder: the task features of the zoo's first task, whatever the images.
_STUB_SERVER = """
import sys
from fennec.serve import serve
from fennec.zoo import Zoo
zoo, port = sys.argv[1], int(sys.argv[2])
with Zoo.open(zoo) as opened:
    arrays, meta = opened.read_fitted()
names = [c for c in meta["task_columns"] if not c.startswith("descriptor_")]
task = {n: 10.0 for n in names}
if "task_descriptor_descriptors" in arrays:
    task["descriptor"] = arrays["task_descriptor_descriptors"][0].tolist()
serve(zoo, port=port, image_encoder=lambda images, labels: task)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _blank_png(side: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)
    except OSError:
        return -1  # no answer: the connection broke or timed out


class _Watch:
    """RSS samples of ``pid`` and /healthz latencies, taken from threads while the block runs."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url
        self.rss: list[float] = []
        self.health_ms: list[float] = []
        self.health_failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample, daemon=True),
                         threading.Thread(target=self._health, daemon=True)]

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            value = _rss_mb(self.pid)
            if value is not None:
                self.rss.append(value)

    def _health(self) -> None:
        while not self._stop.wait(0.05):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=60) as answer:
                    answer.read()
                self.health_ms.append((time.perf_counter() - start) * 1e3)
            except OSError:
                self.health_failures += 1

    def __enter__(self) -> _Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _scenario(pid: int, url: str, bodies: list[bytes], timeout: float) -> dict[str, object]:
    before = _rss_mb(pid)
    started = time.perf_counter()
    with _Watch(pid, url) as watch, ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(lambda body: _post(url + "/rank/images", body, timeout), bodies))
        time.sleep(0.3)  # a few samples after the last answer
    health = sorted(watch.health_ms)
    return {
        "requests": len(bodies), "body_kb": round(len(bodies[0]) / 1024, 1),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "seconds": round(time.perf_counter() - started, 2),
        "rss_before_mb": None if before is None else round(before, 1),
        "rss_max_mb": round(max(watch.rss), 1) if watch.rss else None,
        "rss_after_mb": None if _rss_mb(pid) is None else round(_rss_mb(pid) or 0.0, 1),
        "healthz_checks": len(health), "healthz_failures": watch.health_failures,
        "healthz_p50_ms": round(health[len(health) // 2], 1) if health else None,
        "healthz_max_ms": round(health[-1], 1) if health else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="a fitted zoo (one fitted with proxy descriptors for the "
                                                     "zoo's proxy to rank the images)")
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="the source tree whose fennec serves (default: this checkout's)")
    parser.add_argument("--encoder", choices=["proxy", "stub"], default="proxy",
                        help="proxy: `fennec serve` as it is; stub: a stand-in encoder (no proxy needed)")
    parser.add_argument("--images", type=int, default=60, help="bomb: blank images in the one body")
    parser.add_argument("--side", type=int, default=4096, help="the blank images' side in pixels")
    parser.add_argument("--parallel", type=int, default=8, help="busy: requests sent at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each answer")
    args = parser.parse_args(argv)

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": args.src}
    env.pop("FENNEC_TOKEN", None)
    command = ([sys.executable, "-m", "fennec", "serve", "--zoo", args.zoo, "--port", str(port)]
               if args.encoder == "proxy" else [sys.executable, "-c", _STUB_SERVER, args.zoo, str(port)])
    url = f"http://127.0.0.1:{port}"
    image = _blank_png(args.side)
    bomb = json.dumps({"images": [{"label": f"c{i % 2}", "data": image} for i in range(args.images)]}).encode()
    pair = json.dumps({"images": [{"label": "a", "data": image}, {"label": "b", "data": image}]}).encode()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
                        answer.read()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        print(json.dumps({"error": "the server did not start",
                                          "log": log.read().decode(errors="replace")[-2000:]}))
                        return 1
                    time.sleep(0.2)
            summary: dict[str, object] = {"src": args.src, "encoder": args.encoder, "zoo": args.zoo,
                                          "rss_started_mb": _rss_mb(server.pid)}
            _post(url + "/rank/images", pair, args.timeout)  # warm up: the proxy loads on first use
            summary["rss_warm_mb"] = _rss_mb(server.pid)
            summary["bomb"] = _scenario(server.pid, url, [bomb], args.timeout)
            summary["busy"] = _scenario(server.pid, url, [pair] * args.parallel, args.timeout)
            summary["server_alive"] = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
