"""`SystemProbe`: host CPU and memory, the proxy's own process, and the backend's process.

The backend process is named by its pid, or found by the TCP port it listens on (and found
again under its new pid when it restarts). A backend that is not there, has exited, or belongs
to a user we may not inspect is a normal result: the sample says why in `backend_error`, and
the probe logs each change of that state once.

CPU percentages are over the time since the previous sample, so the first reading of a process
is `None`; a process's percentage is of one CPU (above 100 on several cores, as `top` shows it),
the host's is of all CPUs. `sample()` reads /proc (the port lookup walks every process's sockets
until it has found the backend): call it in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil

from monitor.record import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    cpu_percent: float | None  # of one CPU, since the previous sample; None on the first
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class SystemSample:
    ts: datetime
    cpu_percent: float | None  # of all CPUs, since the previous sample
    memory_used_bytes: int  # total - available: what processes hold, not the page cache
    memory_total_bytes: int
    memory_percent: float
    proxy: ProcessSample | None
    backend: ProcessSample | None
    backend_error: str | None  # why `backend` is None when a backend pid or port is configured


def find_listening_pid(
    port: int,
    *,
    connections: Callable[[str], Iterable[Any]] = psutil.net_connections,
    processes: Callable[[], Iterable[psutil.Process]] = psutil.process_iter,
) -> int | None:
    """The pid listening on TCP `port` (the lowest, when several share it), or None.

    The system-wide socket table is one read, but it may be refused (macOS without root) or hide
    the owner of another user's socket; then each process is asked for its own sockets instead.
    """
    hidden = False  # a listener whose owner the system-wide table does not show
    try:
        owners = [c.pid for c in connections("tcp") if _listens_on(c, port)]
        pids = {pid for pid in owners if pid is not None}
        hidden = len(pids) < len(owners)
    except psutil.AccessDenied:
        pids, hidden = set(), True
    if pids or not hidden:
        return min(pids, default=None)
    for proc in processes():
        try:
            if any(_listens_on(c, port) for c in proc.net_connections("tcp")):
                pids.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return min(pids, default=None)


def _listens_on(connection: Any, port: int) -> bool:
    return bool(
        connection.status == psutil.CONN_LISTEN
        and connection.laddr
        and connection.laddr.port == port
    )


class _ProcessGone(Exception):
    """The process exited (or is a zombie waiting to be reaped)."""


def _sample_process(proc: psutil.Process, primed: bool) -> ProcessSample:
    try:
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise _ProcessGone
            cpu = proc.cpu_percent(interval=None)  # 0.0 the first time: no previous reading
            rss = proc.memory_info().rss
    except psutil.NoSuchProcess as exc:
        raise _ProcessGone from exc
    return ProcessSample(pid=proc.pid, cpu_percent=cpu if primed else None, rss_bytes=rss)


def _busy_and_total(times: Any) -> tuple[float, float]:
    # Busy is summed from the counters that only ever grow. Computing it as total - idle -
    # iowait (psutil's way) is not monotonic: Linux's iowait can go backwards, which showed
    # here as a busy host reading 0 %. Guest time is already inside user/nice.
    busy = sum(
        getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal")
    )
    return busy, busy + times.idle + getattr(times, "iowait", 0.0)


class SystemProbe:
    """One `sample()` per tick; keeps the previous CPU readings and the backend's process."""

    def __init__(
        self,
        *,
        backend_pid: int | None = None,
        backend_port: int | None = None,
        now: Callable[[], datetime] = utcnow,
        find_pid: Callable[[int], int | None] = find_listening_pid,
    ) -> None:
        if backend_pid is not None and backend_port is not None:
            raise ValueError("give the backend's pid or its port, not both")
        self._backend_pid = backend_pid
        self._backend_port = backend_port
        self._now = now
        self._find_pid = find_pid
        self._host_cpu = _busy_and_total(psutil.cpu_times())
        self._proxy = psutil.Process()
        self._proxy_primed = False
        self._backend: psutil.Process | None = None
        self._backend_primed = False
        self._backend_state: str | None = None  # last logged: a pid or an error

    def sample(self) -> SystemSample:
        memory = psutil.virtual_memory()
        used = memory.total - memory.available
        backend, backend_error = self._sample_backend()
        return SystemSample(
            ts=self._now(),
            cpu_percent=self._host_cpu_percent(),
            memory_used_bytes=used,
            memory_total_bytes=memory.total,
            memory_percent=round(100.0 * used / memory.total, 2) if memory.total else 0.0,
            proxy=self._sample_proxy(),
            backend=backend,
            backend_error=backend_error,
        )

    def _host_cpu_percent(self) -> float | None:
        busy, total = _busy_and_total(psutil.cpu_times())
        last_busy, last_total = self._host_cpu
        if total <= last_total:
            return None  # no clock tick since the last sample: keep measuring from that one
        self._host_cpu = busy, total
        return round(min(100.0, max(0.0, 100.0 * (busy - last_busy) / (total - last_total))), 2)

    def _sample_proxy(self) -> ProcessSample | None:
        try:
            sample = _sample_process(self._proxy, self._proxy_primed)
        except (_ProcessGone, psutil.AccessDenied):  # not for our own process, but never raise
            return None
        self._proxy_primed = True
        return sample

    def _sample_backend(self) -> tuple[ProcessSample | None, str | None]:
        if self._backend_pid is None and self._backend_port is None:
            return None, None
        sample, error = self._read_backend()
        if sample is None and error is None:
            error = f"backend process {self._backend.pid if self._backend else '?'} exited"
            self._backend = None
            if self._backend_port is not None:  # by port: a restarted backend has a new pid
                sample, again = self._read_backend()
                error = None if sample else f"{error}; {again or 'so did its successor'}"
        self._log_state(sample, error)
        return sample, error

    def _read_backend(self) -> tuple[ProcessSample | None, str | None]:
        """A sample, or an error; (None, None) when the process we held has gone."""
        if self._backend is None:
            error = self._attach()
            if error:
                return None, error
        assert self._backend is not None
        try:
            sample = _sample_process(self._backend, self._backend_primed)
        except _ProcessGone:
            return None, None
        except psutil.AccessDenied:
            return None, f"access denied to backend process {self._backend.pid}"
        self._backend_primed = True
        return sample, None

    def _attach(self) -> str | None:
        pid = self._backend_pid
        if pid is None:
            assert self._backend_port is not None
            pid = self._find_pid(self._backend_port)
            if pid is None:
                return f"no process listens on TCP port {self._backend_port}"
        try:
            self._backend = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return f"backend process {pid} does not exist"
        except psutil.AccessDenied:
            return f"access denied to backend process {pid}"
        self._backend_primed = False
        return None

    def _log_state(self, sample: ProcessSample | None, error: str | None) -> None:
        state = f"pid {sample.pid}" if sample else error
        if state == self._backend_state:
            return
        self._backend_state = state
        if sample:
            logger.info("system probe: sampling backend process %d", sample.pid)
        else:
            logger.warning("system probe: no backend process sample: %s", error)
