from __future__ import annotations

import random

import pytest

from monitor.probes.energy import (
    PowerSample,
    RequestSpan,
    energy_between,
    joules_per_1k_tokens,
    request_energy,
)


def constant(watts: float, times: range | list[float]) -> list[PowerSample]:
    return [PowerSample(float(t), watts) for t in times]


def ramp(times: range | list[float]) -> list[PowerSample]:
    """10 W per second from 0 W at t=0: the energy over [a, b] is 5 (b² - a²)."""
    return [PowerSample(float(t), 10.0 * t) for t in times]


def test_constant_power_over_a_request() -> None:
    (estimate,) = request_energy({"gpu0": constant(100, range(11))}, [RequestSpan("a", 2, 5, 150)])
    assert estimate.joules == pytest.approx(300.0)
    assert estimate.coverage == 1.0
    assert estimate.joules_per_1k_tokens == pytest.approx(2000.0)


def test_a_ramp_is_integrated_exactly_with_the_edges_interpolated() -> None:
    (estimate,) = request_energy({"gpu0": ramp(range(11))}, [RequestSpan("a", 2.5, 7.5)])
    assert estimate.joules == pytest.approx(5 * (7.5**2 - 2.5**2))  # 250 J
    assert estimate.joules_per_1k_tokens is None


def test_a_request_entirely_between_two_samples() -> None:
    (estimate,) = request_energy({"gpu0": ramp([0, 10])}, [RequestSpan("a", 2, 4, 3)])
    assert estimate.joules == pytest.approx(5 * (4**2 - 2**2))  # 60 J
    assert estimate.coverage == 1.0


def test_overlapping_requests_share_each_instant_equally() -> None:
    power = {"gpu0": constant(100, range(11))}
    a, b, c = request_energy(
        power,
        [RequestSpan("a", 0, 4), RequestSpan("b", 2, 6), RequestSpan("c", 2, 4)],
    )
    # [0,2] a alone: 200; [2,4] a, b, c: 200 each third; [4,6] b alone: 200
    assert a.joules == pytest.approx(200 + 200 / 3)
    assert b.joules == pytest.approx(200 / 3 + 200)
    assert c.joules == pytest.approx(200 / 3)


def test_two_identical_concurrent_requests_get_half_each() -> None:
    power = {"gpu0": ramp(range(11))}
    one, two = request_energy(power, [RequestSpan("1", 1, 3), RequestSpan("2", 1, 3)])
    assert one.joules == two.joules == pytest.approx(5 * (9 - 1) / 2)


def test_a_gap_in_sampling_is_interpolated_unless_longer_than_max_gap() -> None:
    series = constant(100, [0, 1, 2, 8, 9, 10])
    span = [RequestSpan("a", 0, 10)]
    (across,) = request_energy({"gpu0": series}, span)
    assert across.joules == pytest.approx(1000.0) and across.coverage == 1.0
    (skipped,) = request_energy({"gpu0": series}, span, max_gap_s=2)
    assert skipped.joules == pytest.approx(400.0)
    assert skipped.coverage == pytest.approx(0.4)

    rising = [PowerSample(2, 100), PowerSample(8, 400)]  # a straight line across the gap
    (estimate,) = request_energy({"gpu0": rising}, [RequestSpan("a", 2, 8)])
    assert estimate.joules == pytest.approx(6 * 250)


def test_power_is_not_extrapolated_beyond_the_samples() -> None:
    before, straddling = request_energy(
        {"gpu0": constant(100, range(11))}, [RequestSpan("a", -5, 0), RequestSpan("b", 8, 12)]
    )
    assert (before.joules, before.coverage) == (0.0, 0.0)
    assert straddling.joules == pytest.approx(200.0)
    assert straddling.coverage == pytest.approx(0.5)


def test_energy_is_summed_over_gpus() -> None:
    power = {"gpu0": constant(100, range(5)), "gpu1": constant(50, range(3))}
    (estimate,) = request_energy(power, [RequestSpan("a", 0, 4, 600)])
    assert estimate.joules == pytest.approx(400 + 100)
    assert estimate.coverage == pytest.approx((4 + 2) / 8)
    assert estimate.joules_per_1k_tokens == pytest.approx(500 / 0.6)


def test_unsorted_samples_and_repeated_times_are_accepted() -> None:
    series = [PowerSample(2, 100), PowerSample(0, 100), PowerSample(1, 5), PowerSample(1, 100)]
    (estimate,) = request_energy({"gpu0": series}, [RequestSpan("a", 0, 2)])
    assert estimate.joules == pytest.approx(200.0)  # the later reading at t=1 wins


def test_an_instant_request_draws_nothing_and_a_reversed_one_is_refused() -> None:
    (instant,) = request_energy({"gpu0": constant(100, range(3))}, [RequestSpan("a", 1, 1, 5)])
    assert (instant.joules, instant.coverage, instant.joules_per_1k_tokens) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        request_energy({}, [RequestSpan("b", 2, 1)])


def test_all_attributed_energy_is_the_energy_drawn_while_any_request_ran() -> None:
    rng = random.Random(7)
    series = sorted(
        (PowerSample(t + rng.random() * 0.5, rng.uniform(50, 300)) for t in range(0, 100)),
        key=lambda s: s.t,
    )
    spans = []
    for i in range(60):
        start = rng.uniform(0, 95)
        spans.append(RequestSpan(str(i), start, start + rng.uniform(0, 8)))
    estimates = request_energy({"gpu0": series}, spans)

    busy: list[tuple[float, float]] = []  # the union of the request intervals
    for span in sorted(spans, key=lambda s: s.start):
        if busy and span.start <= busy[-1][1]:
            busy[-1] = (busy[-1][0], max(busy[-1][1], span.end))
        else:
            busy.append((span.start, span.end))
    drawn = sum(energy_between(series, a, b) for a, b in busy)
    assert sum(e.joules for e in estimates) == pytest.approx(drawn)


def test_joules_per_1k_tokens_over_many_requests() -> None:
    power = {"gpu0": constant(100, range(11))}
    estimates = request_energy(
        power, [RequestSpan("a", 0, 2, 100), RequestSpan("b", 4, 6, 300), RequestSpan("c", 8, 9)]
    )
    assert joules_per_1k_tokens(estimates) == pytest.approx(1000 * 400 / 400)
    assert joules_per_1k_tokens(estimates[2:]) is None
