"""The leader's lock: a Postgres advisory lock held by one dedicated connection, and the fence
every write of the leader's checks.

Replicas sharing a database elect one leader to evaluate alerts, send scheduled reports and
prune old rows. `LeaderLock.try_acquire()` asks for a session-level advisory lock on a
connection of its own (outside the pool, so the lock never goes back to the pool with it).
Postgres releases the lock when that session ends: a leader that exits, is killed, or whose
connection is cut (`pg_terminate_backend`, a network failure) loses it, and another replica's
next `try_acquire()` wins. The session asks the server to probe the client with TCP keepalives
(`peer_timeout_s`), so a leader whose host vanishes without closing the socket loses the lock
in about that time, not the kernel's two hours.

Holding the lock when a step starts is not enough: a leader can be deposed between its check
and its commit. So each write of the leader runs `Fence.hold(conn)` inside its own transaction:
it takes a transaction-level advisory lock (the *save lock*, the same for every replica, so
the leaders' writes are serialized) and then checks in `pg_locks` that the leader lock is still
granted to the session that took it (pid and start time, so a reused pid cannot pass). A new
leader reads the stored alerts under the same save lock before its first step, so a deposed
leader's write either committed before that read (and the new leader sees it) or runs after it
and fails the check (`NotLeader`, rolled back): it can never notify.

The lock's key is derived from the database and schema, so deployments (and tests) in other
schemas of one server elect their own leaders.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from monitor.store.engine import make_engine

logger = logging.getLogger(__name__)

LOCK_CLASS: Final = 0x474D4F4E  # "GMON": the first key of the leader lock
SAVE_CLASS: Final = LOCK_CLASS + 1  # the first key of the save lock


class NotLeader(Exception):
    """Raised by `Fence.hold` (and so by a fenced write, rolled back) when the session that
    took the leader lock no longer holds it: this replica has been deposed."""


@dataclass(frozen=True, slots=True)
class Fence:
    """One term of leadership: the lock's key and the session holding it."""

    key: int
    pid: int
    backend_start: datetime

    def hold(self, conn: Connection) -> None:
        """Serialize with every other fenced write, then check the term still stands; raises
        `NotLeader` otherwise. Call it first in the transaction it guards."""
        conn.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": SAVE_CLASS, "k": self.key})
        held = conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objid = :k"
                " AND l.objsubid = 2 AND l.granted AND l.pid = :pid"
                " AND a.backend_start = :start)"
            ),
            {"c": LOCK_CLASS, "k": self.key, "pid": self.pid, "start": self.backend_start},
        ).scalar()
        if not held:
            raise NotLeader(f"leader lock no longer held by backend {self.pid}")


def lock_key(database: str, schema: str) -> int:
    """The second key of both locks: 31 bits of sha256 over the database and schema names."""
    digest = hashlib.sha256(f"{database}/{schema}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class LeaderLock:
    """The leader lock on one dedicated connection (Postgres only). Blocking: run its methods
    in a thread; they take turns (a release waits for a check still in flight). A call on a
    silent network fails within the driver's TCP timeout (`monitor.store.engine`)."""

    def __init__(self, engine: Engine, *, peer_timeout_s: float = 10.0) -> None:
        if not is_postgres(engine):
            raise ValueError("leader election needs Postgres; SQLite is one process")
        self._engine = make_engine(engine.url, poolclass=NullPool)
        self._peer_timeout_s = peer_timeout_s
        self._conn: Connection | None = None
        self._mutex = threading.Lock()
        self.fence: Fence | None = None

    def try_acquire(self) -> Fence | None:
        """Take the lock if it is free; the term's fence, or None when another session holds
        it. Raises the driver's error when the database cannot be reached."""
        with self._mutex:
            return self._try_acquire()

    def _try_acquire(self) -> Fence | None:
        if self.fence is not None:
            return self.fence
        try:
            conn = self._connect()
            database, schema, pid, started = conn.execute(
                text("SELECT current_database(), current_schema(), pg_backend_pid(),"
                     " backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).one()  # fmt: skip
            key = lock_key(database, schema)
            taken = conn.execute(
                text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": LOCK_CLASS, "k": key}
            ).scalar()
        except Exception:
            self._release()  # a broken session: the next attempt opens a new one
            raise
        if taken:
            self.fence = Fence(key, pid, started)
        return self.fence

    def check(self) -> None:
        """Raise when the lock's session is gone (terminated, network cut, database down)."""
        with self._mutex:
            if self._conn is None or self.fence is None:
                raise NotLeader("not holding the leader lock")
            self._conn.execute(text("SELECT 1"))

    def release(self) -> None:
        """Give the lock up and close the connection (ending the session releases it too, so a
        failure here is only logged)."""
        with self._mutex:
            self._release()

    def _release(self) -> None:
        conn, self._conn, fence, self.fence = self._conn, None, self.fence, None
        if conn is None:
            return
        try:
            if fence is not None and not conn.closed:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_CLASS, "k": fence.key}
                )
        except Exception as exc:  # the session is gone: so is the lock
            logger.debug("leader lock: unlock failed (%s)", exc.__class__.__name__)
        finally:
            conn.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def _connect(self) -> Connection:
        if self._conn is not None:
            if not (self._conn.closed or self._conn.invalidated):
                return self._conn
            self._conn.close()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # The server probes this client, so a vanished leader host loses the lock in about
            # peer_timeout_s (idle + interval * count), and an unacknowledged write sooner.
            idle = max(1, int(self._peer_timeout_s / 2))
            interval = max(1, int(self._peer_timeout_s / 6))
            conn.execute(text(f"SET tcp_keepalives_idle = {idle}"))
            conn.execute(text(f"SET tcp_keepalives_interval = {interval}"))
            conn.execute(text("SET tcp_keepalives_count = 3"))
            conn.execute(text(f"SET tcp_user_timeout = {int(self._peer_timeout_s * 1000)}"))
        except Exception:
            conn.close()
            raise
        self._conn = conn
        return conn
