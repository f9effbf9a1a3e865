"""What the fuzz tests hold every answer to, and how many examples they try.

Properties of any answer, whatever was sent:

- never a 500: bad input is the client's mistake (4xx), a backend or store failure is 502-504,
  and a 500 is a defect of the monitor;
- an `X-Request-ID` header on every answer;
- every refusal (4xx and 5xx) in the protocol of the client that asked: Ollama's
  `{"error": "...", "code": "...", "request_id": "..."}` under `/api/`, OpenAI's
  `{"error": {"message", "type", "param", "code", "request_id"}}` elsewhere, with one of the
  documented codes and the header's request id; a 429 says when to retry, a 405 what is
  allowed.

`MONITOR_FUZZ_SCALE` multiplies every fuzz test's number of examples (a long run:
`MONITOR_FUZZ_SCALE=20`); such a run draws new examples each time instead of the fixed ones.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st

from monitor import errors
from tests.support.inprocess import Answer

FUZZ_SCALE = max(1, int(os.environ.get("MONITOR_FUZZ_SCALE", "1") or "1"))
# The credentials the fuzzed apps are configured with; cases send them, wrong ones, or none.
CLIENT_KEY = "fuzz-client-key-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
CREDENTIALS = st.sampled_from(
    [[], [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())],
     [(b"authorization", f"Bearer {CLIENT_KEY}".encode())], [(b"x-api-key", CLIENT_KEY.encode())],
     [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode()), (b"x-api-key", CLIENT_KEY.encode())],
     [(b"authorization", b"Bearer " + ADMIN_TOKEN[:-1].encode())]]
)  # fmt: skip


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for `examples` examples (times `MONITOR_FUZZ_SCALE`): derandomized
    in the default run, so CI runs the same cases everywhere; no example database is kept."""
    return settings(
        max_examples=examples * FUZZ_SCALE,
        deadline=None,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def _codes(cls: type[errors.ProxyError]) -> set[str]:
    found = {cls.code}
    for sub in cls.__subclasses__():
        found |= _codes(sub)
    return found


ERROR_CODES = frozenset(_codes(errors.ProxyError) - {"INTERNAL_ERROR"})


def check_answer(method: str, path: str, answer: Answer) -> None:
    """Assert the properties above for the answer to `method path`."""
    if currently_in_test_context():  # the spread of answers: --hypothesis-show-statistics
        event(f"{answer.status}")
    shown = (answer.status, answer.headers, answer.body[:500])
    assert answer.status != 500, shown
    assert 100 <= answer.status < 600, shown
    request_id = answer.header("x-request-id")
    assert request_id, shown
    if answer.status < 400 or method.upper() == "HEAD":
        return
    try:
        body: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise AssertionError(("a refusal that is not JSON", *shown)) from None
    assert isinstance(body, dict), shown
    if path.startswith("/api/"):
        assert isinstance(body.get("error"), str) and body["error"], shown
        code = body.get("code")
        given_id = body.get("request_id")
    else:
        error = body.get("error")
        assert isinstance(error, dict), shown
        assert isinstance(error.get("message"), str) and error["message"], shown
        assert isinstance(error.get("type"), str), shown
        code = error.get("code")
        given_id = error.get("request_id")
    assert code in ERROR_CODES, shown
    assert given_id == request_id, shown
    if code == "RATE_LIMIT_EXCEEDED":
        assert answer.header("retry-after"), shown
    if answer.status == 405:
        assert answer.header("allow") is not None, shown
