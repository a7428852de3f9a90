"""How refusals become answers: the status and ``detail`` of each refused request, and JSON
answers written straight to the ASGI ``send`` where the service answers without the framework."""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import Send

from ..zoo import ZooError

__all__ = ["REFUSALS", "problem", "refused", "send_json", "send_problem"]

# The errors that are the request's fault: each becomes a 4xx (see problem).
REFUSALS = (RequestValidationError, ZooError, ValueError, TypeError)

# What Starlette's JSONResponse writes: compact UTF-8, no NaN (used where the service answers by hand).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def problem(error: Exception) -> tuple[int, object] | None:
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


async def refused(request: Request, error: Exception) -> JSONResponse:
    """The application's handler of :data:`REFUSALS`."""
    refusal = problem(error)
    assert refusal is not None, "refused handles only REFUSALS, and problem answers each of them"
    status, detail = refusal
    return JSONResponse({"detail": detail}, status_code=status)


async def send_json(send: Send, status: int, content: object, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answers with ``content`` as JSON, encoded as Starlette's JSONResponse encodes it."""
    body = _JSON.encode(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *[(k.encode(), v.encode()) for k, v in headers]]})
    await send({"type": "http.response.body", "body": body})


async def send_problem(send: Send, status: int, detail: object, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answers ``{"detail": detail}`` with ``status``."""
    await send_json(send, status, {"detail": detail}, headers)
