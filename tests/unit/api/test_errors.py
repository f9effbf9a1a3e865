"""The framework's refusals turned into the monitor's errors (pure functions, no app)."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException

from monitor.api.errors import error_response, from_http_exception, from_validation_errors
from monitor.errors import MethodNotAllowed, NotFound, OutOfRange, RequestInvalid, Unauthorized


def test_http_exceptions_become_our_codes() -> None:
    missing = from_http_exception("GET", "/v1/nope", HTTPException(404))
    assert isinstance(missing, NotFound) and missing.message == "no route for /v1/nope"
    wrong = from_http_exception(
        "GET", "/v1/feedback", HTTPException(405, headers={"Allow": "POST"})
    )
    assert (
        isinstance(wrong, MethodNotAllowed)
        and wrong.message == "GET is not allowed on /v1/feedback"
    )
    assert wrong.headers == [(b"allow", b"POST")]
    said = from_http_exception("GET", "/x", HTTPException(404, "no such thing"))
    assert said.message == "no such thing"
    assert isinstance(from_http_exception("GET", "/x", HTTPException(401)), Unauthorized)
    teapot = from_http_exception("GET", "/x", HTTPException(418))
    assert isinstance(teapot, RequestInvalid) and teapot.status == 418
    busy = from_http_exception("GET", "/x", HTTPException(503))
    assert (busy.code, busy.status) == ("INTERNAL_ERROR", 503)


def test_validation_errors_split_shape_from_value() -> None:
    choice = from_validation_errors(
        [{"type": "literal_error", "loc": ("query", "state"), "msg": "Input should be 'firing'"}]
    )
    assert isinstance(choice, OutOfRange) and choice.status == 422 and choice.param == "state"
    assert choice.message == "state: Input should be 'firing'"
    typed = from_validation_errors(
        [{"type": "int_parsing", "loc": ("query", "limit"), "msg": "not an integer"}]
    )
    assert type(typed) is RequestInvalid and typed.status == 400 and typed.param == "limit"
    body = from_validation_errors([{"type": "json_invalid", "loc": ("body", 1), "msg": "bad"}])
    assert type(body) is RequestInvalid and body.param == "1"
    assert from_validation_errors([]).message == "invalid request"


def test_the_shape_follows_the_path() -> None:
    error = NotFound("gone", param="id")
    error.headers.append((b"allow", b"GET"))
    scope = {"type": "http", "path": "/api/show", "state": {"request_id": "abc"}}
    ollama = error_response(scope, error)
    assert orjson.loads(ollama.body) == {"error": "gone", "code": "NOT_FOUND", "request_id": "abc"}
    assert (b"allow", b"GET") in ollama.raw_headers and ollama.status_code == 404
    openai = error_response({**scope, "path": "/v1/models"}, error)
    assert orjson.loads(openai.body) == {
        "error": {
            "message": "gone",
            "type": "invalid_request_error",
            "param": "id",
            "code": "NOT_FOUND",
            "request_id": "abc",
        }
    }
