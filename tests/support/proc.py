"""What the kernel says about a process, from /proc (Linux): resident memory, open file
descriptors, threads, and the TCP connections it holds by state. A soak test reads these
from outside the process, beside what the process says of itself on /metrics."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

# /proc/net/tcp state codes
_TCP_STATES = {"01": "established", "06": "time_wait", "08": "close_wait", "0A": "listen"}


@dataclass(frozen=True, slots=True)
class ProcessView:
    rss_bytes: int
    open_fds: int
    threads: int
    tcp: dict[str, int]  # state -> sockets of this process in that state

    @property
    def established(self) -> int:
        return self.tcp.get("established", 0)

    @property
    def close_wait(self) -> int:
        return self.tcp.get("close_wait", 0)


def view(pid: int) -> ProcessView:
    proc = Path(f"/proc/{pid}")
    status = dict(
        line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
    )
    rss = int(status["VmRSS"].split()[0]) * 1024
    threads = int(status["Threads"])
    inodes: set[str] = set()
    fds = 0
    for fd in os.listdir(proc / "fd"):
        fds += 1
        try:
            target = os.readlink(proc / "fd" / fd)
        except OSError:  # closed between listing and reading
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states: Counter[str] = Counter()
    for table in ("tcp", "tcp6"):
        path = proc / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                states[_TCP_STATES.get(fields[3], fields[3])] += 1
    return ProcessView(rss, fds, threads, dict(states))


def rules_children(parent: psutil.Process | None = None) -> list[psutil.Process]:
    """The guard's rules processes (`monitor.proxy.rules_process`) that are children of
    `parent` (this process by default)."""
    return [
        child
        for child in (parent or psutil.Process()).children()
        if "monitor.proxy.rules_process" in " ".join(child.cmdline())
    ]
