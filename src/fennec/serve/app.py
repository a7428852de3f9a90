"""The HTTP service behind ``fennec serve``: rank a zoo's models over HTTP.

Routes (the OpenAPI schema at ``/openapi.json`` describes every body):

``POST /rank``          task features (named, or a list in the zoo's task-feature order),
                        observed scores, metadata filters and ``k``; the ranking and the
                        fitted version it came from
``POST /rank/images``   labelled images (base64) turned into task features by an image
                        encoder; 501 while none is configured
``GET  /models``        the zoo's models, paginated; ``GET /models/{id}`` one of them
``POST /models``        add models (bearer token)
``POST /history``       add past results (bearer token)
``GET  /healthz``       liveness, and the fitted version in memory
``GET  /metrics``       Prometheus text: requests and latency per route, fitted version, models

The ranking state lives in one :class:`~fennec.recommend.Ranker` on the event loop's
thread: each request reads the fitted pointer once and ranks from that version only,
so a refit (``fennec zoo fit``, any process) is picked up by the next request and no
request sees half of it. Rankings waiting at the same moment share one scan of the
model vectors (a multi-query top-k), and ``POST /rank`` is answered by a lean handler
ahead of the framework with the same request model and refusals. ``serve(workers=N)``
runs N such processes on one port. Writes open their own connection in a worker thread.

Bad input gets a 4xx with a ``detail`` message: 400 malformed JSON, 401 missing or
wrong token, 403 writes disabled (no token configured), 404 unknown route or model,
409 refused by the zoo's contents (already stored, not fitted), 413 body or image
too large, 415 a body that is not sent as JSON, 422 wrong types, values or
dimensions. Nothing user-supplied is unpickled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import gc
import hmac
import io
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
import numpy as np
from pydantic import BaseModel, ValidationError, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from .. import __version__, kernels
from ..history import History
from ..recommend import DESCRIPTOR_PREFIX, Ranker, RankPlan
from ..zoo import Zoo, ZooError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "create_app", "decode_image", "read_token",
           "serve"]

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
MAX_K = 1000
MAX_PAGE = 1000
MIN_TOKEN_LENGTH = 16
WRITE_ROUTES = {("POST", "/history"), ("POST", "/models")}
JSON_ROUTES = {("POST", "/rank"), ("POST", "/rank/images"), *WRITE_ROUTES}
# What Starlette's JSONResponse writes: compact UTF-8, no NaN (used where the service answers by hand).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# Prometheus histogram buckets for request latency, in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]


# -- request and response bodies ------------------------------------------------


class Comparison(BaseModel):
    """A comparison filter: keeps models whose field compares true with ``value``."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: Union[Finite, StrictStr]


class RankRequest(BaseModel):
    """What is known about the new task, which models may be recommended, and how many."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"task": {"n_classes": 10, "n_train": 5000}, "where": {"family": "resnet"}, "k": 5},
        {"observed": {"resnet50": 81.2, "vit_b16": 84.0}, "k": 10},
        {"task": [10, 5000], "where": {"n_params": {"op": "<=", "value": 3e7}}},
    ]})
    task: Union[dict[str, Union[Finite, list[Finite]]], list[Finite], None] = Field(
        None, description="task features by name (a task descriptor as a list under 'descriptor'), or a "
                          "list of the named features in the order GET /healthz gives as task_features; "
                          "none: rank by the prior")
    observed: Union[dict[str, Finite], None] = Field(
        None, description="scores already measured on the new task, by model id")
    where: Union[dict[str, Union[Scalar, list[Scalar], Comparison]], None] = Field(
        None, description="metadata filters: a value (equal), a list (one of), or {op, value}")
    k: int = Field(10, ge=1, le=MAX_K, description="how many models to return")


class RankedModel(BaseModel):
    """One recommended model, with its metadata fields beside the scores."""

    model_config = ConfigDict(extra="allow")
    rank: int
    model: str
    score: float = Field(description="predicted score on the history's scale")
    uncertainty: float = Field(description="the model's spread around its prior, same scale")
    observed: Union[float, None] = Field(None, description="the measured score, when it was given")


class RankResponse(BaseModel):
    version: int = Field(description="the fitted version the ranking came from")
    basis: str
    notes: list[str]
    rows: list[RankedModel]


class LabelledImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: StrictStr = Field(min_length=1)
    data: StrictStr = Field(description="the encoded image file (PNG, JPEG...), base64")


class ImageRankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[LabelledImage] = Field(min_length=1)
    where: Union[dict[str, Union[Scalar, list[Scalar], Comparison]], None] = None
    k: int = Field(10, ge=1, le=MAX_K)


class ModelRow(BaseModel):
    """A model's side information; fields beyond these are kept as its extra metadata."""

    model_config = ConfigDict(extra="allow")
    id: StrictStr = Field(min_length=1)
    architecture: Union[StrictStr, None] = None
    family: Union[StrictStr, None] = None
    n_params: Union[Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)], None] = None
    source_dataset: Union[StrictStr, None] = None
    input_size: Union[Annotated[int, Field(strict=True, ge=0)], None] = None
    license: Union[StrictStr, None] = None


class ModelsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelRow] = Field(min_length=1)
    replace: bool = Field(False, description="overwrite the side information of ids already stored")


class HistoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: StrictStr = Field(min_length=1)
    task: StrictStr = Field(min_length=1)
    score: Finite
    kind: StrictStr = Field("finetune", min_length=1)
    source: Union[StrictStr, None] = None


class HistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[HistoryRow] = Field(min_length=1)
    replace: bool = Field(False, description="overwrite results already stored for the same model, task, kind")
    strict: bool = Field(False, description="refuse unknown model or task ids instead of adding them")


class WriteResponse(BaseModel):
    added: int
    fitted_version: Union[int, None]
    note: str


class ModelsPage(BaseModel):
    total: int
    offset: int
    limit: int
    models: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    fitted_version: Union[int, None]
    models: int = Field(description="models in the fitted state held in memory")
    task_features: list[str] = Field(description="the named task features the zoo was fitted with")
    descriptor: bool = Field(description="whether the zoo was fitted with task descriptors ('descriptor')")


class Problem(BaseModel):
    detail: Any


# -- middleware -------------------------------------------------------------------


class _Metrics:
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

    def __init__(self, share_dir: str | os.PathLike | None = None):
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list] = {}  # route -> [bucket counts..., sum, count]
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

    def _snapshot(self) -> dict:
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
        target = self.share_dir / f"worker-{os.getpid()}.json"
        scratch = target.with_suffix(".tmp")
        try:
            scratch.write_text(json.dumps(self._snapshot()), encoding="utf-8")
            os.replace(scratch, target)
        except OSError:
            pass  # the directory went away (the service is stopping); the next save tries again

    def _merged(self) -> dict:
        if self.share_dir is None:
            return self._snapshot()
        self.save()
        counts: dict[tuple, int] = {}
        latency: dict[str, list] = {}
        totals = dict.fromkeys(self.COUNTERS, 0)
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
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS, cells):
                cumulative += n
                lines.append(f'fennec_http_request_duration_seconds_bucket{{route="{_label(route)}",'
                             f'le="{bound}"}} {cumulative}')
            lines.append(f'fennec_http_request_duration_seconds_bucket{{route="{_label(route)}",le="+Inf"}} '
                         f'{cells[-1]}')
            lines.append(f'fennec_http_request_duration_seconds_sum{{route="{_label(route)}"}} {cells[-2]!r}')
            lines.append(f'fennec_http_request_duration_seconds_count{{route="{_label(route)}"}} {cells[-1]}')
        for name, (text, value) in gauges.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge",
                      f"{name} {'NaN' if value is None else _number(value)}"]
        for name, text in self.COUNTERS.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {_number(merged['totals'][name])}"]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


async def _send_json(send, status: int, content, headers=()) -> None:
    """Answers with ``content`` as JSON, encoded as Starlette's JSONResponse encodes it."""
    body = _JSON.encode(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *[(k.encode(), v.encode()) for k, v in headers]]})
    await send({"type": "http.response.body", "body": body})


async def _send_problem(send, status: int, detail, headers=()) -> None:
    await _send_json(send, status, {"detail": detail}, headers)


