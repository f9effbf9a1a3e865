"""Schema migrations (Alembic), driven from code: `gemma-monitor db upgrade` and startup checks.

The Alembic configuration is built here, not read from an alembic.ini: the scripts live in
the `monitor.migrations` package (the repository's `migrations/` folder, installed inside
`monitor`), and the database URL comes from the caller (`Settings`).

    NotMigratedError   raised by `check_migrated` when the database is not at the head revision;
                       the message says how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine

from monitor.store.engine import make_engine, redact_url


class NotMigratedError(RuntimeError):
    """The database schema is not at the revision this code expects."""


def alembic_config() -> Config:
    """An Alembic `Config` pointing at the bundled `monitor.migrations` package, with no URL set."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    return config


def script_location() -> Path:
    """The folder of `env.py` and `versions/`, wherever `monitor.migrations` is imported from:
    the source checkout in an editable install, site-packages from a wheel."""
    location = resources.files("monitor.migrations")
    if not isinstance(location, Path):  # e.g. a zipped install: Alembic reads a directory
        raise RuntimeError(f"the migrations are not a folder on disk: {location}")
    return location


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migrations package holds no revision")
    return head


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest)."""
    with _connected_config(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str | URL | Engine, revision: str) -> None:
    """Migrate the database down to `revision` (`"base"` removes every table)."""
    with _connected_config(url) as config:
        command.downgrade(config, revision)


def current_revision(url: str | URL | Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with _engine(url) as engine, engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_migrated(engine: Engine) -> None:
    """Refuse to run on a database that is not at the head revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise NotMigratedError(
            f"database {redact_url(engine.url)} is not migrated "
            f"(at {current or 'no revision'}, head is {head}): "
            "run `gemma-monitor db upgrade` (or set MONITOR_AUTO_MIGRATE=true)"
        )


@contextmanager
def _engine(url: str | URL | Engine) -> Iterator[Engine]:
    """The caller's engine as is, or a temporary one for a URL (disposed afterwards)."""
    if isinstance(url, Engine):
        yield url
        return
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _connected_config(url: str | URL | Engine) -> Iterator[Config]:
    # One transaction for the whole run: on Postgres a failed migration leaves nothing behind.
    with _engine(url) as engine, engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        yield config
