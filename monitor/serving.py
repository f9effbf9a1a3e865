"""Serving the app: in this process, or as several worker processes behind one port.

With `workers: 1` (the default) this process serves. With more, this process is a supervisor:
it binds the port, runs the migrations once (`auto_migrate`), and starts that many worker
processes (spawned, not forked: each builds its app, threads and connections itself), each
serving the port with its own event loop; the kernel spreads connections over them (one
socket per worker with SO_REUSEPORT where there is one, see `_listen`). The workers are
replicas on one host, and share what replicas share: Postgres (one of them is elected leader
for alerts, reports and retention), Redis for the rate-limit windows (settings refuse several
workers without them), and one hash key. Each spools to its own `spool_dir/worker-<index>`,
and `/metrics` from any of them shows all of them (`api.worker_metrics`).

The supervisor restarts a worker that dies (after a pause that grows while it keeps dying
young, up to `MAX_RESTART_DELAY_S`), with the same index, so it replays its own spool. A
worker that exits with the usage code (a bad policy, an un-migrated database) stops them all:
restarting would fail the same way. SIGTERM or SIGINT is passed to every worker, which drains
as one process does (`drain_timeout_s`); a worker still running `SHUTDOWN_GRACE_S` later is
killed.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 (see _tune_runtime)
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from monitor.api.worker_metrics import WorkerSlot
from monitor.config import Settings

log = logging.getLogger("monitor.serving")

EXIT_USAGE = 2
SHUTDOWN_GRACE_S = 10.0  # past the drain timeout, before a worker is killed
MAX_RESTART_DELAY_S = 10.0
STABLE_AFTER_S = 30.0  # a worker that lived this long died old: restart it at once


def serve(settings: Settings) -> int:
    """Serve until told to stop; the process's exit code."""
    _configure_logging(settings)
    if settings.workers == 1:
        return _serve_here(settings)
    return Supervisor(settings).run()


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _serve_here(
    settings: Settings, worker: WorkerSlot | None = None, sock: socket.socket | None = None
) -> int:
    import uvicorn

    from monitor.api.http_protocol import with_header_timeout
    from monitor.app import create_app
    from monitor.guard.loader import PolicyError
    from monitor.store.migrate import NotMigratedError
    from monitor.store.spool import SpoolLocked

    try:
        app = create_app(settings, worker=worker)
    except (NotMigratedError, PolicyError, SpoolLocked) as exc:
        print(f"gemma-monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _tune_runtime()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=with_header_timeout(settings.request_header_timeout_s),
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        backlog=4096,
        limit_concurrency=settings.max_client_connections,  # past it, 503 at once
        # admission reads X-Forwarded-For itself, from `trusted_proxies` only; uvicorn's
        # middleware would believe it from any loopback peer (and costs per request)
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock] if sock is not None else None)
    return 0 if server.started else 1


def _tune_runtime() -> None:
    """Interpreter settings for a long-running, latency-sensitive server process.

    Measured on the proxy with wrk (c=1 and c=32, zero-delay backend): with CPython's defaults
    p99 latency had 10-80 ms spikes; with these, 2-3 ms at c=1 and a third of that at c=32.
    - The recorder writes batches in a worker thread; with the default 5 ms switch interval the
      event loop waits up to 5 ms for the GIL at each wake-up while a batch is written.
    - Everything built at start-up (modules, the app, SQLAlchemy and pydantic internals) is
      moved out of the collector's reach, and full collections are rarer, so a collection no
      longer walks that heap while requests wait.
    - `encodings.idna` is imported above: the first host name encoded (uvicorn's start, the
      first upstream connection) would otherwise import it on the event loop, 10-20 ms.
    """
    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _worker_main(settings: Settings, slot: WorkerSlot, sock: socket.socket) -> None:
    """A worker process's entry point (spawned): serve the inherited socket."""
    _configure_logging(settings)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    sys.exit(_serve_here(settings, slot, sock))


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    started_at: float


