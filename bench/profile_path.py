"""Where a request's CPU goes, per feature: the tput phase of `proxy_overhead.sh`, profiled.

    .venv/bin/pip install -e '.[bench]'                       # py-spy
    .venv/bin/python bench/profile_path.py                    # all-on, norl, noguard
    .venv/bin/python bench/profile_path.py --target all-on --target pg --seconds 20
    .venv/bin/python bench/profile_path.py --summarize OUT/all-on/stacks.txt   # a saved profile

Each target is `gemma-monitor serve` as the harness starts it (the same environment), in front
of the harness's zero-delay fake backend (`fake_backend.py`, run with this project's Python),
under wrk with `--connections` connections posting the harness's request (`wrk_post.lua`).
After `--warmup` seconds, three windows of `--seconds` each, one after the other under the
same load:

1. **CPU by thread**, no profiler attached: each thread's user and system time from
   `/proc/PID/task`, named after the Python thread (from `py-spy dump`), divided by the
   requests the backend answered in the window (its `/_fake/config` counter). The rate
   (req/s) is from the same window.
2. **Collapsed stacks** (`py-spy record --format raw --threads`, `--rate` samples a second,
   `--gil` unless `--all-threads`: only the thread holding the interpreter, which is what one
   event loop and its helper threads share): `stacks.txt`, the input of any flame graph tool
   (speedscope, inferno, flamegraph.pl).
3. **A flame graph** (`py-spy record --format flamegraph`): `flame.svg`, for a browser.

`summary.md` then gives, from the collapsed stacks: each thread's share of the samples; the
request path by part (each sample to the part of its innermost `monitor` frame: the library
code a part calls counts to it); the project's functions by inclusive share; and the hottest
functions by self share, library code included. The summaries of all targets are printed.

Targets (`--target`, repeatable; default all-on, norl, noguard):
    all-on    SQLite, default policy, rate limiting on in memory (10^9/hour: never refuses)
    pg        the same on Postgres (database gm_profile, recreated; MONITOR_BENCH_POSTGRES)
    norl      SQLite, default policy, rate limiting off
    noguard   SQLite, rate limiting and the guard off

py-spy pauses the process for each sample (less with `--nonblocking`): the rate under the
profiler is lower than in window 1, and shares, not times, are what windows 2 and 3 give.
Run on a quiet machine; wrk (the harness's setup installs it) must be on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEVER = "1000000000/hour"
TARGETS: dict[str, dict[str, str]] = {
    "all-on": {"db": "sqlite", "policies": "default", "rate_limit": NEVER},
    "pg": {"db": "postgres", "policies": "default", "rate_limit": NEVER},
    "norl": {"db": "sqlite", "policies": "default", "rate_limit": "off"},
    "noguard": {"db": "sqlite", "policies": "off", "rate_limit": "off"},
}
DEFAULT_TARGETS = ("all-on", "norl", "noguard")

# The request path's parts, by the innermost `monitor` frame of a sample: the first rule whose
# path prefix (under monitor/) matches names the part. Order matters: specific before general.
PARTS: tuple[tuple[str, str], ...] = (
    ("proxy/admission", "admission and rate limits"),
    ("proxy/ratelimit", "admission and rate limits"),
    ("proxy/redis_wire", "admission and rate limits"),
    ("proxy/guarding", "guard (rules)"),
    ("proxy/rules_process", "guard (rules)"),
    ("guard/", "guard (rules)"),
    ("upstream/", "backend client"),
    ("proxy/relay", "request and answer (parse, relay)"),
    ("proxy/protocols", "request and answer (parse, relay)"),
    ("proxy/translate", "request and answer (parse, relay)"),
    ("proxy/framing", "request and answer (parse, relay)"),
    ("proxy/budget", "request and answer (parse, relay)"),
    ("proxy/headers", "request and answer (parse, relay)"),
    ("proxy/exchange", "HTTP server and ASGI (protocol, exchange)"),
    ("api/feedback", "the record and metrics"),  # the recent requests' ids, fed per request
    ("api/", "HTTP server and ASGI (protocol, exchange)"),
    ("app", "HTTP server and ASGI (protocol, exchange)"),
    ("serving", "HTTP server and ASGI (protocol, exchange)"),
    ("record", "the record and metrics"),
    ("metrics", "the record and metrics"),
    ("telemetry/", "the record and metrics"),
    ("proxy/timing", "the record and metrics"),
    ("proxy/handler", "handler (its own lines)"),
    ("store/", "store (recorder, rollups, alert reads)"),
    ("alerts/", "alerts and background workers"),
    ("workers/", "alerts and background workers"),
    ("probes/", "alerts and background workers"),
    ("quality/", "alerts and background workers"),
)
# samples with no `monitor` frame, by their outermost library frame
OUTSIDE = "outside the project's code (event loop, server, threads)"


# --- reading collapsed stacks ---------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    func: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.func} ({self.file})"


@dataclass
class Profile:
    """Collapsed stacks: `thread;outer;...;inner count` per line, as py-spy writes them."""

    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    stacks: list[tuple[str, tuple[Frame, ...], int]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Profile:
        profile = cls()
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            names = stack.split(";")
            thread, frames = ("", names) if _FRAME.match(names[0]) else (names[0], names[1:])
            parsed = []
            for name in frames:
                match = _FRAME.match(name)
                parsed.append(Frame(match["func"], match["file"]) if match else Frame(name, ""))
            weight = int(count)
            profile.samples += weight
            profile.threads[_thread_name(thread)] += weight
            profile.stacks.append((thread, tuple(parsed), weight))
        return profile

    def parts(self) -> Counter[str]:
        """Samples by part of the request path (`PARTS`), by each stack's innermost project
        frame."""
        parts: Counter[str] = Counter()
        for _, frames, weight in self.stacks:
            parts[_part(frames)] += weight
        return parts

    def inclusive(self, project_only: bool) -> Counter[Frame]:
        """Samples in which a function appears at least once (recursion counted once)."""
        seen: Counter[Frame] = Counter()
        for _, frames, weight in self.stacks:
            for frame in set(frames):
                if not project_only or _project_path(frame.file) is not None:
                    seen[frame] += weight
        return seen

    def self_time(self) -> Counter[Frame]:
        """Samples by the innermost frame."""
        inner: Counter[Frame] = Counter()
        for _, frames, weight in self.stacks:
            if frames:
                inner[frames[-1]] += weight
        return inner


def _thread_name(thread: str) -> str:
    """`thread (8102): MainThread` (py-spy's `--threads` frame) -> `MainThread`; a pool's
    threads (`monitor-recorder_0`, `uvloop_4`) as one name."""
    name = thread.rpartition("): ")[2] if "): " in thread else thread
    return re.sub(r"_\d+$", "", name.strip('"')) or "(all threads)"


def _project_path(file: str) -> str | None:
    """The path under `monitor/` of a frame's file (py-spy names files from their package
    down), or None for library code."""
    return file[len("monitor/") :] if file.startswith("monitor/") else None


def _part(frames: tuple[Frame, ...]) -> str:
    for frame in reversed(frames):
        path = _project_path(frame.file)
        if path is None:
            continue
        for prefix, part in PARTS:
            if path.startswith(prefix):
                return part
        return f"other project code ({path.split('/')[0]})"
    return OUTSIDE


# --- running a target -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def _backend_config(port: int, body: dict[str, int] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_fake/config",
        data=data,
        method="POST" if data is not None else "GET",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def _answered(port: int) -> int:
    """Requests the fake backend has answered (the sum of its `counts`)."""
    counts = _backend_config(port)["counts"]
    assert isinstance(counts, dict)
    return sum(int(n) for n in counts.values())


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _thread_names(py_spy: str, pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, from `py-spy dump`."""
    out = subprocess.run(
        [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    names = {}
    for match in re.finditer(r'^Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]+)"', out, re.M):
        ident, name = match[1], match[2]
        names[int(ident, 16) if ident.startswith("0x") else int(ident)] = name
    return names


def _thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def _target_env(name: str, work: Path, pg_admin: str) -> tuple[dict[str, str], str]:
    spec = TARGETS[name]
    env = dict(os.environ)
    env.update(
        MONITOR_RATE_LIMIT=spec["rate_limit"],
        MONITOR_POLICIES=spec["policies"],
        MONITOR_SPOOL_DIR=str(work / f"spool-{name}"),
    )
    if spec["db"] == "sqlite":
        return env, f"sqlite:///{work / f'monitor-{name}.db'}"
    from sqlalchemy import create_engine, text

    admin = pg_admin.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(f"{admin}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gm_profile"))
        conn.execute(text("CREATE DATABASE gm_profile"))
    engine.dispose()
    return env, f"{pg_admin}/gm_profile"


def profile_target(name: str, args: argparse.Namespace, backend_port: int, work: Path) -> str:
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    env, database_url = _target_env(name, work, args.pg_admin)
    port = _free_port()
    serve = [
        str(Path(sys.executable).parent / "gemma-monitor"), "serve", "--host", "127.0.0.1", "--port",
        str(port), "--backend", f"http://127.0.0.1:{backend_port}", "--migrate",
        "--database-url", database_url,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    window = args.seconds
    with _process(serve, env, out / "serve.log") as server:
        _wait_http(f"{url}/health", 60)
        wrk_env = dict(os.environ, WRK_BODY_FILE="")
        total = round(args.warmup + 3 * window + 2)
        wrk = [
            "wrk", "-t2", f"-c{args.connections}", f"-d{total}s", "-s",
            str(args.harness / "wrk_post.lua"), f"{url}/v1/chat/completions",
        ]  # fmt: skip
        with _process(wrk, wrk_env, out / "wrk.log"):
            time.sleep(args.warmup)
            names = _thread_names(args.py_spy, server.pid)
            before, answered = _thread_ticks(server.pid), _answered(backend_port)
            started = time.monotonic()
            time.sleep(window)
            after, answered = _thread_ticks(server.pid), _answered(backend_port) - answered
            elapsed = time.monotonic() - started
            record = [args.py_spy, "record", "--pid", str(server.pid), "--rate", str(args.rate)]
            record += ["--duration", str(max(1, round(window))), "--threads"]
            if not args.all_threads:
                record.append("--gil")
            if args.nonblocking:
                record.append("--nonblocking")
            for fmt, file in (("raw", "stacks.txt"), ("flamegraph", "flame.svg")):
                done = subprocess.run(
                    [*record, "--format", fmt, "--output", str(out / file)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:  # py-spy needs ptrace: root, or CAP_SYS_PTRACE
                    raise SystemExit(f"py-spy record failed: {done.stderr.strip()[-2000:]}")
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    for tid, (comm, ticks) in after.items():
        used = ticks - before.get(tid, (comm, 0))[1]
        if used > 0:
            rows.append((names.get(tid, comm), used / tick * 1e6 / max(answered, 1)))
    by_name: dict[str, float] = {}
    for thread, micros in rows:
        key = _thread_name(thread)
        by_name[key] = by_name.get(key, 0.0) + micros
    header = [
        f"# {name}: {TARGETS[name]}",
        "",
        f"Window 1 (no profiler): {answered / elapsed:,.0f} req/s, "
        f"{sum(by_name.values()):.0f} µs of CPU a request, by thread:",
        "",
        "| thread | CPU µs a request |",
        "|---|---|",
        *(
            f"| {thread} | {micros:.1f} |"
            for thread, micros in sorted(by_name.items(), key=lambda item: -item[1])
        ),
        "",
    ]
    summary = "\n".join(header) + "\n" + summarize((out / "stacks.txt").read_text(), args.top)
    (out / "summary.md").write_text(summary)
    return summary


def summarize(text: str, top: int) -> str:
    profile = Profile.parse(text)
    total = max(profile.samples, 1)

    def share(count: int) -> str:
        return f"{100 * count / total:.1f} %"

    lines = [
        f"Collapsed stacks: {profile.samples} samples.",
        "",
        "| thread | samples |",
        "|---|---|",
    ]
    lines += [f"| {name} | {share(n)} |" for name, n in profile.threads.most_common()]
    lines += ["", "By part (innermost project frame):", "", "| part | samples |", "|---|---|"]
    lines += [f"| {part} | {share(n)} |" for part, n in profile.parts().most_common()]
    lines += ["", f"The project's functions, inclusive (top {top}):", ""]
    lines += ["| function | samples |", "|---|---|"]
    for frame, n in profile.inclusive(project_only=True).most_common(top):
        lines.append(f"| `{frame.label}` | {share(n)} |")
    lines += ["", f"All functions, self (top {top}):", "", "| function | samples |", "|---|---|"]
    for frame, n in profile.self_time().most_common(top):
        lines.append(f"| `{frame.label}` | {share(n)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=float, default=10.0, help="each window's length")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--all-threads", action="store_true", help="not only the GIL's holder")
    parser.add_argument("--nonblocking", action="store_true", help="py-spy --nonblocking")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="default: a new temporary dir")
    parser.add_argument(
        "--harness",
        type=Path,
        default=Path(os.environ.get("GEMMA_MONITOR_BENCH_DIR", ROOT.parent / "shared/bench")),
        help="the shared harness (fake_backend.py, wrk_post.lua); GEMMA_MONITOR_BENCH_DIR",
    )
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("MONITOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--summarize", type=Path, help="only summarize this collapsed-stacks file")
    args = parser.parse_args()
    if args.summarize is not None:
        print(summarize(args.summarize.read_text(), args.top))
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (the shared harness's setup.sh installs it)")
    args.py_spy = py_spy
    args.out = args.out or Path(tempfile.mkdtemp(prefix="gemma-monitor-profile."))
    with tempfile.TemporaryDirectory(prefix="gemma-monitor-profile-work.") as tmp:
        work = Path(tmp)
        backend_port = _free_port()
        fake = [sys.executable, str(args.harness / "fake_backend.py"), "--port", str(backend_port)]
        with _process(fake, dict(os.environ), work / "backend.log"):
            _wait_http(f"http://127.0.0.1:{backend_port}/health", 30)
            _backend_config(backend_port, {"think_ms": 0, "chunks": 1, "chunk_ms": 0})
            for name in args.target or DEFAULT_TARGETS:
                print(profile_target(name, args, backend_port, work), flush=True)
    print(f"profiles, flame graphs and summaries: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
