"""The one place where the non-proxy routes' exceptions become responses.

Routes raise `ProxyError` subclasses (`monitor.errors`); the framework raises `HTTPException`
(no route: 404, wrong method: 405) and `RequestValidationError` (a query or body parameter of
the wrong type or out of range). Each is turned into a `ProxyError` and written by the proxy's
own `protocols.error_body`, so a client sees one shape whichever side of the monitor answered:
the OpenAI error object, or Ollama's `{"error": ...}` under `/api/` (the Ollama client's
paths). Every body carries the request id that `RequestIds` put in the `X-Request-ID` header.

Anything else escaping a route is a defect of ours: `RequestIds` logs it with its traceback and
answers 500 INTERNAL_ERROR naming only the exception's class. That happens in the middleware,
not in an `Exception` handler, because Starlette runs such a handler outside every middleware
(so the answer would lack the header) and re-raises after it (so the server logs it twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.errors import (
    BodyTimeout,
    InternalError,
    MethodNotAllowed,
    NotFound,
    OutOfRange,
    ProxyError,
    RequestInvalid,
    Unauthorized,
)
from monitor.proxy import protocols
from monitor.record import new_request_id

log = logging.getLogger(__name__)

_STATE_KEY = "request_id"
# pydantic error types that say the value has the wrong shape (400), not a wrong value (422)
_SHAPE_ERRORS = frozenset({"missing", "json_invalid", "extra_forbidden", "json_type"})


def request_id(scope: Scope) -> str:
    """The id `RequestIds` gave this request (a fresh one if it did not run)."""
    state = scope.setdefault("state", {})
    found = state.get(_STATE_KEY)
    if not isinstance(found, str):
        found = state[_STATE_KEY] = new_request_id()
    return found


def protocol_for(path: str) -> str:
    return protocols.OLLAMA if path.startswith("/api/") else protocols.OPENAI


def error_response(scope: Scope, error: ProxyError) -> Response:
    """`error` in the protocol of the client that asked `scope`'s path, with its headers."""
    body = protocols.error_body(protocol_for(scope["path"]), error, request_id(scope))
    response = Response(body, error.status, media_type="application/json")
    response.raw_headers.extend(error.headers)
    return response


def from_http_exception(method: str, path: str, exc: HTTPException) -> ProxyError:
    """The framework's own refusals as our errors; its default detail is the bare status
    phrase, replaced by a sentence naming the path."""
    detail = str(exc.detail)
    default = detail == HTTPStatus(exc.status_code).phrase
    error: ProxyError
    if exc.status_code == 404:
        error = NotFound(f"no route for {path}" if default else detail)
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{method} is not allowed on {path}" if default else detail)
    elif exc.status_code == 401:
        error = Unauthorized(detail)
    elif exc.status_code < 500:
        error = RequestInvalid(detail)
        error.status = exc.status_code
    else:
        error = InternalError(detail)
        error.status = exc.status_code
    for name, value in (exc.headers or {}).items():
        error.headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return error


def from_validation_errors(errors: Sequence[Any]) -> ProxyError:
    """FastAPI's parameter checks as our VALIDATION_ERROR: 400 for a missing parameter or one
    of the wrong type (as the proxy answers a bad body), 422 for a value outside its range or
    choices. Names the first failing parameter."""
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "body", "path")]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid request"))
    kind = str(first.get("type", ""))
    shape = kind in _SHAPE_ERRORS or kind.endswith(("_type", "_parsing"))
    cls = RequestInvalid if shape else OutOfRange
    return cls(f"{param}: {message}" if param else message, param=param)


async def _on_proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return error_response(request.scope, exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(
        request.scope, from_http_exception(request.method, request.scope["path"], exc)
    )


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(request.scope, from_validation_errors(exc.errors()))


class RequestIds:
    """Pure ASGI middleware: gives each HTTP request an id, puts it in the `X-Request-ID`
    header of every answer (success or error), and turns an exception that escaped every
    handler into a logged 500 INTERNAL_ERROR. Pure ASGI rather than `BaseHTTPMiddleware`,
    which would buffer responses through a second task."""

    def __init__(self, app: ASGIApp, body_timeout_s: float | None = None) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        header = (b"x-request-id", rid.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        if self.body_timeout_s is not None:
            receive = _body_deadline(receive, self.body_timeout_s)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late to answer: let the server close the connection
                raise
            log.exception("request %s failed inside the monitor", rid)
            error = InternalError(f"internal error ({exc.__class__.__name__}); see the log")
            await error_response(scope, error)(scope, receive, send_with_id)


def _body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """`receive`, raising `BodyTimeout` (408, the connection closed) when the request body has
    not all arrived `timeout_s` after it was first asked for: a client sending a body byte by
    byte cannot hold a connection (and a route) for ever. After the body, it is `receive`."""
    deadline: float | None = None
    done = False

    async def timed() -> Message:
        nonlocal deadline, done
        if done:
            return await receive()
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + timeout_s
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise BodyTimeout(timeout_s) from None
        done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return timed


def install_error_handling(app: FastAPI, *, body_timeout_s: float | None = None) -> None:
    """Register the handlers above and the request-id middleware on `app` (with a time limit
    on reading request bodies when `body_timeout_s` is given)."""
    app.add_exception_handler(ProxyError, _on_proxy_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_middleware(RequestIds, body_timeout_s=body_timeout_s)
