"""schemathesis over the app's own OpenAPI description: every non-proxy route (health, ready,
metrics, model lists, feedback, admin), with data that fits the description and data that does
not, through the real app in-process.

The description is `api.openapi()` (the app serves none: docs are off), loaded with
`schemathesis.openapi.from_dict`, with three additions: the feedback body, as the README
describes it (the route reads its own body, to cap it, so the framework cannot describe it),
whose `request_id` is sometimes the id of a request the app has just answered, so scores do
get stored; `since` and `until` as epoch seconds, which the framework accepts besides ISO 8601;
and credentials, which the description does not declare: each case carries the credential its
route wants, the other one, a wrong one, both or none.

Cases are sent by `tests.support.inprocess` (one event loop that also runs the app's lifespan,
a real client address) rather than schemathesis' own ASGI client, then judged twice: by
schemathesis' checks (no 5xx; data outside the description refused) and by the fuzz suite's
properties (`tests.support.fuzzing`: every refusal in the client's protocol, with its code
and the request id).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import given, note
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.support.fuzzing import ADMIN_TOKEN, CLIENT_KEY, check_answer, fuzz_settings
from tests.support.inprocess import JSON_HEADERS, Answer, InProcessApp

pytestmark = pytest.mark.fuzz

BASE_URL = "http://localhost:8000"
# what refuses a request that does not fit the description: the README's error statuses
# (schemathesis' default list lacks 408 and 413, which are refusals too)
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [
        "400", "401", "403", "404", "405", "408", "413", "415", "422", "429"]}}}
)  # fmt: skip


ADMIN = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
CLIENT = [(b"authorization", f"Bearer {CLIENT_KEY}".encode())]
# mostly the credential the route wants (the admin token under /admin, else the client key),
# else the other one, a wrong one, none, or both (the admin token and X-API-Key)
CREDENTIALS = st.sampled_from(["right", "right", "right", "other", "wrong", "none", "both"])


def credentials(kind: str, path: str) -> list[tuple[bytes, bytes]]:
    right, other = (ADMIN, CLIENT) if path.startswith("/admin") else (CLIENT, ADMIN)
    return {
        "right": right,
        "other": other,
        "wrong": [(b"authorization", b"Bearer wrong-token-0123456789")],
        "none": [],
        "both": [*ADMIN, (b"x-api-key", CLIENT_KEY.encode())],
    }[kind]


def feedback_body(known_ids: list[str]) -> dict[str, Any]:
    """`POST /v1/feedback`'s body as the README describes it."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "request_id": {
                            "anyOf": [
                                {"enum": known_ids},
                                {"type": "string", "minLength": 1, "maxLength": 64},
                            ]
                        },
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                        "comment": {"type": "string", "maxLength": 4000},
                    },
                    "required": ["request_id"],
                    "additionalProperties": False,
                }
            }
        },
    }


@pytest.fixture(scope="module")
def app(start_app: Callable[..., InProcessApp]) -> InProcessApp:
    return start_app(
        api_keys=CLIENT_KEY,
        admin_token=ADMIN_TOKEN,
        rate_limit="100000/minute",
        alerts={"enabled": True},
    )


@pytest.fixture(scope="module")
def cases(app: InProcessApp) -> dict[GenerationMode, st.SearchStrategy[Any]]:
    """schemathesis' cases for the app's description, per generation mode."""
    answered = []
    for route in ("/v1/chat/completions", "/api/generate"):
        body = b'{"model": "gemma", "prompt": "Hi", "stream": false, "messages": [{"role": "user", "content": "Hi"}]}'
        headers = [*JSON_HEADERS, (b"authorization", f"Bearer {CLIENT_KEY}".encode())]
        answer = app.request("POST", route, headers, [body])
        assert answer.status == 200, answer
        answered.append(answer.header("x-request-id") or "")
    description = copy.deepcopy(app.app.api.openapi())
    description["paths"]["/v1/feedback"]["post"]["requestBody"] = feedback_body(answered)
    for parameter in description["paths"]["/admin/summary"]["get"]["parameters"]:
        if parameter["name"] in ("since", "until"):  # pydantic also reads epoch seconds
            parameter["schema"]["anyOf"].append({"type": "number"})
    schema = schemathesis.openapi.from_dict(description, config=CONFIG)
    return {mode: schema.as_strategy(generation_mode=mode) for mode in GenerationMode}


def send(app: InProcessApp, case: Any, kind: str) -> tuple[requests.PreparedRequest, Answer]:
    """Send a schemathesis case as a server would hand it to the app: the request it was
    prepared as (for schemathesis' checks) and the answer."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    prepared = requests.Request(
        **{k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params",
                                                    "cookies", "json", "data", "files")}
    ).prepare()  # fmt: skip
    url = urlsplit(prepared.url or "")
    headers = [(b"host", b"localhost:8000")]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in prepared.headers.items()]
    body = prepared.body or b""
    body = body.encode() if isinstance(body, str) else body
    headers += credentials(kind, case.path)
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    note(f"{prepared.method} {prepared.url} {headers} {body[:300]!r}")
    answer = app.request(
        str(prepared.method), unquote(url.path), headers, [body], query=url.query.encode()
    )
    return prepared, answer


def judge(case: Any, prepared: requests.PreparedRequest, answer: Answer) -> None:
    grouped: dict[str, list[str]] = {}
    for name, value in answer.headers:
        grouped.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    response = schemathesis.Response(answer.status, grouped, answer.body, prepared, 0.0, True)
    case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])
    check_answer(case.method, case.formatted_path, answer)


Cases = dict[GenerationMode, st.SearchStrategy[Any]]


@fuzz_settings(400)
@given(data=st.data(), kind=CREDENTIALS)
def test_described_requests(
    app: InProcessApp, cases: Cases, data: st.DataObject, kind: str
) -> None:
    case = data.draw(cases[GenerationMode.POSITIVE], label="case")
    judge(case, *send(app, case, kind))


@fuzz_settings(400)
@given(data=st.data(), kind=CREDENTIALS)
def test_requests_outside_the_description(
    app: InProcessApp, cases: Cases, data: st.DataObject, kind: str
) -> None:
    case = data.draw(cases[GenerationMode.NEGATIVE], label="case")
    judge(case, *send(app, case, kind))