class Supervisor:
    """Starts `settings.workers` worker processes on one listening socket and keeps them up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.workers
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        self._workers: dict[int, _Worker] = {}
        self._delays: dict[int, float] = {}

    def run(self) -> int:
        try:
            self._prepare_store()
        except Exception as exc:  # an un-migrated or unreachable database: no worker can serve
            print(f"gemma-monitor: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            sockets = _listen(self.settings, self.count)
        except OSError as exc:
            print(
                f"gemma-monitor: cannot listen on {self.settings.host}:{self.settings.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        runtime_dir = Path(tempfile.mkdtemp(prefix="gemma-monitor-"))  # 0700, for the sockets
        worker_settings = self.settings.model_copy(update={"auto_migrate": False})
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info(
                "serving on %s:%d with %d worker processes (supervisor pid %d)",
                self.settings.host,
                self.settings.port,
                self.count,
                os.getpid(),
            )
            for index in range(self.count):
                slot = WorkerSlot(index, self.count, runtime_dir)
                self._start(index, worker_settings, slot, sockets[index])
            return self._watch(worker_settings, runtime_dir, sockets)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in set(sockets):
                sock.close()
            shutil.rmtree(runtime_dir, ignore_errors=True)

    def _prepare_store(self) -> None:
        """Migrate once here (not in N workers at once), or check the schema is current, so
        a worker never fails for it; warn of spools left by workers this count no longer has."""
        from monitor.store.engine import make_engine
        from monitor.store.migrate import check_migrated, upgrade

        if self.settings.auto_migrate:
            upgrade(self.settings.database_url)
        else:
            engine = make_engine(self.settings.database_url)
            try:
                check_migrated(engine)
            finally:
                engine.dispose()
        spool = self.settings.spool_dir
        if any(spool.glob("segment-*.jsonl")):
            log.warning(
                "%s holds records spooled by a single-process run, which worker processes do not"
                " replay (each has its own spool_dir/worker-<n>); start once with workers: 1 to"
                " replay them",
                spool,
            )
        for left in sorted(spool.glob("worker-*")):
            index = left.name.removeprefix("worker-")
            if index.isdigit() and int(index) >= self.count and any(left.glob("segment-*.jsonl")):
                log.warning(
                    "%s holds spooled records of a worker this run does not have (workers: %d);"
                    " start with more workers to replay them",
                    left,
                    self.count,
                )

    def _start(self, index: int, settings: Settings, slot: WorkerSlot, sock: socket.socket) -> None:
        process = self._context.Process(
            target=_worker_main, args=(settings, slot, sock), name=f"gemma-monitor-worker-{index}"
        )
        process.start()
        self._workers[index] = _Worker(index, process, time.monotonic())

    def _watch(self, settings: Settings, runtime_dir: Path, sockets: list[socket.socket]) -> int:
        restart_at: dict[int, float] = {}
        while not self._stopping:
            sentinels = [w.process.sentinel for w in self._workers.values() if w.process.is_alive()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            now = time.monotonic()
            for worker in list(self._workers.values()):
                if worker.index in restart_at or worker.process.is_alive():
                    continue
                code = worker.process.exitcode
                if code == EXIT_USAGE:
                    log.error("worker %d could not start (see above): stopping", worker.index)
                    return EXIT_USAGE
                lived = now - worker.started_at
                if lived > STABLE_AFTER_S:
                    self._delays.pop(worker.index, None)  # it died old: start the pauses over
                    delay = 0.0
                else:
                    delay = self._next_delay(worker.index)
                log.warning(
                    "worker %d (pid %s) exited with %s after %.1fs; restarting it in %.1fs",
                    worker.index,
                    worker.process.pid,
                    code,
                    lived,
                    delay,
                )
                restart_at[worker.index] = now + delay
            for index, at in list(restart_at.items()):
                if now >= at and not self._stopping:
                    del restart_at[index]
                    slot = WorkerSlot(index, self.count, runtime_dir)
                    self._start(index, settings, slot, sockets[index])
            if restart_at:
                time.sleep(min(0.5, max(0.0, min(restart_at.values()) - now)))
        return 0

    def _next_delay(self, index: int) -> float:
        delay = min(MAX_RESTART_DELAY_S, max(0.5, self._delays.get(index, 0.0) * 2))
        self._delays[index] = delay
        return delay

    def _stop(self, signum: int, _: FrameType | None) -> None:
        if not self._stopping:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        self._stopping = True

    def _shutdown(self) -> None:
        workers = [w.process for w in self._workers.values() if w.process.is_alive()]
        for process in workers:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + SHUTDOWN_GRACE_S
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s still running: killing it", process.pid)
                process.kill()
                process.join()


def _listen(settings: Settings, count: int) -> list[socket.socket]:
    """The listening socket of each worker, bound here before any worker starts.

    With SO_REUSEPORT (Linux) each worker gets a socket of its own on the port and the kernel
    spreads new connections evenly over them. One socket shared by all was measured uneven:
    the worker that woke first took most of a burst of connections (30,605 requests against
    12,882 in one 10 s run), and with keep-alive the other idled. A worker's socket stays open
    here while it restarts, so the connections queued on it wait for its replacement instead
    of being refused. Without SO_REUSEPORT, one shared socket."""
    reuse_port = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((settings.host, settings.port))
            sock.listen(4096)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets if reuse_port else sockets * count
