"""A private Postgres server for fault tests: its own `initdb` cluster in a temporary directory,
on its own loopback port, that a test may stop and start at will.

The shared test server stays untouched: stopping this one cuts only the test's own monitor off
its database. The binaries come from `pg_config --bindir`. `initdb` refuses to run as root, so
as root the cluster belongs to the `postgres` user (the directory is handed to it and every
command runs under its uid); as anyone else it belongs to the caller.

    with PrivatePostgres.create() as pg:     # initdb + start, skips when Postgres is missing
        url = pg.database("faults")          # a fresh database, as a SQLAlchemy URL string
        pg.stop()                            # connections refused from here ...
        pg.start()                           # ... until here, same port, same data
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.support.servers import free_port


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    path = Path(out.stdout.strip())
    return path if (path / "initdb").exists() and (path / "pg_ctl").exists() else None


class PrivatePostgres:
    """One throwaway cluster: `start()`, `stop()`, `database(name)`, `close()` removes it."""

    def __init__(self, bindir: Path, directory: Path, user: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self._user = user  # run as this user (we are root), else as ourselves
        self.running = False

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb a new cluster and start it; skips the test when the binaries are missing."""
        bindir = _bindir()
        if bindir is None:
            pytest.skip("initdb/pg_ctl not found (pg_config --bindir)")
        user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        directory = Path(tempfile.mkdtemp(prefix="gemma-monitor-pg-"))
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        server = cls(bindir, directory, user)
        try:
            server._run(
                "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
                "--no-sync", "-E", "UTF8", "--locale=C",
            )  # fmt: skip
            with open(server.data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"port = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{server.directory}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 100\nshared_buffers = 32MB\n"
                )
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    @property
    def base_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def database(self, name: str) -> str:
        """Create database `name` (dropping an older one) and return its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement through psql; its unaligned, tuples-only output."""
        out = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql,
        )  # fmt: skip
        return out.strip()

    def start(self, timeout_s: float = 30.0) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(int(timeout_s)), "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (sessions ended, as an orderly shutdown) or `immediate`
        (as a crash: no checkpoint, recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            result = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"private Postgres not ready within {timeout_s}s")
            time.sleep(0.1)

    def _run(self, program: str, *args: str) -> str:
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            cwd=self.directory,
            timeout=120,
            check=False,
            **kwargs,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise subprocess.CalledProcessError(
                result.returncode, program, result.stdout, result.stderr + log
            )
        return result.stdout

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