def _problem(error: Exception) -> tuple[int, object] | None:
    """The status and ``detail`` that a refused request's error gets (None: not a refusal)."""
    if isinstance(error, (RequestValidationError, ValidationError)):
        errors = error.errors()
        invalid = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if invalid is not None:
            context = invalid.get("ctx", {}).get("error", "")
            return 400, f"the body is not valid JSON: {context}".rstrip(": ")
        # FastAPI's locations start at the body; a body validated by hand gets the same.
        prefix = ("body",) if isinstance(error, ValidationError) else ()
        return 422, jsonable_encoder([{"loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg"),
                                       "type": e.get("type")} for e in errors])
    if isinstance(error, ZooError):
        return 409, str(error)
    if isinstance(error, (ValueError, TypeError)):
        return 422, str(error)
    return None


class _Guard:
    """Outermost layer: times every request for /metrics, checks the bearer token of
    writes before their body is read, and refuses bodies above the limit with 413."""

    def __init__(self, app, *, metrics: _Metrics, token: str | None, max_body_bytes: int, rank=None):
        self.app = app
        self.rank = rank
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("<refused>" if status[0] in (400, 401, 403, 413, 415) else
                                                   "<unmatched>")
            self.metrics.observe(scope["method"], name, status[0], time.perf_counter() - start)

    async def _handle(self, scope, receive, send):
        if (scope["method"], scope["path"]) in WRITE_ROUTES:
            problem = self._check_token(scope)
            if problem is not None:
                return await _send_problem(send, *problem)
        length = content_type = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if (scope["method"], scope["path"]) in JSON_ROUTES and (content_type is None or
                                          content_type.split(b";")[0].strip().lower() != b"application/json"):
            return await _send_problem(send, 415, "send the body as JSON with 'Content-Type: application/json'")
        if length is not None:
            if not length.isdigit():
                return await _send_problem(send, 400, "Content-Length is not a number")
            if int(length) > self.max_body_bytes:
                return await _send_problem(
                    send, 413, f"the body has {int(length)} bytes, above the limit of {self.max_body_bytes}")
        if scope["method"] in ("GET", "HEAD") and length is None:
            return await self.app(scope, receive, send)
        # Read the whole body (it is small by construction) and hand it on in one piece:
        # a chunked body without a length is counted as it arrives.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _send_problem(send, 413, f"the body is above the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False
        if self.rank is not None and scope["method"] == "POST" and scope["path"] == "/rank":
            return await self.rank(scope, body, send)

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_token(self, scope):
        if self.token is None:
            return 403, "writes are disabled: start the service with --token-file or FENNEC_TOKEN set"
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
        challenge = (("www-authenticate", "Bearer"),)
        if given is None:
            return 401, "this route needs 'Authorization: Bearer <token>'", challenge
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token):
            return 401, "the bearer token is not valid", challenge
        return None


# -- rankings that arrive together share one scan -----------------------------------


class _Batcher:
    """Scans the model vectors once for every ranking that is waiting at the same moment.

    Under load many ``POST /rank`` requests are parsed in one turn of the event loop.
    Each plans its ranking (one fitted version, its query vector, its ``where`` mask)
    and waits here; the first of a group schedules the scan for the loop's next turn,
    by which time the others have joined, and plans over the same vectors and mask are
    scored by one multi-query top-k (one pass over the models instead of one each).
    Nothing waits on a timer: a lone request is scanned on the next turn. Should a
    group's scan fail, each plan is rescanned alone so only its own request fails.
    """

    def __init__(self, metrics: _Metrics):
        self._waiting: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None, list]] = {}
        self.metrics = metrics

    async def topk(self, plan: RankPlan):
        loop = asyncio.get_running_loop()
        # The group holds the vectors and mask, so their ids stay theirs while it waits.
        key = (id(plan.vectors), id(plan.mask))
        group = self._waiting.get(key)
        if group is None:
            group = self._waiting[key] = (plan.vectors, plan.mask, [])
            loop.call_soon(self._scan, key)
        answer = loop.create_future()
        group[2].append((plan, answer))
        return await answer

    def _scan(self, key) -> None:
        vectors, mask, waiting = self._waiting.pop(key)
        self.metrics.add("fennec_rank_scans_total", 1)
        self.metrics.add("fennec_rank_queries_total", len(waiting))
        if len(waiting) > 1:
            try:
                queries = np.stack([plan.query for plan, _ in waiting])
                scores, order = kernels.topk(vectors, queries, max(plan.k for plan, _ in waiting), mask=mask)
            except Exception:  # noqa: BLE001 - rescanned one by one below, each failing on its own
                pass
            else:
                for row, (plan, answer) in enumerate(waiting):
                    if not answer.done():
                        answer.set_result((scores[row, :plan.k], order[row, :plan.k]))
                return
        for plan, answer in waiting:
            if answer.done():  # its request went away
                continue
            try:
                answer.set_result(kernels.topk(vectors, plan.query, plan.k, mask=mask))
            except Exception as error:  # noqa: BLE001 - handed to the request that caused it
                answer.set_exception(error)


