"""SystemProbe on this machine's real processes: a real listener found by its port, then killed."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psutil
import pytest

from monitor.probes.system import SystemProbe, _busy_and_total, find_listening_pid

T0 = datetime(2025, 1, 1, tzinfo=UTC)

LISTENER = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""

Listener = tuple[subprocess.Popen[str], int]


@pytest.fixture
def start_listener() -> Iterator[Callable[..., Listener]]:
    """Start a Python process listening on a TCP port (a free one unless given)."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int = 0) -> Listener:
        proc = subprocess.Popen(
            [sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        assert proc.stdout is not None
        return proc, int(proc.stdout.readline())

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def burn_cpu() -> None:
    """Spin until the kernel has counted some CPU time to this process and to the host (the two
    counters tick separately, 100 times a second)."""
    before = sum(psutil.Process().cpu_times()[:2])
    host_before = _busy_and_total(psutil.cpu_times())[0]
    while (
        sum(psutil.Process().cpu_times()[:2]) == before
        or _busy_and_total(psutil.cpu_times())[0] == host_before
    ):
        pass


def test_host_memory_and_the_proxy_process() -> None:
    probe = SystemProbe(now=lambda: T0)
    first = probe.sample()
    assert first.ts == T0
    assert 0 < first.memory_used_bytes <= first.memory_total_bytes
    assert first.memory_percent == pytest.approx(
        100 * first.memory_used_bytes / first.memory_total_bytes, abs=0.01
    )
    assert first.proxy is not None and first.proxy.pid == os.getpid()
    assert first.proxy.rss_bytes > 0 and first.proxy.cpu_percent is None  # nothing to compare yet
    assert first.backend is None and first.backend_error is None  # none configured

    burn_cpu()
    second = probe.sample()
    assert second.proxy is not None and second.proxy.cpu_percent is not None
    assert second.proxy.cpu_percent > 0
    assert second.cpu_percent is not None and 0 < second.cpu_percent <= 100


def test_backend_found_by_port_then_exiting_mid_run(
    start_listener: Callable[..., Listener], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.probes.system")
    backend, port = start_listener()
    probe = SystemProbe(backend_port=port)

    first = probe.sample()
    assert first.backend is not None and first.backend_error is None
    assert first.backend.pid == backend.pid and first.backend.rss_bytes > 0
    assert first.backend.cpu_percent is None
    second = probe.sample()
    assert second.backend is not None and second.backend.cpu_percent is not None

    backend.kill()
    backend.wait()
    gone = probe.sample()
    assert gone.backend is None
    assert gone.backend_error == (
        f"backend process {backend.pid} exited; no process listens on TCP port {port}"
    )
    assert gone.proxy is not None  # the rest keeps working
    still_gone = probe.sample()
    assert still_gone.backend_error == f"no process listens on TCP port {port}"
    assert [r.getMessage() for r in caplog.records] == [
        f"system probe: sampling backend process {backend.pid}",
        f"system probe: no backend process sample: {gone.backend_error}",
        f"system probe: no backend process sample: {still_gone.backend_error}",
    ]


def test_a_backend_restarted_on_its_port_is_found_under_its_new_pid(
    start_listener: Callable[..., Listener],
) -> None:
    old, port = start_listener()
    probe = SystemProbe(backend_port=port)
    assert (probe.sample().backend or pytest.fail()).pid == old.pid
    old.kill()
    old.wait()
    new, _ = start_listener(port)
    sample = probe.sample()
    assert sample.backend is not None and sample.backend.pid == new.pid
    assert sample.backend_error is None


def test_a_zombie_backend_counts_as_exited(start_listener: Callable[..., Listener]) -> None:
    backend, _ = start_listener()
    probe = SystemProbe(backend_pid=backend.pid)
    assert probe.sample().backend is not None
    backend.kill()  # not reaped yet: a zombie until the fixture waits for it
    wait_until(lambda: is_zombie(backend.pid))
    sample = probe.sample()
    assert (sample.backend, sample.backend_error) == (
        None,
        f"backend process {backend.pid} exited",
    )


def test_backend_by_pid_that_exits(start_listener: Callable[..., Listener]) -> None:
    backend, _ = start_listener()
    probe = SystemProbe(backend_pid=backend.pid)
    sample = probe.sample()
    assert sample.backend is not None and sample.backend.pid == backend.pid
    backend.kill()
    backend.wait()
    assert probe.sample().backend_error == f"backend process {backend.pid} exited"
    assert probe.sample().backend_error == f"backend process {backend.pid} does not exist"


def test_nothing_listening_on_the_port() -> None:
    port = free_port()
    sample = SystemProbe(backend_port=port).sample()
    assert (sample.backend, sample.backend_error) == (
        None,
        f"no process listens on TCP port {port}",
    )


def test_a_refused_socket_table_falls_back_to_asking_each_process(
    start_listener: Callable[..., Listener],
) -> None:
    backend, port = start_listener()

    def refused(kind: str) -> list[Any]:
        raise psutil.AccessDenied()

    def owner_hidden(kind: str) -> list[Any]:  # another user's socket, seen without root
        return [c._replace(pid=None) for c in psutil.net_connections(kind) if c.laddr]

    assert find_listening_pid(port, connections=refused) == backend.pid
    assert find_listening_pid(port, connections=owner_hidden) == backend.pid
    assert find_listening_pid(free_port(), connections=refused) is None


def test_pid_and_port_are_exclusive() -> None:
    with pytest.raises(ValueError):
        SystemProbe(backend_pid=1, backend_port=80)
