"""Migrations on real Postgres and SQLite: up, down, up again; and the startup refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.models import Base
from tests.support.databases import BOTH_DATABASES, database_url, postgres_schema


@pytest.fixture(params=BOTH_DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


ISSUE_TABLES = {"probe_samples", "quality_scores", "alerts", "alert_events", "alert_deliveries"}
ROLLUP_TABLES = {
    "rollup_requests", "rollup_principals", "rollup_verdicts", "rollup_probes", "rollup_quality",
    "rollup_state",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    head = migrate.head_revision()
    assert migrate.current_revision(db_url) is None

    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == head
    base_tables = {"alembic_version", "requests", "guard_verdicts"}
    assert _tables(db_url) == base_tables | ISSUE_TABLES | ROLLUP_TABLES

    migrate.downgrade(db_url, "0003")
    assert _tables(db_url) == base_tables | ISSUE_TABLES

    migrate.upgrade(db_url)
    assert _tables(db_url) == base_tables | ISSUE_TABLES | ROLLUP_TABLES

    migrate.downgrade(db_url, "0002")
    assert _tables(db_url) == {"alembic_version", "requests", "guard_verdicts"}

    migrate.downgrade(db_url, "0001")
    assert _tables(db_url) == {"alembic_version", "requests"}

    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    assert _tables(db_url) == {"alembic_version"}

    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == head
    engine = make_engine(db_url)
    try:
        inspector = inspect(engine)
        indexes = {ix["name"] for ix in inspector.get_indexes("requests")}
        assert {"ix_requests_ts", "ix_requests_outcome_ts", "ix_requests_model_ts"} <= indexes
        indexes = {ix["name"] for ix in inspector.get_indexes("guard_verdicts")}
        assert {
            "ix_guard_verdicts_request_id",
            "ix_guard_verdicts_ts",
            "ix_guard_verdicts_action_ts",
        } <= indexes
        (foreign_key,) = inspector.get_foreign_keys("guard_verdicts")
        assert foreign_key["referred_table"] == "requests"
        assert foreign_key["constrained_columns"] == ["request_id"]
        assert foreign_key["options"].get("ondelete") == "CASCADE"
    finally:
        engine.dispose()


def test_models_match_the_migrations(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_check_migrated_refuses_an_unmigrated_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(migrate.NotMigratedError) as refused:
            migrate.check_migrated(engine)
        message = str(refused.value)
        assert "is not migrated (at no revision, head is " in message
        assert "run `gemma-monitor db upgrade` (or set MONITOR_AUTO_MIGRATE=true)" in message

        migrate.upgrade(engine)
        migrate.check_migrated(engine)  # no longer raises
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_refusal_names_the_database_without_its_password() -> None:
    with postgres_schema() as url:
        # Trust authentication ignores the password, so the URL still connects.
        engine = make_engine(url.set(password="s3cret-pw"))
        try:
            with pytest.raises(migrate.NotMigratedError) as refused:
                migrate.check_migrated(engine)
        finally:
            engine.dispose()
    assert "s3cret-pw" not in str(refused.value)
    assert "***" in str(refused.value)
