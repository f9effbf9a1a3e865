"""Real databases for tests: a throwaway Postgres schema, or a SQLite file.

Postgres is the server named by MONITOR_TEST_POSTGRES_URL (default: local, trust auth). Each
test gets its own schema, reached through the connection's `search_path`, so tests are
isolated from each other and from earlier runs, and the schema is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from monitor.guard.verdict import Action, Finding, Stage, Verdict
from monitor.record import RequestRecord

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> URL:
    return make_url(os.environ.get("MONITOR_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


def render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def with_schema(url: URL, schema: str) -> URL:
    return url.update_query_dict({"options": f"-csearch_path={schema}"})


@contextmanager
def postgres_schema() -> Iterator[URL]:
    """A URL whose connections use a fresh, empty schema; dropped on exit.

    Skips the test when the Postgres server cannot be reached.
    """
    base = postgres_base_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"Postgres at {base.render_as_string()} unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI provides Postgres: its absence is a failure, not a skip
        pytest.skip(message)
    try:
        yield with_schema(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'monitor.db'}"


@contextmanager
def database_url(kind: str, directory: Path) -> Iterator[str]:
    """A URL to an empty database: `kind` is "sqlite" (a file in `directory`) or "postgres"."""
    if kind == "sqlite":
        yield sqlite_url(directory)
        return
    with postgres_schema() as url:
        yield render(url)


# For `@pytest.fixture(params=BOTH_DATABASES)`: every store test runs on both.
BOTH_DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def sample_verdicts(count: int) -> list[dict[str, Any]]:
    """`count` (0, 1 or 2) verdicts as a record holds them: an input verdict that redacts an
    email and lets a near-miss injection score through, then an output verdict that blocks."""
    verdicts = [
        Verdict(
            stage=Stage.INPUT,
            policy="default",
            action=Action.REDACT,
            findings=(
                Finding(
                    "injection.ignore_previous",
                    "injection",
                    Action.ALLOW,
                    "injection",
                    path="messages[0].content",
                    score=0.41,
                ),
                Finding("pii.email", "pii", Action.REDACT, "pii", "messages[1].content", (10, 27)),
            ),
            latency_us=85,
            skipped=("classifier",),
        ),
        Verdict(
            stage=Stage.OUTPUT,
            policy="default",
            action=Action.BLOCK,
            findings=(Finding("secret.aws_key", "secret", Action.BLOCK, "secrets", None, (0, 20)),),
            latency_us=40,
        ),
    ]
    return [verdict.as_dict() for verdict in verdicts[:count]]


def make_records(
    count: int, prefix: str = "r", start: datetime | None = None, *, verdicts: bool = False
) -> list[RequestRecord]:
    """`count` distinct records, one millisecond apart, with a mix of outcomes and models;
    with `verdicts`, record i holds `sample_verdicts(i % 3)` (none, one, two in turn)."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = ("ok", "ok", "ok", "blocked_input", "backend_error")
    return [
        RequestRecord(
            id=f"{prefix}-{i:06d}",
            ts=start + timedelta(milliseconds=i),
            route="/v1/chat/completions",
            protocol="openai",
            model="gemma-3-270m" if i % 2 else "gemma-3-1b",
            backend="http://127.0.0.1:8080",
            principal=f"{i % 7:016x}",
            stream=bool(i % 3),
            outcome=outcomes[i % len(outcomes)],
            http_status=200,
            latency_ms=12.5 + i,
            prompt_tokens=10,
            completion_tokens=20,
            tokens_per_s=40.0,
            prompt_hash="ab" * 32,
            extra={"i": i, "tags": ["a", "b"]},
            verdicts=sample_verdicts(i % 3) if verdicts else [],
        )
        for i in range(count)
    ]


async def wait_until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll `predicate` until it holds; fail the test after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.02)
