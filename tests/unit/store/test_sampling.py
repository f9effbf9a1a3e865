"""Record sampling: what is always kept, one success in N with weight N, the share setting.
(Weighted percentiles are tested on the databases: tests/integration/store/test_weighted_percentiles.py.)"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from monitor.config import SamplingSettings, Settings
from monitor.record import RequestRecord
from monitor.store.sampling import Sampler, always_kept

T0 = datetime(2027, 1, 1, tzinfo=UTC)
NOT_OK = ("blocked_input", "blocked_output", "invalid", "rate_limited", "backend_error",
          "client_abort")  # fmt: skip


def record(outcome: str = "ok", action: str | None = None, stream: bool = False) -> RequestRecord:
    verdicts = [{"stage": "input", "action": action}] if action is not None else []
    return RequestRecord(id="r", ts=T0, route="/v1/chat/completions", protocol="openai",
                         outcome=outcome, verdicts=verdicts, stream=stream)  # type: ignore[arg-type]  # fmt: skip


def test_every_non_success_and_every_flagged_success_is_kept_with_weight_1() -> None:
    sampler = Sampler(100, rng=random.Random(1))
    for outcome in NOT_OK:
        assert always_kept(record(outcome))
        assert all(sampler.weight(record(outcome)) == 1 for _ in range(500))
    for action in ("flag", "redact", "block"):
        assert all(sampler.weight(record("ok", action)) == 1 for _ in range(500))
    assert not always_kept(record("ok", "allow")) and not always_kept(record("ok"))
    assert sampler.sampled_out_total == 0


def test_one_success_in_each_block_of_n_is_kept_with_weight_n() -> None:
    n = 10
    sampler = Sampler(n, rng=random.Random(7))
    weights = [sampler.weight(record()) for _ in range(n * 500)]
    blocks = [weights[i : i + n] for i in range(0, len(weights), n)]
    assert all(sorted(block) == [0] * (n - 1) + [n] for block in blocks)
    assert sampler.sampled_out_total == n * 500 - 500
    # the kept place moves at random within the blocks: not always the same one
    places = [block.index(n) for block in blocks]
    assert len(set(places)) == n
    # interleaved non-successes neither take a place nor shift the blocks
    sampler = Sampler(n, rng=random.Random(7))
    mixed = []
    for _ in range(n * 500):
        assert sampler.weight(record("backend_error")) == 1
        mixed.append(sampler.weight(record()))
    assert mixed == weights


def test_a_periodic_client_is_sampled_without_bias() -> None:
    """A stream every other request, keep 1 in 2: a fixed place would keep only one kind."""
    sampler = Sampler(2, rng=random.Random(3))
    kept_streams = kept = 0
    for i in range(20_000):
        r = record(stream=i % 2 == 0)
        if sampler.weight(r):
            kept += 1
            kept_streams += r.stream
    assert kept == 10_000
    assert abs(kept_streams / kept - 0.5) < 0.02  # 4 standard errors of 0.005


def test_share_one_keeps_everything() -> None:
    sampler = Sampler()
    assert [sampler.weight(record()) for _ in range(100)] == [1] * 100
    assert sampler.share == 1.0 and sampler.sampled_out_total == 0


@pytest.mark.parametrize(("share", "n"), [(1, 1), (0.5, 2), (0.2, 5), (0.1, 10), (0.01, 100),
                                          (0.001, 1000), (1 / 3, 3)])  # fmt: skip
def test_a_share_is_one_in_a_whole_number(share: float, n: int) -> None:
    assert SamplingSettings(share=share).keep_one_in == n


@pytest.mark.parametrize("share", [0.3, 0.15, 0.75, 0, -0.1, 1.5])
def test_a_share_whose_reciprocal_is_not_whole_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match=r"sampling\.share|greater than 0|less than or equal"):
        SamplingSettings(share=share)


def test_the_share_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_SAMPLING__SHARE", "0.05")
    assert Settings().sampling.keep_one_in == 20
    assert Settings.model_fields["sampling"].default.share == 1.0  # off by default
