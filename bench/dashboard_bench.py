"""Time every dashboard page's reads and every report on a filled store (`fill_store.py`).

    .venv/bin/python bench/dashboard_bench.py --database-url postgresql://postgres@127.0.0.1/gm_bench
    .venv/bin/python bench/dashboard_bench.py --database-url sqlite:///bench.db --runs 5
    .venv/bin/python bench/dashboard_bench.py --database-url ... --skip-prune --skip-reports

Prints Markdown tables:

- each page's loads (the store functions the page calls, `PAGES`) for the last 24 hours and
  30 days: the first run on a new engine (cold: new connections, the database's caches as the
  previous step left them) and the median of `--runs` more (warm);
- `gemma-monitor report` for 24 hours and 30 days in each format, as a child process: its wall
  time (Python's start-up included; a bare `gemma-monitor --help` is timed beside it) and its
  peak resident memory (`os.wait4`);
- the database's size, per table, and the same after `monitor.store.retention.prune` removed
  the raw rows older than `--keep-raw-days` (default 7: the filled month holds nothing older
  than the default 30 days), on a copy of the database (Postgres: `CREATE DATABASE ... TEMPLATE`,
  dropped afterwards; SQLite: a copy of the file), with the time the prune took; or, with
  `--prune-database-url`, a second store filled the same way, pruned in place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.dashboard import windows
from monitor.dashboard.windows import Window
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from monitor.store import rollups, views
from monitor.store.engine import make_engine, normalize_url
from monitor.store.models import Base

WINDOWS = {"24h": "Last 24 hours", "30d": "Last 30 days"}  # `report --window`: the page preset
FORMATS = ("json", "md", "html")


# Each page's reads, as `dashboard/pages/*.py` make them (same functions, same arguments); a
# page's rendering is left out. The shell's model and backend pickers read `dimensions`.
# The pages are scripts (importing one runs it), so their constants are repeated here.
SYSTEM = ("host_cpu_percent", "host_memory_used_mb", "host_memory_percent", "proxy_rss_mb",
          "proxy_cpu_percent", "backend_rss_mb", "backend_cpu_percent")  # fmt: skip
GPU = ("gpu_utilization_percent", "gpu_memory_used_mb", "gpu_memory_pct", "gpu_temperature_c",
       "gpu_power_w", "energy_j", "energy_tokens")  # fmt: skip
PAGE_SIZE = 50


def sidebar(engine: Engine, w: Window) -> None:
    rollups.dimensions(engine, w.since, w.until)


def overview(engine: Engine, w: Window) -> None:
    views.alert_board(engine, resolved_limit=0, event_limit=0)
    rollups.request_totals(engine, w.since, w.until)
    rollups.request_series(engine, w.since, w.until, w.step)
    views.backend_health(engine)


def safety(engine: Engine, w: Window) -> None:
    rollups.verdict_series(engine, w.since, w.until, w.step)
    rollups.score_distribution(engine, w.since, w.until)
    views.recent_verdicts(engine, w.since, w.until)


def performance(engine: Engine, w: Window) -> None:
    rollups.request_totals(engine, w.since, w.until)
    rollups.request_series(engine, w.since, w.until, w.step)
    rollups.probe_series(engine, w.since, w.until, w.step, metrics=SYSTEM)
    rollups.probe_series(engine, w.since, w.until, w.step, metrics=GPU)


def quality(engine: Engine, w: Window) -> None:
    rollups.quality_series(engine, w.since, w.until, w.step)
    views.lowest_scores(engine, w.since, w.until)


def alerts(engine: Engine, w: Window) -> None:
    views.alert_board(engine)
    views.delivery_board(engine)


def requests(engine: Engine, w: Window) -> None:
    page = views.search_requests(engine, since=w.since, until=w.until, page_size=PAGE_SIZE)
    if page.records:
        views.request_detail(engine, page.records[0].id)


PAGES: dict[str, Callable[[Engine, Window], None]] = {
    "(sidebar: models and backends)": sidebar,
    "Overview": overview,
    "Safety": safety,
    "Performance & system": performance,
    "Quality": quality,
    "Alerts": alerts,
    "Requests": requests,
}


def time_pages(url: str, runs: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(page, window) → (cold seconds, median warm seconds)."""
    results: dict[tuple[str, str], tuple[float, float]] = {}
    now = datetime.now(UTC)
    for label, preset in WINDOWS.items():
        window = windows.preset(preset, now)
        for page, load in PAGES.items():
            engine = make_engine(url)
            try:
                cold = _timed(lambda: load(engine, window))  # noqa: B023
                warm = statistics.median(_timed(lambda: load(engine, window)) for _ in range(runs))  # noqa: B023
            finally:
                engine.dispose()
            results[(page, label)] = (cold, warm)
            print(
                f"  {page}, {label}: cold {cold * 1000:.0f} ms, warm {warm * 1000:.0f} ms",
                flush=True,
            )
    return results


