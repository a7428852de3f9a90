"""The service's routes (the OpenAPI schema at ``/openapi.json`` describes every body).

``POST /rank``          task features (named, or a list in the zoo's task-feature order),
                        observed scores, metadata filters and ``k``; the ranking and the
                        fitted version it came from
``POST /rank/images``   labelled images (base64) turned into task features by the zoo's
                        proxy (or the image encoder given); 501 when there is none, 413
                        above the pixel limits, 503 (Retry-After) while the image threads
                        are all busy; with a ``budget``, the best predicted models (or with
                        ``choose: "change"`` those expected to change the top most) are run
                        over the images and fused, and ``forward_passes`` says which
``GET  /models``        the zoo's models, paginated; ``GET /models/{id}`` one of them
``POST /models``        add models (bearer token)
``POST /history``       add past results (bearer token)
``GET  /healthz``       liveness, and the fitted version in memory
``GET  /metrics``       Prometheus text: requests and latency per route, fitted version, models

Each route is a function of this module that :func:`add_routes` adds to the
application; it reads what it shares with the others from ``app.state.shared`` (a
:class:`Shared`). ``POST /rank`` is answered by the lean
handler :func:`add_routes` returns, ahead of the framework, with the same request
model and refusals; the route declared here gives its schema.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope, Send

from .. import __version__
from ..budget import check_budget_request
from ..history import History
from ..ranking import Ranker
from ..zoo import Zoo, ZooError
from .batching import Batcher
from .guard import RankHandler
from .images import ImagesUnavailable, decode_base64_images
from .metrics import Metrics
from .responses import REFUSALS, problem, refused, send_json
from .schemas import (MAX_PAGE, Comparison, Health, HistoryRequest, ImageRankRequest, ModelsPage, ModelsRequest,
                      Problem, RankRequest, RankResponse, WriteResponse)
from .service import Service

__all__ = ["Shared", "add_routes", "rank_answer"]

bearer = HTTPBearer(auto_error=False, description="the token given to the service (--token-file)")
WRITE_RESPONSES = {401: {"model": Problem, "description": "no token, or a wrong one"},
                   403: {"model": Problem, "description": "writes are disabled"},
                   409: {"model": Problem, "description": "refused by what the zoo holds"}}


# (method, path, endpoint, options of FastAPI's add_api_route), in the order they are added.
_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def _route(method: str, path: str, **options: Any) -> Callable[[_Endpoint], _Endpoint]:
    """Marks the function below as the endpoint of ``method path``, to be added by :func:`add_routes`."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        _ROUTES.append((method, path, endpoint, options))
        return endpoint

    return mark


@dataclass(frozen=True)
class Shared:
    """What the routes of one application share."""

    service: Service
    batcher: Batcher
    metrics: Metrics
    token: str | None


def add_routes(app: FastAPI, shared: Shared) -> RankHandler:
    """Adds the routes and their refusals (4xx with a ``detail``) to ``app``; returns the
    handler that answers ``POST /rank`` ahead of the framework."""
    app.state.shared = shared
    for refusal in REFUSALS:
        app.add_exception_handler(refusal, refused)
    for method, path, endpoint, options in _ROUTES:
        app.add_api_route(path, endpoint, methods=[method], **options)
    rank_route = next(route for route in app.routes if getattr(route, "path", None) == "/rank")

    async def rank_fast(scope: Scope, body: bytes, send: Send) -> None:
        """POST /rank without the framework between the socket and the ranking: the same
        request model, ranking and refusals as the route, a fraction of the cost."""
        scope["route"] = rank_route
        try:
            request = _rank_request(body)
            status, content = 200, await rank_answer(shared, request.task, request.where, request.observed,
                                                     request.k)
        except Exception as error:  # noqa: BLE001 - refusals become 4xx; anything else is re-raised
            refusal = problem(error)
            if refusal is None:
                raise
            status, content = refusal[0], {"detail": refusal[1]}
        await send_json(send, status, content)

    return rank_fast


