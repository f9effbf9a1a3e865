"""Seeded traffic for the sampling tests: a mix of outcomes, flagged and allowed successes, with
lognormal latencies, and what it truly was (the figures a store keeping everything shows)."""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from monitor.guard.verdict import Action, Finding, Stage, Verdict
from monitor.record import RequestRecord
from monitor.store.recorder import Recorder
from monitor.store.sampling import Sampler
from monitor.store.spool import Spool

# outcome → share of the traffic
MIX = {
    "ok": 0.85, "backend_error": 0.05, "blocked_input": 0.03, "blocked_output": 0.01,
    "invalid": 0.02, "rate_limited": 0.02, "client_abort": 0.02,
}  # fmt: skip
FLAGGED_SHARE = 0.08  # of the successes: a guard flagged them
ALLOWED_SHARE = 0.30  # of the plain successes: an input verdict that allowed them, scored


def _verdict(stage: Stage, action: Action, score: float | None = None) -> dict[str, object]:
    finding = Finding("injection.ignore_previous", "injection", action, "injection", score=score)
    return Verdict(stage, "default", action, (finding,), latency_us=50).as_dict()


@dataclass
class Traffic:
    records: list[RequestRecord]
    ok_latencies: list[float] = field(default_factory=list)  # of every ok request, sorted

    @property
    def plain_successes(self) -> int:
        return sum(1 for r in self.records if r.outcome == "ok" and not _flagged(r))

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.records if r.outcome == outcome)


def _flagged(record: RequestRecord) -> bool:
    return any(v["action"] != "allow" for v in record.verdicts)


def make_traffic(seed: int, count: int, since: datetime, until: datetime) -> Traffic:
    """`count` requests spread over the window at random, in time order."""
    rng = random.Random(seed)
    span = (until - since).total_seconds()
    times = sorted(since + timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    outcomes, shares = list(MIX), list(MIX.values())
    records: list[RequestRecord] = []
    for i, ts in enumerate(times):
        outcome = rng.choices(outcomes, shares)[0]
        stream = rng.random() < 1 / 3
        record = RequestRecord(
            id=f"s-{seed}-{i:06d}", ts=ts, route="/v1/chat/completions", protocol="openai",
            model=rng.choice(("gemma-3-1b", "gemma-3-4b")), backend="http://127.0.0.1:8080",
            principal=f"{rng.randrange(20):016x}", stream=stream, outcome=outcome,  # type: ignore[arg-type]
            http_status=200 if outcome == "ok" else 400,
        )  # fmt: skip
        if outcome in ("ok", "backend_error", "client_abort"):
            record.latency_ms = rng.lognormvariate(math.log(800), 0.6)
        if outcome == "ok":
            record.ttft_ms = rng.lognormvariate(math.log(120), 0.4) if stream else None
            record.prompt_tokens = rng.randint(5, 400)
            record.completion_tokens = rng.randint(1, 300)
            record.tokens_per_s = rng.uniform(20, 80)
            if rng.random() < FLAGGED_SHARE:
                record.verdicts = [_verdict(Stage.OUTPUT, Action.FLAG, 0.7)]
            elif rng.random() < ALLOWED_SHARE:
                record.verdicts = [_verdict(Stage.INPUT, Action.ALLOW, rng.uniform(0, 0.5))]
        elif outcome == "blocked_input":
            record.verdicts = [_verdict(Stage.INPUT, Action.BLOCK, 0.95)]
        elif outcome == "blocked_output":
            record.verdicts = [_verdict(Stage.OUTPUT, Action.BLOCK, 0.9)]
        record.guard_ms = rng.uniform(0.1, 3.0)
        records.append(record)
    ok = sorted(r.latency_ms for r in records if r.outcome == "ok" and r.latency_ms is not None)
    return Traffic(records, ok)


def store_traffic(engine: Engine, spool_dir: Path, traffic: Traffic, sampler: Sampler) -> None:
    """Every record through a real `Recorder` with `sampler`, flushed to the database."""

    async def run() -> None:
        recorder = Recorder(engine, Spool(spool_dir), queue_size=100_000, sampler=sampler)
        await recorder.start()
        try:
            for start in range(0, len(traffic.records), 2000):
                for record in traffic.records[start : start + 2000]:
                    recorder.submit(_copy(record))
                await recorder.flush()
        finally:
            await recorder.stop()
        assert recorder.records_dropped_total == 0 and recorder.records_spooled_total == 0

    asyncio.run(run())


def _copy(record: RequestRecord) -> RequestRecord:
    # `submit` sets the weight on the record it is given: each store gets its own copies
    return RequestRecord.from_row(record.to_row())


def quantile(values: list[float], q: float) -> float:
    """percentile_cont of sorted values (q clipped to [0, 1])."""
    q = min(max(q, 0.0), 1.0)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
