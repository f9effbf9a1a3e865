"""The synthetic alert history the bench and dashboard tests fill a store with: whatever the
day it is generated and the random draws, it must load into a store whose keys are unique."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def modules():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        import operations
        import synthetic

        yield synthetic, operations
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("days", [2, 30])
def test_no_alert_is_open_twice_and_delivery_keys_are_unique(modules, days: int) -> None:  # type: ignore[no-untyped-def]
    synthetic, operations = modules
    start = datetime(2026, 12, 4, 3, 5, tzinfo=UTC)
    for seed in range(1500):
        month = synthetic.plan(start + timedelta(minutes=seed), days)
        alerts, _, deliveries = operations.alert_rows(month, random.Random(seed))
        keys = [(d["receiver"], d["key"]) for d in deliveries]
        assert len(keys) == len(set(keys)), f"seed {seed}: a delivery key repeats"
        spans: dict[str, list[tuple[datetime, datetime | None]]] = {}
        for alert in alerts:
            spans.setdefault(alert["fingerprint"], []).append(
                (alert["pending_since"], alert["resolved_at"])
            )
        for fp, opened in spans.items():
            opened.sort(key=lambda span: span[0])
            for (_, first_end), (second_start, _) in pairwise(opened):
                assert first_end is not None and first_end < second_start, (seed, fp)