def _rank_request(body: bytes) -> RankRequest:
    """The body of POST /rank, parsed as FastAPI parses a body, so both give the same answers to bad ones."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        data = json.loads(body)
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                       "ctx": {"error": getattr(err, "msg", str(err))}}]) from None
    except RecursionError:  # arrays or objects nested past the interpreter's recursion limit
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                       "ctx": {"error": "nested too deeply"}}]) from None
    return RankRequest.model_validate(data)


def _shared(request: Request) -> Shared:
    shared: Shared = request.app.state.shared  # set by add_routes
    return shared


async def rank_answer(shared: Shared, task: Mapping[str, float | list[float]] | Sequence[float] | None,
                      where: Mapping[str, object] | None, observed: Mapping[str, float] | None,
                      k: int) -> dict[str, Any]:
    """The answer to a ranking request: the ranking, and the fitted version it came from.
    The Ranker checks the task against the zoo's task features (a list is in their order)."""
    service = shared.service
    if service.fitted() is None:
        raise ZooError(f"{service.zoo_path}: the zoo is not fitted yet (run `fennec zoo fit`)")
    assert service.ranker is not None  # service.fitted() needs it
    plan = service.ranker.plan(task, k=k, where=_filters(where), observed=observed)
    _, order = await shared.batcher.topk(plan)
    result = service.ranker.finish(plan, order)
    service.settle()
    return {"version": plan.fitted.version, **result.to_dict()}


def _filters(where: Mapping[str, object] | None) -> dict[str, object] | None:
    if where is None:
        return None
    return {name: (c.op, c.value) if isinstance(c, Comparison) else c for name, c in where.items()}


def _model_view(row: Mapping[str, Any], index: Mapping[str, int] | None) -> dict[str, Any]:
    out = dict(row["extra"])
    out.update((key, value) for key, value in row.items() if key != "extra" and value is not None)
    out["fitted"] = index is not None and row["id"] in index
    return out


@_route("POST", "/rank", response_model=RankResponse, tags=["rank"],
        responses={409: {"model": Problem, "description": "the zoo is not fitted"}})
async def rank(request: Request, body: RankRequest) -> JSONResponse:
    """Ranks the zoo's models for a new task: by its features, by scores already
    measured on it, or by the prior when nothing is known."""
    # Served by the handler add_routes returns (the Guard hands it POST /rank); this route
    # gives the OpenAPI schema and answers when the app runs without the Guard.
    return JSONResponse(await rank_answer(_shared(request), body.task, body.where, body.observed, body.k))


@contextmanager
def _image_slot(service: Service) -> Iterator[None]:
    """One of the service's ``image_concurrency`` places for an image request, or 503: decoding
    and encoding cost memory and CPU, so the requests beyond it are turned away, not queued."""
    if service.images_in_flight >= service.image_concurrency:
        raise HTTPException(503, f"the service is already ranking {service.images_in_flight} image requests, "
                                 f"its limit; retry in a second", headers={"Retry-After": "1"})
    service.images_in_flight += 1
    try:
        yield
    finally:
        service.images_in_flight -= 1


@_route("POST", "/rank/images", response_model=RankResponse, tags=["rank"],
        responses={413: {"model": Problem, "description": "an image, or all of them, above the pixel limit"},
                   501: {"model": Problem, "description": "no image encoder (the zoo has no proxy descriptors)"},
                   503: {"model": Problem, "description": "too many image requests at once (see Retry-After)"}})