def time_reports(
    url: str, workdir: Path
) -> tuple[float, dict[tuple[str, str], tuple[float, int, int]]]:
    """Start-up seconds of a bare command, and (window, format) → (seconds, peak RSS KiB, bytes)."""
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    command = [sys.executable, "-m", "monitor"]
    startup, _ = _child([*command, "--help"], env)
    results: dict[tuple[str, str], tuple[float, int, int]] = {}
    for label in WINDOWS:
        for fmt in FORMATS:
            out = workdir / f"report-{label}.{fmt}"
            seconds, peak_kib = _child(
                [*command, "report", "--window", label, "--format", fmt, "--out", str(out)], env
            )
            results[(label, fmt)] = (seconds, peak_kib, out.stat().st_size)
            print(
                f"  report {label} {fmt}: {seconds:.2f} s, peak RSS {peak_kib / 1024:.0f} MiB, "
                f"{out.stat().st_size:,} bytes",
                flush=True,
            )
    return startup, results


def _child(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"{' '.join(command[2:])} failed ({process.returncode}): {stderr}")
    if process.stderr:
        process.stderr.close()
    return seconds, usage.ru_maxrss  # KiB on Linux


def sizes(engine: Engine) -> tuple[int, dict[str, int]]:
    """The database's bytes in all, and per table (with its indexes and TOAST)."""
    tables = sorted(name for name in _table_names(engine))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            per = {
                name: conn.execute(
                    text("SELECT pg_total_relation_size(:t)"), {"t": name}
                ).scalar_one()
                for name in tables
            }
            return int(total), {k: int(v) for k, v in per.items()}
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        per = {}
        has_dbstat = True
        for name in tables:
            try:
                per[name] = int(
                    conn.execute(
                        text(
                            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t "
                            "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = :t "
                            "AND type = 'index')"
                        ),
                        {"t": name},
                    ).scalar_one()
                )
            except OperationalError:  # SQLite built without the dbstat table
                has_dbstat = False
                break
        if not has_dbstat:
            per = {}
    path = Path(str(engine.url.database))
    return path.stat().st_size, per


def _table_names(engine: Engine) -> list[str]:
    from sqlalchemy import inspect

    known = set(inspect(engine).get_table_names())
    return [name for name in known if name != "alembic_version"] or list(Base.metadata.tables)