# -- images -----------------------------------------------------------------------


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, what: str = "image"):
    """Decodes an encoded image (PNG, JPEG, ...) to an RGB ``uint8`` array of shape (H, W, 3).

    The size is read from the header before any pixel is decoded, so an image above
    ``max_pixels`` (a decompression bomb) costs nothing; ``OverflowError`` names it.
    ``ValueError`` when ``data`` is not an image Pillow can read.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns or raises at ~89M pixels; ours runs first and lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise OverflowError(f"{what}: {err}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{what}: not an image that can be decoded ({err})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise OverflowError(f"{what}: {width} x {height} = {width * height} pixels, above the limit of "
                                f"{max_pixels}")
        try:
            return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{what}: the image data is damaged ({err})") from None


# -- the application --------------------------------------------------------------


class _Service:
    """What the routes share: the zoo path, its Ranker (event-loop thread only), settings."""

    def __init__(self, zoo_path: Path, image_encoder, max_image_pixels: int):
        self.zoo_path = zoo_path
        self.image_encoder = image_encoder
        self.max_image_pixels = max_image_pixels
        self.zoo: Zoo | None = None
        self.ranker: Ranker | None = None
        self._frozen = None

    def open(self) -> None:
        self.zoo = Zoo.open(self.zoo_path)
        self.ranker = Ranker(self.zoo)
        if self.zoo.fitted_version() is not None:
            # Load the fitted arrays and the metadata now, not on the first request.
            _, _, ids, _ = self.ranker._state()
            self.ranker._metadata(ids)
            self.ranker.rank(k=1)
            self.settle()

    def settle(self) -> None:
        """Moves a newly loaded catalog out of the garbage collector's sight (``gc.freeze``):
        a zoo's metadata is one dict per model, and collecting the oldest generation would
        otherwise walk all of them, a pause of tens of milliseconds for 100,000 models."""
        catalog = self.ranker._catalog
        if catalog is not None and catalog is not self._frozen:
            gc.collect()
            gc.freeze()
            self._frozen = catalog

    def close(self) -> None:
        if self.zoo is not None:
            self.zoo.close()
            self.zoo = self.ranker = None

    def fitted(self):
        """(state, meta, ids, index) of the current version, or None before the first fit."""
        try:
            return self.ranker._state()
        except ZooError:
            if self.zoo.fitted_version() is None:
                return None
            raise

    def catalog(self):
        fitted = self.fitted()
        return self.ranker._metadata(None if fitted is None else fitted[2]), fitted

    def write(self, action: Callable[[Zoo], int]) -> dict:
        with Zoo.open(self.zoo_path) as zoo:
            added = action(zoo)
            return {"added": added, "fitted_version": zoo.fitted_version(),
                    "note": "rankings include these after the next fit (fennec zoo fit)"}


def _task_features(meta: Mapping) -> tuple[list[str], bool]:
    """The named task features of a fitted zoo, and whether it also takes a task descriptor."""
    columns = list(meta.get("task_columns", []))
    descriptor = [c for c in columns if c.startswith(("descriptor_", DESCRIPTOR_PREFIX))]
    return [c for c in columns if c not in descriptor], bool(descriptor)


def _filters(where) -> dict | None:
    if where is None:
        return None
    return {name: (c.op, c.value) if isinstance(c, Comparison) else c for name, c in where.items()}


def _model_view(row: Mapping, index: Mapping[str, int] | None) -> dict:
    out = dict(row["extra"])
    out.update((key, value) for key, value in row.items() if key != "extra" and value is not None)
    out["fitted"] = index is not None and row["id"] in index
    return out


def _checked_settings(zoo, token, max_body_bytes) -> Path:
    """The zoo's path, once the zoo opens and the settings are valid (a clear error now,
    not at the first request)."""
    path = Path(zoo)
    Zoo.open(path).close()
    if token is not None and (not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_LENGTH):
        raise ValueError(f"token: expected a string of at least {MIN_TOKEN_LENGTH} characters")
    if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes: expected a positive integer, got {max_body_bytes!r}")
    return path


def create_app(zoo: str | os.PathLike, *, token: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               image_encoder: Callable[[list, list[str]], Mapping[str, float]] | None = None,
               metrics_dir: str | os.PathLike | None = None):
    """The ASGI application serving the zoo at ``zoo``.

    ``token``: the bearer token that writes need (None: writes are refused with 403).
    ``image_encoder(images, labels) -> task features`` turns uploaded labelled images
    (RGB uint8 arrays) into the task features the zoo was fitted with; without one,
    ``POST /rank/images`` answers 501. ``metrics_dir``: a directory that the worker
    processes of one service share, so that ``/metrics`` counts them all.
    """
    path = _checked_settings(zoo, token, max_body_bytes)
    service = _Service(path, image_encoder, max_image_pixels)
    metrics = _Metrics(metrics_dir)
    batcher = _Batcher(metrics)
    bearer = HTTPBearer(auto_error=False, description="the token given to the service (--token-file)")

    async def lifespan(app):
        service.open()  # on the event loop's thread, where every ranking runs
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="fennec", version=__version__, lifespan=lifespan,
                  description="Recommends which pre-trained model to fine-tune for a new task.",
                  responses={400: {"model": Problem}, 413: {"model": Problem}, 422: {"model": Problem}})

    async def refused(request: Request, error: Exception):
        status, detail = _problem(error)
        return JSONResponse({"detail": detail}, status_code=status)

    for refusal in (RequestValidationError, ZooError, ValueError, TypeError):
        app.add_exception_handler(refusal, refused)

    async def ranking(task, where, observed, k) -> JSONResponse:
        fitted = service.fitted()
        if fitted is None:
            raise ZooError(f"{path}: the zoo is not fitted yet (run `fennec zoo fit`)")
        names, descriptor = _task_features(fitted[1])
        if isinstance(task, list):
            if len(task) != len(names) or descriptor:
                raise ValueError(f"task: {len(task)} value(s) given, this zoo's task features are {len(names)}: "
                                 f"{names}" + ("; give them by name, with the 'descriptor'" if descriptor else ""))
            task = dict(zip(names, task))
        elif task:
            unknown = sorted(set(task) - set(names) - ({"descriptor"} if descriptor else set()))
            if unknown:
                raise ValueError(f"task: unknown feature(s) {unknown}; this zoo's task features are {names}"
                                 + (" and a 'descriptor'" if descriptor else ""))
            lists = sorted(name for name, value in task.items() if isinstance(value, list) and name != "descriptor")
            if lists:
                raise ValueError(f"task: {lists} must be numbers, not lists")
        plan = service.ranker.plan(task or None, k=k, where=_filters(where), observed=observed)
        _, order = await batcher.topk(plan)
        result = service.ranker.finish(plan, order)
        service.settle()
        return {"version": plan.fitted.version, **result.to_dict()}

    @app.post("/rank", response_model=RankResponse, tags=["rank"],
              responses={409: {"model": Problem, "description": "the zoo is not fitted"}})
    async def rank(body: RankRequest):
        """Ranks the zoo's models for a new task: by its features, by scores already
        measured on it, or by the prior when nothing is known."""
        # Served by rank_fast below (the Guard hands it POST /rank); this route gives the
        # OpenAPI schema and answers when the app runs without the Guard.
        return JSONResponse(await ranking(body.task, body.where, body.observed, body.k))

    @app.post("/rank/images", response_model=RankResponse, tags=["rank"],
              responses={501: {"model": Problem, "description": "no image encoder is configured"}})
    async def rank_images(body: ImageRankRequest):
        """Ranks for a task given by labelled images, turned into task features by the
        service's image encoder (the proxy); 501 when the service has none."""
        if service.image_encoder is None:
            raise HTTPException(501, "ranking from images needs an image encoder (the fennec proxy), and this "
                                     "service has none; send task features to POST /rank instead")
        images = []
        for i, item in enumerate(body.images):
            try:
                data = base64.b64decode(item.data, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"images[{i}].data: not valid base64") from None
            try:
                images.append(decode_image(data, max_pixels=service.max_image_pixels, what=f"images[{i}]"))
            except OverflowError as err:
                raise HTTPException(413, str(err)) from None
        features = await run_in_threadpool(service.image_encoder, images, [x.label for x in body.images])
        return JSONResponse(await ranking(dict(features), body.where, None, body.k))

    @app.get("/models", response_model=ModelsPage, tags=["models"])
    async def list_models(offset: Annotated[int, Query(ge=0)] = 0,
                          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100):
        """The zoo's models in the order they were added, ``limit`` from ``offset``."""
        catalog, fitted = service.catalog()
        index = None if fitted is None else fitted[3]
        rows = catalog.rows[offset:offset + limit]
        return JSONResponse({"total": len(catalog.rows), "offset": offset, "limit": limit,
                             "models": [_model_view(row, index) for row in rows]})

    @app.get("/models/{model_id:path}", tags=["models"], response_model=dict[str, Any],
             responses={404: {"model": Problem, "description": "no model with this id"}})
    async def get_model(model_id: Annotated[str, PathParam(description="the model's id (may contain '/')")]):
        """One model's metadata, and whether the fitted state holds it."""
        catalog, fitted = service.catalog()
        row = catalog.by_id.get(model_id)
        if row is None:
            raise HTTPException(404, f"unknown model {model_id!r}")
        return JSONResponse(_model_view(row, None if fitted is None else fitted[3]))

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        # _Guard has already refused a missing or wrong token; this declares the
        # scheme in the schema and checks once more.
        if token is None or credentials is None or not hmac.compare_digest(
                credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})

    write_responses = {401: {"model": Problem, "description": "no token, or a wrong one"},
                       403: {"model": Problem, "description": "writes are disabled"},
                       409: {"model": Problem, "description": "refused by what the zoo holds"}}

    @app.post("/models", response_model=WriteResponse, tags=["write"], dependencies=[Depends(authorised)],
              responses=write_responses)
    async def add_models(body: ModelsRequest):
        """Adds models with their side information (bearer token)."""
        rows = [row.model_dump(exclude_none=True) for row in body.models]
        return await run_in_threadpool(service.write, lambda zoo: (zoo.add_models(rows, replace=body.replace),
                                                                    len(rows))[1])

    @app.post("/history", response_model=WriteResponse, tags=["write"], dependencies=[Depends(authorised)],
              responses=write_responses)
    async def add_history(body: HistoryRequest):
        """Adds past results: one row per (model, task, kind) (bearer token)."""
        models = list(dict.fromkeys(r.model for r in body.rows))
        tasks = list(dict.fromkeys(r.task for r in body.rows))
        model_at = {m: i for i, m in enumerate(models)}
        task_at = {t: j for j, t in enumerate(tasks)}
        history = History(models=tuple(models), tasks=tuple(tasks),
                          model_index=[model_at[r.model] for r in body.rows],
                          task_index=[task_at[r.task] for r in body.rows],
                          scores=[r.score for r in body.rows], kind=tuple(r.kind for r in body.rows),
                          source=tuple(r.source or "" for r in body.rows))
        return await run_in_threadpool(service.write, lambda zoo: zoo.add_history(
            history, replace=body.replace, strict=body.strict))

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz():
        """Alive, and which fitted version is in memory."""
        fitted = service.fitted()
        names, descriptor = _task_features({} if fitted is None else fitted[1])
        return JSONResponse({"status": "ok", "version": __version__,
                             "fitted_version": None if fitted is None else service.ranker.version,
                             "models": 0 if fitted is None else len(fitted[2]),
                             "task_features": names, "descriptor": descriptor})

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus_metrics():
        """Prometheus text format: requests and latency per route, fitted version, models."""
        fitted = service.fitted()
        catalog, _ = service.catalog()
        text = metrics.render({
            "fennec_fitted_version": ("The fitted version held in memory.",
                                      None if fitted is None else service.ranker.version),
            "fennec_models_fitted": ("Models in the fitted state held in memory.",
                                     0 if fitted is None else len(fitted[2])),
            "fennec_models_stored": ("Models stored in the zoo.", len(catalog.rows)),
        })
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    rank_route = next(route for route in app.routes if getattr(route, "path", None) == "/rank")

    async def rank_fast(scope, body: bytes, send) -> None:
        """POST /rank without the framework between the socket and the ranking: the same
        request model, ranking and refusals as the route above, a fraction of the cost."""
        scope["route"] = rank_route
        try:
            # Parsed as FastAPI parses a body, so both give the same answers to bad ones.
            if not body:
                raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
            try:
                data = json.loads(body)
            except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
                raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                               "ctx": {"error": getattr(err, "msg", str(err))}}]) from None
            request = RankRequest.model_validate(data)
            status, content = 200, await ranking(request.task, request.where, request.observed, request.k)
        except Exception as error:  # noqa: BLE001 - refusals become 4xx; anything else is re-raised
            problem = _problem(error)
            if problem is None:
                raise
            status, content = problem[0], {"detail": problem[1]}
        await _send_json(send, status, content)

    return _Guard(app, metrics=metrics, token=token, max_body_bytes=max_body_bytes, rank=rank_fast)


