"""The HTTP service behind ``fennec serve``: rank a zoo's models over HTTP.

:func:`create_app` assembles it: the routes (:mod:`.routes`, their bodies in
:mod:`.schemas`) on a FastAPI application, behind the :class:`~.guard.Guard` that
times every request for ``/metrics`` (:mod:`.metrics`), checks the write token and
the body's size and type, and hands ``POST /rank`` to a lean handler ahead of the
framework with the same request model and refusals.

The ranking state lives in one :class:`~fennec.ranking.Ranker` on the event loop's
thread (:mod:`.service`): each request reads the fitted pointer once and ranks from
that version only, so a refit (``fennec zoo fit``, any process) is picked up by the
next request and no request sees half of it. Rankings waiting at the same moment
share one scan of the model vectors (:mod:`.batching`). ``serve(workers=N)`` runs N
such processes on one port. Writes open their own connection in a worker thread.

Bad input gets a 4xx with a ``detail`` message: 400 malformed JSON, 401 missing or
wrong token, 403 writes disabled (no token configured), 404 unknown route or model,
409 refused by the zoo's contents (already stored, not fitted), 413 body or image
too large, 415 a body that is not sent as JSON, 422 wrong types, values or
dimensions, 501 ranking from images without an image encoder, 503 (with
Retry-After) more image requests at once than the limit. Nothing user-supplied
is unpickled.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, TypedDict

from fastapi import FastAPI

from .. import __version__
from .._checks import integer
from ..zoo import Zoo
from .batching import Batcher
from .guard import Guard
from .images import DEFAULT_IMAGE_CONCURRENCY, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, decode_image
from .metrics import Metrics
from .routes import Shared, add_routes
from .schemas import Problem
from .service import DEFAULT_MAX_BUDGET, ImageEncoder, Service

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "create_app", "decode_image", "read_token",
           "serve", "token_file_warning", "worker_app"]

DEFAULT_MAX_BODY_BYTES = 1_000_000
MIN_TOKEN_LENGTH = 16
WORKER_CONFIG = "FENNEC_SERVE_WORKER"


class _UvicornOptions(TypedDict):
    """What serve() gives uvicorn.Config and uvicorn.run, whatever the number of workers."""

    host: str
    port: int
    log_level: str
    access_log: bool
    lifespan: Literal["auto", "on", "off"]
    server_header: bool


def create_app(zoo: str | os.PathLike[str], *, token: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               image_encoder: ImageEncoder | None = None, metrics_dir: str | os.PathLike[str] | None = None,
               max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
               image_concurrency: int = DEFAULT_IMAGE_CONCURRENCY, max_budget: int = DEFAULT_MAX_BUDGET) -> Guard:
    """The ASGI application serving the zoo at ``zoo``.

    ``token``: the bearer token that writes need (None: writes are refused with 403).
    ``image_encoder(images, labels) -> task features`` turns uploaded labelled images
    (RGB uint8 arrays) into the task features the zoo was fitted with; without one,
    ``POST /rank/images`` uses the zoo's proxy when the zoo was fitted with task
    descriptors, and answers 501 otherwise. An image above ``max_image_pixels``, or a
    request's images above ``max_request_pixels`` together, get 413 before any pixel is
    decoded; ``image_concurrency`` image requests are decoded and encoded at once, in
    threads of their own, and more get 503 with Retry-After. A request's ``budget`` of
    forward passes runs on those threads too, and one above ``max_budget`` models gets 422.
    ``metrics_dir``: a
    directory that the worker processes of one service share, so that ``/metrics``
    counts them all.
    """
    path = _checked_settings(zoo, token, max_body_bytes)
    integer(max_image_pixels, "max_image_pixels", low=1)
    integer(max_request_pixels, "max_request_pixels", low=1)
    integer(image_concurrency, "image_concurrency", low=1)
    integer(max_budget, "max_budget", low=1)
    service = Service(path, image_encoder, max_image_pixels, max_request_pixels, image_concurrency,
                      max_budget=max_budget)
    metrics = Metrics(metrics_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()  # on the event loop's thread, where every ranking runs
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="fennec", version=__version__, lifespan=lifespan,
                  description="Recommends which pre-trained model to fine-tune for a new task.",
                  responses={400: {"model": Problem}, 413: {"model": Problem}, 422: {"model": Problem}})
    rank = add_routes(app, Shared(service=service, batcher=Batcher(metrics), metrics=metrics, token=token))
    return Guard(app, metrics=metrics, token=token, max_body_bytes=max_body_bytes, rank=rank)


def _checked_settings(zoo: str | os.PathLike[str], token: str | None, max_body_bytes: int) -> Path:
    """The zoo's path, once the zoo opens and the settings are valid (a clear error now,
    not at the first request)."""
    path = Path(zoo)
    Zoo.open(path).close()
    if token is not None and (not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_LENGTH):
        raise ValueError(f"token: expected a string of at least {MIN_TOKEN_LENGTH} characters")
    integer(max_body_bytes, "max_body_bytes", low=1)
    return path


def read_token(token_file: str | os.PathLike[str] | None = None, *,
               environ: Mapping[str, str] | None = None) -> str | None:
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


def token_file_warning(token_file: str | os.PathLike[str]) -> str | None:
    """What is wrong with the token file's permissions, when other users may read or change it
    (any group or others bit): a token they can read lets them write to the zoo."""
    try:
        mode = stat.S_IMODE(os.stat(token_file).st_mode)
    except OSError:
        return None  # read_token says why it cannot be read
    if os.name != "posix" or not mode & 0o077:
        return None
    return (f"token file {token_file} is open to other users (mode {mode:04o}): anyone who can read it can write "
            f"to the zoo; make it private with: chmod 600 {token_file}")


def worker_app() -> Guard:
    """The application of one worker process of ``serve(workers=N)``, configured by the
    JSON that the supervising process put in the ``FENNEC_SERVE_WORKER`` variable."""
    try:
        config = json.loads(os.environ[WORKER_CONFIG])
    except (KeyError, ValueError):
        raise RuntimeError(f"{WORKER_CONFIG} is not set: start workers with fennec serve --workers N") from None
    return create_app(config["zoo"], token=config["token"], max_body_bytes=config["max_body_bytes"],
                      max_image_pixels=config["max_image_pixels"], metrics_dir=config["metrics_dir"],
                      max_request_pixels=config["max_request_pixels"], image_concurrency=config["image_concurrency"],
                      max_budget=config["max_budget"])


def serve(zoo: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
          log_level: str = "warning", access_log: bool = False, image_encoder: ImageEncoder | None = None,
          workers: int = 1, max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
          image_concurrency: int = DEFAULT_IMAGE_CONCURRENCY, max_budget: int = DEFAULT_MAX_BUDGET) -> None:
    """Runs the service with uvicorn until interrupted.

    ``workers``: processes answering on the one port (uvicorn's supervisor restarts any
    that dies). Each holds its own copy of the fitted state and follows refits on its own;
    ``/metrics`` sums them all. One process is one Python thread: give a busy service as
    many workers as it has cores. An ``image_encoder`` lives in one process (workers=1); the
    zoo's proxy is loaded by each worker that ranks images (``image_concurrency`` each).
    """
    import uvicorn

    integer(workers, "workers", low=1)
    options = _UvicornOptions(host=host, port=port, log_level=log_level, access_log=access_log, lifespan="on",
                              server_header=False)
    if workers == 1:
        app = create_app(zoo, token=token, max_body_bytes=max_body_bytes, max_image_pixels=max_image_pixels,
                         image_encoder=image_encoder, max_request_pixels=max_request_pixels,
                         image_concurrency=image_concurrency, max_budget=max_budget)
        uvicorn.Server(uvicorn.Config(app, workers=1, **options)).run()
        return
    if image_encoder is not None:
        raise ValueError("image_encoder: an encoder object cannot be shared by worker processes; use workers=1")
    path = _checked_settings(zoo, token, max_body_bytes)  # before any worker starts
    with tempfile.TemporaryDirectory(prefix="fennec-metrics-") as metrics_dir:
        os.environ[WORKER_CONFIG] = json.dumps({
            "zoo": str(path.resolve()), "token": token, "max_body_bytes": max_body_bytes,
            "max_image_pixels": max_image_pixels, "metrics_dir": metrics_dir,
            "max_request_pixels": max_request_pixels, "image_concurrency": image_concurrency,
            "max_budget": max_budget})
        try:
            uvicorn.run("fennec.serve.app:worker_app", factory=True, workers=workers, **options)
        finally:
            os.environ.pop(WORKER_CONFIG, None)