async def rank_images(request: Request, body: ImageRankRequest) -> JSONResponse:
    """Ranks for a task given by labelled images, turned into task features by the zoo's
    proxy, as ``fennec rank --images`` does; 501 when the zoo has no proxy descriptors.
    With ``budget`` (at most the server's ``--max-budget``), as ``fennec rank --images
    --budget`` does: that many models run over the images (the best predicted, or with
    ``choose: "change"`` those expected to change the top most), their forward-pass metric
    scores are fused, and ``forward_passes`` says which ran, the rule that chose them and
    what it cost; a zoo whose fit fuses no metric runs nothing and says so in a note."""
    shared = _shared(request)
    service = shared.service
    try:
        encoder = service.encoder()
    except ImagesUnavailable as err:
        raise HTTPException(501, str(err)) from None
    _check_budget(service, body.budget, body.metric, body.choose)  # before any pixel is decoded
    encoded = [item.data for item in body.images]
    labels = [item.label for item in body.images]

    def encode() -> tuple[Mapping[str, Any], dict[str, Any] | None]:
        images = decode_base64_images(encoded, max_pixels=service.max_image_pixels,
                                      max_total_pixels=service.max_request_pixels, max_side=service.max_image_side)
        features = encoder(images, labels)
        if body.budget is None:
            return features, None
        return features, _ranked_on_budget(service, features, images, labels, body)

    assert service.image_pool is not None  # opened with the service
    with _image_slot(service):
        try:
            # Off the event loop: rankings, health checks and writes go on while images decode
            # and a budget's models run.
            features, answer = await asyncio.get_running_loop().run_in_executor(service.image_pool, encode)
        except OverflowError as err:
            raise HTTPException(413, str(err)) from None
        except ImagesUnavailable as err:
            raise HTTPException(501, str(err)) from None
    if answer is not None:
        return JSONResponse(answer)
    return JSONResponse(await rank_answer(shared, dict(features), body.where, None, body.k))


def _check_budget(service: Service, budget: int | str | None, metric: str | None, choose: str | None) -> None:
    """Refuses (422) a metric or a choice rule without a budget, and a budget above the server's
    ``max_budget``."""
    try:
        check_budget_request(budget, metric, choose)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    if budget is None:
        return
    cap = service.max_budget
    if budget == "all":
        # Which models can be run is known only once they are tried, so 'all' counts every model.
        fitted = service.fitted()
        models = 0 if fitted is None else len(fitted.space.models)
        if models > cap:
            raise HTTPException(422, f"budget: 'all' would run up to {models} models, above this server's limit "
                                     f"of {cap} per request (fennec serve --max-budget); give a budget of at most "
                                     f"{cap}")
    elif isinstance(budget, int) and budget > cap:
        raise HTTPException(422, f"budget: {budget} models, above this server's limit of {cap} per request "
                                 f"(fennec serve --max-budget)")


def _ranked_on_budget(service: Service, features: Mapping[str, Any], images: list[Any], labels: list[str],
                      body: ImageRankRequest) -> dict[str, Any]:
    """The answer to an image request with a budget, on an image thread: the ranking
    ``fennec.rank(zoo, task, images=..., budget=...)`` gives, with its forward passes."""
    from ..proxy import load_images, proxy_cache_dir

    assert body.budget is not None
    image_set = load_images(images, labels=labels)
    # The service's zoo connection belongs to the event loop's thread; this thread reads its own.
    with Zoo.open(service.zoo_path) as zoo:
        ranker = Ranker(zoo)
        ranking = ranker.rank_on_budget(dict(features), image_set, body.budget, k=body.k, where=_filters(body.where),
                                        metric=body.metric, cache_dir=proxy_cache_dir(), choose=body.choose)
        return {"version": ranker.version, **ranking.to_dict()}