def read_token(token_file: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """The write token: the file's text (stripped) when a file is given, else ``FENNEC_TOKEN``."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ValueError(f"token file {token_file}: cannot be read ({err.strerror})") from None
        if len(text) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token file {token_file}: the token must have at least {MIN_TOKEN_LENGTH} characters")
        return text
    text = environ.get("FENNEC_TOKEN", "").strip()
    if text and len(text) < MIN_TOKEN_LENGTH:
        raise ValueError(f"FENNEC_TOKEN: the token must have at least {MIN_TOKEN_LENGTH} characters")
    return text or None


WORKER_CONFIG = "FENNEC_SERVE_WORKER"


def worker_app():
    """The application of one worker process of ``serve(workers=N)``, configured by the
    JSON that the supervising process put in the ``FENNEC_SERVE_WORKER`` variable."""
    try:
        config = json.loads(os.environ[WORKER_CONFIG])
    except (KeyError, ValueError):
        raise RuntimeError(f"{WORKER_CONFIG} is not set: start workers with fennec serve --workers N") from None
    return create_app(config["zoo"], token=config["token"], max_body_bytes=config["max_body_bytes"],
                      max_image_pixels=config["max_image_pixels"], metrics_dir=config["metrics_dir"])


def serve(zoo: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
          log_level: str = "warning", access_log: bool = False, image_encoder=None, workers: int = 1) -> None:
    """Runs the service with uvicorn until interrupted.

    ``workers``: processes answering on the one port (uvicorn's supervisor restarts any
    that dies). Each holds its own copy of the fitted state and follows refits on its own;
    ``/metrics`` sums them all. One process is one Python thread: give a busy service as
    many workers as it has cores. An ``image_encoder`` lives in one process (workers=1).
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    options = dict(host=host, port=port, log_level=log_level, access_log=access_log, lifespan="on",
                   server_header=False)
    if workers == 1:
        app = create_app(zoo, token=token, max_body_bytes=max_body_bytes, max_image_pixels=max_image_pixels,
                         image_encoder=image_encoder)
        uvicorn.Server(uvicorn.Config(app, workers=1, **options)).run()
        return
    if image_encoder is not None:
        raise ValueError("image_encoder: an encoder object cannot be shared by worker processes; use workers=1")
    path = _checked_settings(zoo, token, max_body_bytes)  # before any worker starts
    with tempfile.TemporaryDirectory(prefix="fennec-metrics-") as metrics_dir:
        os.environ[WORKER_CONFIG] = json.dumps({
            "zoo": str(path.resolve()), "token": token, "max_body_bytes": max_body_bytes,
            "max_image_pixels": max_image_pixels, "metrics_dir": metrics_dir})
        try:
            uvicorn.run("fennec.serve.app:worker_app", factory=True, workers=workers, **options)
        finally:
            os.environ.pop(WORKER_CONFIG, None)
