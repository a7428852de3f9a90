"""Request counts, latency histograms and counters in Prometheus text format, summed over
the worker processes of one service."""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from .._atomic import write_atomically

__all__ = ["LATENCY_BUCKETS", "Metrics"]

# Prometheus histogram buckets for request latency, in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Snapshot(TypedDict):
    """One worker's numbers as its file holds them (and the sum over the workers' files)."""

    counts: list[list[Any]]  # [method, route, status, requests]
    latency: dict[str, list[float]]  # route -> [bucket counts..., sum of seconds, count]
    totals: dict[str, float]


class Metrics:
    """Request counts and latency histograms per route, and named counters, in Prometheus
    text format.

    With several worker processes (``share_dir`` set) each worker writes its numbers to
    ``share_dir/worker-<pid>.json`` (atomically, at most every ``SAVE_EVERY`` seconds and
    always within that time of its last request) and ``/metrics`` sums every worker's
    file, so a scrape sees the whole service whichever worker answers it.
    """

    SAVE_EVERY = 0.5
    COUNTERS = {
        "fennec_rank_scans_total": "Top-k scans of the model vectors (rankings waiting together share one).",
        "fennec_rank_queries_total": "Rankings scored by those scans.",
    }

    def __init__(self, share_dir: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> [bucket counts..., sum, count]
        self.totals: dict[str, float] = dict.fromkeys(self.COUNTERS, 0)
        self.share_dir = None if share_dir is None else Path(share_dir)
        self._saved_at = 0.0
        self._save_pending = False

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            cells = self.latency.get(route)
            if cells is None:
                cells = self.latency[route] = [0] * len(LATENCY_BUCKETS) + [0.0, 0]
            at = bisect.bisect_left(LATENCY_BUCKETS, seconds)
            if at < len(LATENCY_BUCKETS):
                cells[at] += 1
            cells[-2] += seconds
            cells[-1] += 1
        if self.share_dir is not None:
            self._schedule_save()

    def add(self, name: str, value: float) -> None:
        self.totals[name] += value

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            return {"counts": [[*key, n] for key, n in self.counts.items()],
                    "latency": {route: list(cells) for route, cells in self.latency.items()},
                    "totals": dict(self.totals)}

    def _schedule_save(self) -> None:
        if self._save_pending:
            return
        wait = self._saved_at + self.SAVE_EVERY - time.monotonic()
        if wait <= 0:
            self.save()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        self._save_pending = True
        loop.call_later(wait, self.save)

    def save(self) -> None:
        """Writes this worker's numbers to its file in ``share_dir``."""
        self._save_pending = False
        self._saved_at = time.monotonic()
        assert self.share_dir is not None, "save: the metrics are not shared (no share_dir)"
        try:
            write_atomically(self.share_dir / f"worker-{os.getpid()}.json", json.dumps(self._snapshot()))
        except (OSError, ValueError):
            pass  # the directory went away (the service is stopping); the next save tries again

    def _merged(self) -> _Snapshot:
        if self.share_dir is None:
            return self._snapshot()
        self.save()
        counts: dict[tuple[str, str, int], int] = {}
        latency: dict[str, list[float]] = {}
        totals: dict[str, float] = dict.fromkeys(self.COUNTERS, 0)
        for file in sorted(self.share_dir.glob("worker-*.json")):
            try:
                snapshot = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed or being replaced: the worker writes it again
            for method, route, status, n in snapshot["counts"]:
                counts[(method, route, status)] = counts.get((method, route, status), 0) + n
            for route, cells in snapshot["latency"].items():
                into = latency.setdefault(route, [0] * len(cells))
                latency[route] = [a + b for a, b in zip(into, cells)]
            for name, value in snapshot["totals"].items():
                if name in totals:
                    totals[name] += value
        return {"counts": [[*key, n] for key, n in counts.items()], "latency": latency, "totals": totals}

    def render(self, gauges: Mapping[str, tuple[str, float | None]]) -> str:
        """Every worker's numbers, summed, then ``gauges`` (name: (help text, value; None is NaN))."""
        merged = self._merged()
        lines = ["# HELP fennec_http_requests_total HTTP requests answered, by method, route and status.",
                 "# TYPE fennec_http_requests_total counter"]
        counts = sorted(((method, route, status), n) for method, route, status, n in merged["counts"])
        latency = dict(sorted(merged["latency"].items()))
        for (method, route, status), n in counts:
            lines.append(f'fennec_http_requests_total{{method="{method}",route="{_label(route)}",'
                         f'status="{status}"}} {n}')
        lines += ["# HELP fennec_http_request_duration_seconds Time to answer a request, by route.",
                  "# TYPE fennec_http_request_duration_seconds histogram"]
        for route, cells in latency.items():
            lines += _histogram_lines(_label(route), cells)
        for name, (text, value) in gauges.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge",
                      f"{name} {'NaN' if value is None else _number(value)}"]
        for name, text in self.COUNTERS.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {_number(merged['totals'][name])}"]
        return "\n".join(lines) + "\n"


def _histogram_lines(route: str, cells: list[float]) -> list[str]:
    """One route's latency histogram: cumulative buckets, +Inf, sum and count."""
    lines: list[str] = []
    cumulative: float = 0  # the bucket counts are ints
    for bound, n in zip(LATENCY_BUCKETS, cells):
        cumulative += n
        lines.append(f'fennec_http_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {cumulative}')
    lines.append(f'fennec_http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {cells[-1]}')
    lines.append(f'fennec_http_request_duration_seconds_sum{{route="{route}"}} {cells[-2]!r}')
    lines.append(f'fennec_http_request_duration_seconds_count{{route="{route}"}} {cells[-1]}')
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
