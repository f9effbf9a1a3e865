"""Sustained recorder throughput: records/s from `Recorder.submit` until `flush` returns.

    .venv/bin/python bench/recorder_bench.py                 # Postgres and SQLite, 50,000 records
    .venv/bin/python bench/recorder_bench.py --records 200000 --only postgres
    .venv/bin/python bench/recorder_bench.py --verdicts      # each record with one guard verdict
    .venv/bin/python bench/recorder_bench.py --share 0.1 --errors 0.05   # sampling 1 in 10
    .venv/bin/python bench/recorder_bench.py --rollup       # then time rolling the records up
    .venv/bin/python bench/recorder_bench.py --rate 5000 --seconds 60   # paced, as a server
    .venv/bin/python bench/recorder_bench.py --ids uuid4    # random ids, as before UUIDv7

A paced run submits `--rate` records a second for `--seconds` to a recorder with a server's
defaults (queue of 20,000 records, batches of 1,000, spool behind it) and prints, each second,
the queue's depth, what was written and what went to the spool: the recorder keeps up when the
depth stays flat and nothing is spooled.

Postgres: MONITOR_TEST_POSTGRES_URL (default: local, trust auth), in a throwaway schema.
SQLite: a file in a temporary directory. The target is >= 5,000 records/s into Postgres.

Records get the server's ids (`new_request_id`: time first) unless `--ids uuid4` asks for
random ones, which each index on `id` takes at a random page. CPU is this process's (the
recorder's thread, SQLite's work included; Postgres works in its own processes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from monitor.guard.verdict import Action, Finding, Stage, Verdict
from monitor.record import RequestRecord, new_request_id
from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.models import guard_verdicts_table, requests_table
from monitor.store.recorder import Recorder
from monitor.store.rollups import rebuild
from monitor.store.sampling import Sampler
from monitor.store.spool import Spool

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# An input verdict as the default policy leaves it on a prompt with an email address in it.
VERDICT = Verdict(
    stage=Stage.INPUT,
    policy="default",
    action=Action.REDACT,
    findings=(Finding("pii.email", "pii", Action.REDACT, "pii", "messages[1].content", (10, 27)),),
    latency_us=85,
).as_dict()


IDS = {"v7": new_request_id, "uuid4": lambda: uuid.uuid4().hex}


def records(
    count: int, *, with_verdict: bool = False, errors: float = 0.0, ids: str = "v7"
) -> Iterator[RequestRecord]:
    """`count` records; a share `errors` of them (evenly spread) backend errors."""
    start = datetime.now(UTC)
    new_id = IDS[ids]
    every = round(1 / errors) if errors else 0
    for i in range(count):
        yield RequestRecord(
            id=new_id(),
            ts=start + timedelta(microseconds=i),
            route="/v1/chat/completions",
            protocol="openai",
            model="gemma-3-270m",
            backend="http://127.0.0.1:8080",
            principal="0123456789abcdef",
            stream=bool(i % 2),
            outcome="backend_error" if every and i % every == 0 else "ok",
            http_status=200,
            latency_ms=250.0,
            ttft_ms=40.0,
            itl_ms=8.0,
            prompt_tokens=42,
            completion_tokens=128,
            tokens_per_s=120.0,
            input_chars=512,
            input_messages=3,
            guard_ms=1.5,
            prompt_hash="a" * 64,
            response_hash="b" * 64,
            extra={"policy": "default"},
            verdicts=[VERDICT] if with_verdict else [],
        )


@contextmanager
def postgres_url() -> Iterator[str]:
    base = make_url(os.environ.get("MONITOR_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'bench.db'}"


async def run(
    url: str,
    count: int,
    batch_size: int,
    queue_size: int,
    *,
    with_verdicts: bool,
    keep_one_in: int = 1,
    errors: float = 0.0,
    rollup: bool = False,
    ids: str = "v7",
) -> tuple[float, float, int, int]:
    migrate.upgrade(url)
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as spool_dir:
        recorder = Recorder(
            engine,
            Spool(spool_dir),
            queue_size=queue_size,
            batch_size=batch_size,
            flush_interval_s=0.25,
            retry_interval_s=2.0,
            sampler=Sampler(keep_one_in),
        )
        await recorder.start()
        pending = list(records(count, with_verdict=with_verdicts, errors=errors, ids=ids))
        started, cpu_started = time.perf_counter(), time.process_time()
        for i, record in enumerate(pending, 1):
            recorder.submit(record)
            if i % 500 == 0:
                await asyncio.sleep(0)  # as a server would: the writer runs between requests
        await recorder.flush()
        await recorder.stop()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(requests_table)).scalar_one()
            verdicts = conn.execute(
                select(func.count()).select_from(guard_verdicts_table)
            ).scalar_one()
        if recorder.records_spooled_total:
            print(f"  note: {recorder.records_spooled_total} records went through the spool")
        if rollup:  # what the rollup worker's seal costs for these rows (minutes and hours)
            first, last = pending[0].ts, pending[-1].ts
            started = time.perf_counter()
            rebuild(engine, first, last + timedelta(minutes=1))
            took = time.perf_counter() - started
            print(f"  rolled up in {took:.2f} s = {stored / took:,.0f} stored rows/s, "
                  f"{count / took:,.0f} requests/s")  # fmt: skip
    engine.dispose()
    return elapsed, cpu, int(stored), int(verdicts)


async def paced(
    url: str, rate: int, seconds: int, *, with_verdicts: bool, errors: float
) -> tuple[int, int, int]:
    """Submit `rate` records a second for `seconds`, as a server's requests would arrive (in
    10 ms ticks); print one line a second. Returns (deepest queue, records spooled, dropped)."""
    migrate.upgrade(url)
    engine = make_engine(url)
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as spool_dir:
        recorder = Recorder(engine, Spool(spool_dir))  # a server's defaults
        await recorder.start()
        total = rate * seconds
        source = records(total, with_verdict=with_verdicts, errors=errors)
        sent = deepest = second_deepest = 0
        cpu0, started = time.process_time(), loop.time()
        second = 1
        print(f"  {'s':>3} {'submitted':>10} {'written':>10} {'queue max':>10} {'spooled':>8}")
        while sent < total:
            due = min(total, int((loop.time() - started) * rate))
            for record in itertools.islice(source, due - sent):
                recorder.submit(record)
            sent = due
            second_deepest = max(second_deepest, recorder.queue_depth)
            if loop.time() - started >= second or sent == total:
                print(f"  {second:>3} {sent:>10,d} {recorder.records_written_total:>10,d}"
                      f" {second_deepest:>10,d} {recorder.records_spooled_total:>8,d}")  # fmt: skip
                deepest, second_deepest = max(deepest, second_deepest), 0
                second += 1
            await asyncio.sleep(0.01)
        submitted_at = loop.time()
        await recorder.flush()
        drained = loop.time() - submitted_at
        elapsed, cpu = loop.time() - started, time.process_time() - cpu0
        await recorder.stop()
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(requests_table)).scalar_one()
        print(
            f"  {total:,d} records at {total / elapsed:,.0f}/s offered over {elapsed:.1f} s;"
            f" the queue drained {drained * 1000:,.0f} ms after the last; stored {stored:,d};"
            f" deepest queue {deepest:,d}; spooled {recorder.records_spooled_total:,d};"
            f" dropped {recorder.records_dropped_total:,d};"
            f" process CPU {cpu / total * 1e6:,.0f} µs/record"
        )
    engine.dispose()
    return deepest, recorder.records_spooled_total, recorder.records_dropped_total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--queue-size",
        type=int,
        help="recorder queue bound; default: all the records, so the burst measures the "
        "database path alone (a smaller queue spills the excess through the spool)",
    )
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    parser.add_argument(
        "--verdicts", action="store_true",
        help="give each record one guard verdict (a redaction: sampling keeps them all)",
    )  # fmt: skip
    parser.add_argument(
        "--share", type=float, default=1.0,
        help="sampling.share: store one success in 1/share (errors are all stored)",
    )  # fmt: skip
    parser.add_argument("--errors", type=float, default=0.0, help="share of backend errors")
    parser.add_argument("--rollup", action="store_true", help="then time their rollups")
    parser.add_argument(
        "--rate", type=int, help="paced: submit this many records a second (see --seconds)"
    )
    parser.add_argument("--seconds", type=int, default=60, help="paced: for this long")
    parser.add_argument(
        "--ids", choices=sorted(IDS), default="v7",
        help="record ids: v7 (time first, the server's) or uuid4 (random)",
    )  # fmt: skip
    args = parser.parse_args()
    targets = {"postgres": postgres_url, "sqlite": sqlite_url}
    if args.rate:
        failed = False
        for name, make_url_for in targets.items():
            if args.only and name != args.only:
                continue
            print(f"{name}: {args.rate:,d} records/s for {args.seconds} s")
            with make_url_for() as url:
                _, spooled, dropped = asyncio.run(
                    paced(url, args.rate, args.seconds, with_verdicts=args.verdicts,
                          errors=args.errors)
                )  # fmt: skip
            failed = failed or bool(spooled or dropped)
        return 1 if failed else 0
    keep_one_in = round(1 / args.share)
    errors = args.records // round(1 / args.errors) if args.errors else 0
    successes = args.records - errors
    # a record with the redacting verdict is always stored, as an error is
    sampled = keep_one_in > 1 and not args.verdicts
    expected = errors + (successes // keep_one_in if sampled else successes)

    for name, make_url_for in targets.items():
        if args.only and name != args.only:
            continue
        with make_url_for() as url:
            queue_size = args.queue_size or args.records
            elapsed, cpu, stored, verdicts = asyncio.run(
                run(url, args.records, args.batch_size, queue_size, with_verdicts=args.verdicts,
                    keep_one_in=keep_one_in, errors=args.errors, rollup=args.rollup,
                    ids=args.ids)
            )  # fmt: skip
        rate = args.records / elapsed
        print(
            f"{name:8s} {args.records:>8,d} records in {elapsed:6.2f} s = {rate:>9,.0f} records/s"
            f"  (stored {stored:,d} = {stored / elapsed:,.0f} rows/s, verdicts {verdicts:,d};"
            f" CPU {cpu / args.records * 1e6:.1f} us a record)"
        )
        expected_verdicts = stored if args.verdicts else 0
        # one success in N is kept per block of N: the last, partial block may keep one more
        if not expected <= stored <= expected + 1 or verdicts != expected_verdicts:
            print(
                f"  ERROR: expected {expected:,d} stored records"
                f" and {expected_verdicts:,d} verdicts",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
