"""Engines as built by `make_engine`: URLs, SQLite pragmas, failing fast on a dead server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from monitor.store.engine import make_engine, normalize_url, ping, redact_url
from tests.support.tcp_relay import TcpRelay


def test_postgres_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_redact_url_hides_the_password() -> None:
    redacted = redact_url("postgresql://monitor:hunter2@db.internal:5432/monitor")
    assert "hunter2" not in redacted
    assert redacted == "postgresql+psycopg://monitor:***@db.internal:5432/monitor"
    assert redact_url("sqlite:///var/x.db") == "sqlite:///var/x.db"


def test_sqlite_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'monitor.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert (tmp_path / "nested" / "dir" / "monitor.db").exists()
        assert ping(engine)
    finally:
        engine.dispose()


async def test_in_memory_sqlite_is_one_database_across_threads() -> None:
    engine = make_engine("sqlite://")

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())

    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert await asyncio.to_thread(count) == 1  # the recorder writes from worker threads
    finally:
        engine.dispose()


def test_ping_reports_a_dead_postgres() -> None:
    relay = TcpRelay("127.0.0.1", 5432).start()
    relay.cut()  # a port nobody listens on
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{relay.port}/test")
    try:
        assert not ping(engine)
    finally:
        engine.dispose()
