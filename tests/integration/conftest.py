from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from monitor.store import migrate
from monitor.store.engine import make_engine
from tests.support.databases import BOTH_DATABASES, database_url


@pytest.fixture(params=BOTH_DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database: a SQLite file, then a fresh Postgres schema."""
    with database_url(request.param, tmp_path) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()
