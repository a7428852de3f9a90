"""The outermost ASGI layer: timing, the write token, content types and body limits."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics
from .responses import send_problem

__all__ = ["JSON_ROUTES", "WRITE_ROUTES", "Guard", "RankHandler"]

WRITE_ROUTES = {("POST", "/history"), ("POST", "/models")}
JSON_ROUTES = {("POST", "/rank"), ("POST", "/rank/images"), *WRITE_ROUTES}

# Answers POST /rank from the request's scope and whole body, without the framework.
RankHandler = Callable[[Scope, bytes, Send], Awaitable[None]]

# A refusal's arguments to send_problem after ``send``: status, detail and, for 401, the challenge header.
_Refusal = tuple[int, str] | tuple[int, str, tuple[tuple[str, str], ...]]


class Guard:
    """Outermost layer: times every request for /metrics, checks the bearer token of
    writes before their body is read, and refuses bodies above the limit with 413.
    ``rank``, when given, answers ``POST /rank`` once its body is read."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, token: str | None, max_body_bytes: int,
                 rank: RankHandler | None = None) -> None:
        self.app = app
        self.rank = rank
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def timed_send(message: Message) -> None:
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

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["method"], scope["path"]) in WRITE_ROUTES:
            problem = self._check_token(scope)
            if problem is not None:
                return await send_problem(send, *problem)
        length = content_type = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if (scope["method"], scope["path"]) in JSON_ROUTES and (content_type is None or
                                          content_type.split(b";")[0].strip().lower() != b"application/json"):
            return await send_problem(send, 415, "send the body as JSON with 'Content-Type: application/json'")
        if length is not None:
            if not length.isdigit():
                return await send_problem(send, 400, "Content-Length is not a number")
            if int(length) > self.max_body_bytes:
                return await send_problem(
                    send, 413, f"the body has {int(length)} bytes, above the limit of {self.max_body_bytes}")
        if scope["method"] in ("GET", "HEAD") and length is None:
            return await self.app(scope, receive, send)
        body = await self._read_body(receive, send)
        if body is None:
            return
        if self.rank is not None and scope["method"] == "POST" and scope["path"] == "/rank":
            return await self.rank(scope, body, send)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body (it is small by construction), counted as it arrives when it comes
        chunked without a length; None once refused with 413 or when the client went away."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_problem(send, 413, f"the body is above the limit of {self.max_body_bytes} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_token(self, scope: Scope) -> _Refusal | None:
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
