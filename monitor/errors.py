"""Errors the client sees, and the exceptions that carry them to the one place that renders them.

    ProxyError                  a request ends with an error response (never a 500 for bad input)
    ├── RequestInvalid          400 VALIDATION_ERROR: malformed JSON, invalid UTF-8, wrong types,
    │   │                       missing fields (in a body or a query parameter), a policy an
    │   │                       admin reload found invalid (the running one stays)
    │   ├── BodyTooLarge        413 VALIDATION_ERROR: body over `max_body_bytes`
    │   ├── BodyTimeout         408 VALIDATION_ERROR: the body took longer than
    │   │                       `request_body_timeout_s` to arrive (the connection is closed)
    │   ├── HeaderTimeout       408 VALIDATION_ERROR: the headers took longer than
    │   │                       `request_header_timeout_s` (answered by `api.http_protocol`)
    │   ├── OutOfRange          422 VALIDATION_ERROR: a field of the right type with a value
    │   │                       outside its range or choices (a score over 1, a window of 400d)
    │   ├── UnsupportedMediaType 415 UNSUPPORTED_MEDIA_TYPE: a JSON route's body not declared
    │   │                       `application/json` (what browsers send cross-origin unasked)
    │   └── HostNotAllowed      421 HOST_NOT_ALLOWED: a `Host` outside `allowed_hosts` (DNS
    │                           rebinding, or a client using a name the monitor does not serve)
    ├── ContentFiltered         400 CONTENT_FILTERED: the input guard blocked the request
    ├── ResponseFiltered        400 RESPONSE_FILTERED: the output guard blocked the response
    │                           (streams end with finish_reason content_filter instead)
    ├── Unauthorized            401 UNAUTHORIZED: API keys are required and none (or a wrong
    │                           one) was given, or an admin route without its bearer token
    ├── NotFound                404 NOT_FOUND: no route for the path, or no such thing behind
    │                           it (request id, alert, a feature that is off)
    ├── MethodNotAllowed        405 METHOD_NOT_ALLOWED: the path exists for other methods;
    │                           carries Allow
    ├── RateLimited             429 RATE_LIMIT_EXCEEDED: the principal is over its window;
    │                           carries Retry-After and X-RateLimit-* headers
    ├── BackendFailed           502 GENERATION_ERROR: backend refused the connection, reset it,
    │   │                       answered 5xx or something that is not its protocol
    │   └── BackendTimeout      504 GENERATION_ERROR: no byte from the backend within the timeout
    ├── StoreUnavailable        503 STORE_UNAVAILABLE: the database or the shared rate-limit
    │                           store cannot answer or take a write
    └── InternalError           500 INTERNAL_ERROR: a defect in the monitor itself (logged with
                                its traceback, never sent)

Rendering into the client's protocol (OpenAI error object or Ollama's `{"error": ...}`) happens
in `monitor.proxy.protocols.error_body`, called by the proxy handler for generation routes and
by `monitor.api.errors` for every other route.
"""

from __future__ import annotations

from typing import ClassVar

from monitor.record import Outcome


class ProxyError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: int = 500  # an instance may narrow it (a backend 4xx keeps its status)
    outcome: ClassVar[Outcome] = "backend_error"
    error_type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: list[tuple[bytes, bytes]] = []  # sent with the error response


class RequestInvalid(ProxyError):
    code = "VALIDATION_ERROR"
    status = 400
    outcome = "invalid"
    error_type = "invalid_request_error"


class BodyTooLarge(RequestInvalid):
    status = 413


class BodyTimeout(RequestInvalid):
    status = 408

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g}s")
        self.headers.append((b"connection", b"close"))  # the rest of the body is not read


class HeaderTimeout(RequestInvalid):
    status = 408

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request headers did not arrive within {timeout_s:g}s")
        self.headers.append((b"connection", b"close"))


class OutOfRange(RequestInvalid):
    status = 422


class UnsupportedMediaType(RequestInvalid):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class HostNotAllowed(RequestInvalid):
    code = "HOST_NOT_ALLOWED"
    status = 421


class NotFound(ProxyError):
    code = "NOT_FOUND"
    status = 404
    outcome = "invalid"
    error_type = "invalid_request_error"


class MethodNotAllowed(ProxyError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    outcome = "invalid"
    error_type = "invalid_request_error"


class StoreUnavailable(ProxyError):
    code = "STORE_UNAVAILABLE"
    status = 503
    outcome = "backend_error"
    error_type = "server_error"


class BackendFailed(ProxyError):
    code = "GENERATION_ERROR"
    status = 502
    outcome = "backend_error"
    error_type = "server_error"

    def __init__(
        self, message: str, *, upstream_status: int | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.upstream_status = upstream_status


class BackendTimeout(BackendFailed):
    status = 504


class InternalError(ProxyError):
    code = "INTERNAL_ERROR"
    status = 500
    outcome = "backend_error"
    error_type = "server_error"


class Unauthorized(ProxyError):
    code = "UNAUTHORIZED"
    status = 401
    outcome = "invalid"
    error_type = "authentication_error"


class RateLimited(ProxyError):
    code = "RATE_LIMIT_EXCEEDED"
    status = 429
    outcome = "rate_limited"
    error_type = "rate_limit_error"


class ContentFiltered(ProxyError):
    code = "CONTENT_FILTERED"
    status = 400
    outcome = "blocked_input"
    error_type = "invalid_request_error"


class ResponseFiltered(ProxyError):
    code = "RESPONSE_FILTERED"
    status = 400
    outcome = "blocked_output"
    error_type = "invalid_request_error"
