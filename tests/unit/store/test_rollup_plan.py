"""Cutting windows into the rollups' tiers: pure functions, no database."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.store.rollup_kinds import EPOCH, HOUR, MINUTE, ceil_to, floor_to, score_bin
from monitor.store.rollup_reads import plan, step_starts

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("size", [MINUTE, HOUR, timedelta(hours=6), timedelta(minutes=15)])
def test_floor_and_ceil_round_to_multiples_since_the_epoch(size: timedelta) -> None:
    rng = random.Random(str(size))
    for _ in range(2000):
        t = EPOCH + timedelta(seconds=rng.uniform(0, 2e9))
        floor = floor_to(t, size)
        assert (floor - EPOCH) % size == timedelta(0) and floor <= t < floor + size
        assert ceil_to(t, size) == (floor if floor == t else floor + size)
    paris = timezone(timedelta(hours=2))
    assert floor_to(datetime(2026, 1, 1, 12, 30, tzinfo=paris), HOUR) == datetime(
        2026, 1, 1, 10, tzinfo=UTC
    )


def test_score_bins_cover_zero_to_one() -> None:
    assert [score_bin(s) for s in (0.0, 0.049, 0.05, 0.5, 0.999, 1.0, 1.5, -0.1)] == [
        0, 0, 1, 10, 19, 19, 19, 0,
    ]  # fmt: skip


def test_steps_cover_the_window_and_the_last_may_be_shorter() -> None:
    starts = step_starts(T0, T0 + timedelta(minutes=50), timedelta(minutes=20))
    assert starts == [T0, T0 + timedelta(minutes=20), T0 + timedelta(minutes=40)]
    assert step_starts(T0, T0, MINUTE) == []
    with pytest.raises(ValueError, match="positive"):
        step_starts(T0, T0 + HOUR, timedelta(0))


def covered(ranges: list[tuple[datetime, datetime]]) -> timedelta:
    return sum((end - start for start, end in ranges), timedelta(0))


@pytest.mark.parametrize("seed", range(20))
def test_the_tiers_tile_every_step_exactly(seed: int) -> None:
    rng = random.Random(seed)
    since = T0 + timedelta(seconds=rng.uniform(0, 86400))
    until = since + timedelta(seconds=rng.uniform(60, 86400 * 5))
    step = timedelta(seconds=rng.choice((60, 900, 3600, 6 * 3600, rng.uniform(30, 40000))))
    watermark = since + (until - since) * rng.uniform(-0.2, 1.2)
    starts = step_starts(since, until, step)
    tiers = plan(starts, until, watermark, hours=True)
    pieces = sorted((s, e, tier) for tier, ranges in tiers.items() for s, e in ranges)
    # no gap, no overlap, from since to until
    assert pieces[0][0] == since and pieces[-1][1] == until
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert covered(tiers["raw"]) + covered(tiers["minute"]) + covered(tiers["hour"]) == (
        until - since
    )
    bounds = [*starts, until]
    for start, end, tier in pieces:
        if tier == "raw":
            continue
        size = HOUR if tier == "hour" else MINUTE
        assert floor_to(start, size) == start and floor_to(end, size) == end
        assert end <= watermark  # rollups only where sealed
        # inside one step: a rollup row is counted in exactly one slice
        for bound in bounds:
            assert not start < bound < end