@_route("GET", "/models", response_model=ModelsPage, tags=["models"])
async def list_models(request: Request, offset: Annotated[int, Query(ge=0)] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> JSONResponse:
    """The zoo's models in the order they were added, ``limit`` from ``offset``."""
    catalog, fitted = _shared(request).service.catalog()
    index = None if fitted is None else fitted.space.row_of
    return JSONResponse({"total": len(catalog.rows), "offset": offset, "limit": limit,
                         "models": [_model_view(row, index) for row in catalog.rows[offset:offset + limit]]})


@_route("GET", "/models/{model_id:path}", tags=["models"], response_model=dict[str, Any],
        responses={404: {"model": Problem, "description": "no model with this id"}})
async def get_model(request: Request,
                    model_id: Annotated[str, PathParam(description="the model's id (may contain '/')")]
                    ) -> JSONResponse:
    """One model's metadata, and whether the fitted state holds it."""
    catalog, fitted = _shared(request).service.catalog()
    row = catalog.by_id.get(model_id)
    if row is None:
        raise HTTPException(404, f"unknown model {model_id!r}")
    return JSONResponse(_model_view(row, None if fitted is None else fitted.space.row_of))


def authorised(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Refuses a missing or wrong bearer token with 401."""
    # The Guard has already refused a missing or wrong token; this declares the
    # scheme in the schema and checks once more.
    token = _shared(request).token
    if token is None or credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), token.encode()):
        raise HTTPException(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})


@_route("POST", "/models", response_model=WriteResponse, tags=["write"], dependencies=[Depends(authorised)],
        responses=WRITE_RESPONSES)
async def add_models(request: Request, body: ModelsRequest) -> dict[str, Any]:
    """Adds models with their side information (bearer token)."""
    rows = [row.model_dump(exclude_none=True) for row in body.models]

    def add(zoo: Zoo) -> int:
        zoo.add_models(rows, replace=body.replace)
        return len(rows)

    return await run_in_threadpool(_shared(request).service.write, add)


@_route("POST", "/history", response_model=WriteResponse, tags=["write"], dependencies=[Depends(authorised)],
        responses=WRITE_RESPONSES)
async def add_history(request: Request, body: HistoryRequest) -> dict[str, Any]:
    """Adds past results: one row per (model, task, kind) (bearer token). A row without a kind
    takes the kind the zoo's current fit was learnt from (else its only kind, else finetune),
    so a result sent without one joins the history the zoo ranks by."""
    rows = [(r.model, r.task, r.score, r.kind, r.source) for r in body.rows]
    stored: list[str] = []

    def add(zoo: Zoo) -> int:
        default = zoo.kind_of_new_results() if any(row[3] is None for row in rows) else None
        history = History.from_rows((m, t, score, k or default, src) for m, t, score, k, src in rows)
        stored.extend(history.kinds)
        return zoo.add_history(history, replace=body.replace, strict=body.strict)

    answer = await run_in_threadpool(_shared(request).service.write, add)
    return {**answer, "kinds": stored}


@_route("GET", "/healthz", response_model=Health, tags=["service"])
async def healthz(request: Request) -> JSONResponse:
    """Alive, and which fitted version is in memory."""
    service = _shared(request).service
    fitted = service.fitted()
    assert service.ranker is not None  # service.fitted() needs it
    return JSONResponse({"status": "ok", "version": __version__,
                         "fitted_version": None if fitted is None else service.ranker.version,
                         "models": 0 if fitted is None else len(fitted.space.models),
                         "task_features": [] if fitted is None else fitted.space.named_features,
                         "descriptor": fitted is not None and fitted.space.takes_descriptor})


@_route("GET", "/metrics", response_class=PlainTextResponse, tags=["service"])
async def prometheus_metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: requests and latency per route, fitted version, models."""
    shared = _shared(request)
    fitted = shared.service.fitted()
    catalog, _ = shared.service.catalog()
    assert shared.service.ranker is not None  # service.fitted() needs it
    text = shared.metrics.render({
        "fennec_fitted_version": ("The fitted version held in memory.",
                                  None if fitted is None else shared.service.ranker.version),
        "fennec_models_fitted": ("Models in the fitted state held in memory.",
                                 0 if fitted is None else len(fitted.space.models)),
        "fennec_models_stored": ("Models stored in the zoo.", len(catalog.rows)),
    })
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