def prune_copy(url: str, keep_raw_days: float) -> dict[str, Any]:
    """Copy the database, prune the copy, and measure it; the copy is removed afterwards."""
    from monitor.store import retention

    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        copy_name = f"{parsed.database}_pruned"
        admin = make_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{copy_name}"'))
                started = time.perf_counter()
                _create_copy(conn, copy_name, str(parsed.database))
                copied = time.perf_counter() - started
            result = _prune(parsed.set(database=copy_name), keep_raw_days, retention, copied)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{copy_name}"'))
            admin.dispose()
        return result
    source = Path(str(parsed.database))
    workdir = Path(tempfile.mkdtemp(prefix="gm-prune-", dir=source.parent))
    try:
        engine = make_engine(parsed)
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        engine.dispose()
        started = time.perf_counter()
        target = workdir / source.name
        shutil.copyfile(source, target)
        copied = time.perf_counter() - started
        return _prune(make_url(f"sqlite:///{target}"), keep_raw_days, retention, copied)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _create_copy(conn: Any, copy_name: str, source: str, patience_s: float = 300.0) -> None:
    """CREATE DATABASE ... TEMPLATE, which needs the source to have no other connection: retried
    while someone else is connected to it, for up to `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            conn.execute(text(f'CREATE DATABASE "{copy_name}" TEMPLATE "{source}"'))
            return
        except OperationalError as exc:
            if "being accessed by other users" not in str(exc) or time.monotonic() > deadline:
                raise
            print(f"  {source} is in use by another connection: waiting to copy it", flush=True)
            time.sleep(5)


def _prune(url: Any, keep_raw_days: float, retention: Any, copied: float) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        before = sizes(engine)
        started = time.perf_counter()
        result = retention.prune(
            engine, datetime.now(UTC), timedelta(days=keep_raw_days), timedelta(days=365)
        )
        pruned = ", ".join(f"{n:,} {t}" for t, n in result.deleted.items() if n)
        pruned += f" deleted in {result.batches:,} batches"
        seconds = time.perf_counter() - started
        after = sizes(engine)
        started = time.perf_counter()
        vacuum = "VACUUM FULL" if engine.dialect.name == "postgresql" else "VACUUM"
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM FULL"))
        else:
            with engine.connect() as conn:
                conn.execute(text("VACUUM"))
        vacuum_seconds = time.perf_counter() - started
        compacted = sizes(engine)
    finally:
        engine.dispose()
    return {
        "copy_s": copied,
        "prune_s": seconds,
        "pruned": pruned,
        "before": before,
        "after": after,
        "vacuum": vacuum,
        "vacuum_s": vacuum_seconds,
        "compacted": compacted,
    }


def _timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f}"


def _size(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1024 * 1024 else f"{_mib(n)} MiB"


def report(
    name: str,
    counts: dict[str, int],
    pages: dict[tuple[str, str], tuple[float, float]] | None,
    reports: tuple[float, dict[tuple[str, str], tuple[float, int, int]]] | None,
    size: tuple[int, dict[str, int]],
    pruned: dict[str, Any] | None,
    keep_raw_days: float,
) -> str:
    lines = [f"### {name}", ""]
    lines.append(", ".join(f"{n:,} {t}" for t, n in sorted(counts.items())))
    lines.append("")
    if pages:
        lines += [
            "| page | 24 h cold | 24 h warm | 30 d cold | 30 d warm |",
            "|---|---|---|---|---|",
        ]
        for page in PAGES:
            cells = []
            for label in WINDOWS:
                cold, warm = pages[(page, label)]
                cells += [f"{cold * 1000:,.0f} ms", f"{warm * 1000:,.0f} ms"]
            lines.append(f"| {page} | {' | '.join(cells)} |")
        lines.append("")
    if reports:
        startup, results = reports
        lines += ["| report | time | peak RSS | size |", "|---|---|---|---|"]
        for (label, fmt), (seconds, peak_kib, nbytes) in results.items():
            lines.append(
                f"| {label} {fmt} | {seconds:.2f} s | {peak_kib / 1024:,.0f} MiB | {_size(nbytes)} |"
            )
        lines.append(f"| `gemma-monitor --help` (start-up alone) | {startup:.2f} s | | |")
        lines.append("")
    total, per = size
    lines += ["| table | size (MiB) |", "|---|---|"]
    lines += [f"| {t} | {_mib(n)} |" for t, n in sorted(per.items(), key=lambda kv: -kv[1])]
    lines.append(f"| **database** | **{_mib(total)}** |")
    lines.append("")
    if pruned:
        lines.append(
            f"Retention with raw rows kept {keep_raw_days:g} days, {pruned.get('where', 'on a copy')}: "
            f"prune "
            f"{pruned['prune_s']:.1f} s ({pruned['pruned']}); database {_mib(pruned['before'][0])} MiB "
            f"→ {_mib(pruned['after'][0])} MiB right after, {_mib(pruned['compacted'][0])} MiB after "
            f"{pruned['vacuum']} "
            f"({pruned['vacuum_s']:.1f} s)."
        )
        lines.append("")
    return "\n".join(lines)


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("requests", "guard_verdicts", "probe_samples", "quality_scores")
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per page (median)")
    parser.add_argument("--keep-raw-days", type=float, default=7.0)
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-reports", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument(
        "--prune-database-url",
        help="prune this database in place instead of a copy: a second store filled alike "
        "(a Postgres database cannot be copied while another connection uses it)",
    )
    parser.add_argument("--name", default=None, help="the heading of the printed section")
    args = parser.parse_args(argv)
    url = args.database_url
    engine = make_engine(url)
    try:
        counts = row_counts(engine)
        size = sizes(engine)
    finally:
        engine.dispose()
    name = args.name or normalize_url(url).get_backend_name()
    print(f"{name}: {counts}", flush=True)
    pages = None if args.skip_pages else time_pages(url, args.runs)
    reports = None
    if not args.skip_reports:
        with tempfile.TemporaryDirectory() as workdir:
            reports = time_reports(url, Path(workdir))
    pruned = None
    if args.prune_database_url:
        from monitor.store import retention

        pruned = _prune(normalize_url(args.prune_database_url), args.keep_raw_days, retention, 0.0)
        pruned["where"] = "on a second store filled alike"
    elif not args.skip_prune:
        pruned = prune_copy(url, args.keep_raw_days)
    print()
    print(report(name, counts, pages, reports, size, pruned, args.keep_raw_days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
