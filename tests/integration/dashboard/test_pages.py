"""Every page of the dashboard, through AppTest, on a populated store (SQLite and Postgres):
no exception, and the figures shown are those computed here from the raw records."""

from __future__ import annotations

import re

import pytest
from monitor.dashboard.figures import fmt

from monitor.store.alerts import alert_history, list_alerts
from tests.integration.dashboard.conftest import Store, app_for, metrics

PAGES = ["overview", "safety", "performance", "quality", "alerts", "requests"]


def _exact_percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _ms(text: str) -> float:
    """A shown duration ("850 ms", "10.96 s") in milliseconds."""
    number = float(re.sub(r"[^0-9.]", "", text))
    return number * 1000 if text.endswith(" s") else number


def test_overview_shows_the_window_s_figures_and_the_firing_alert(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Overview"]
    outcomes = [r.outcome for r in store.records]
    ok, failed = outcomes.count("ok"), outcomes.count("backend_error")
    shown = metrics(at)
    assert shown["Requests"] == str(len(store.records))
    assert shown["Success rate"] == fmt(100 * ok / (ok + failed), " %", 2)
    assert shown["Error rate"] == fmt(100 * failed / (ok + failed), " %", 2)
    latencies = [r.latency_ms for r in store.records if r.outcome == "ok" and r.latency_ms]
    exact = _exact_percentile(latencies, 0.95)
    assert abs(_ms(shown["p95 latency"]) - exact) <= exact * 0.1  # one bucket is 9 % wide
    assert any("low_success_rate" in e.value for e in at.error)
    assert len(at.get("vega_lite_chart")) == 6
    health = at.dataframe[0].value
    assert list(health["status"]) == ["up"]


def test_safety_counts_the_verdicts_by_stage_and_action(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    at.switch_page("pages/safety.py").run()
    assert not at.exception
    verdicts = [v for r in store.records for v in r.verdicts]
    shown = metrics(at)
    assert shown["Blocked output"] == str(
        sum(1 for v in verdicts if v["stage"] == "output" and v["action"] == "block")
    )
    assert shown["Redacted"] == str(sum(1 for v in verdicts if v["action"] == "redact"))
    assert shown["Blocked input"] == "0"
    recent = at.dataframe[-1].value
    assert len(recent) == min(50, sum(1 for v in verdicts if v["action"] != "allow"))
    # content is not stored (the default): hashes, never text
    assert all(str(p).startswith("sha256:") for p in recent["prompt"])


def test_performance_shows_latency_percentiles_and_the_no_gpu_state(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    at.switch_page("pages/performance.py").run()
    assert not at.exception
    latencies = [r.latency_ms for r in store.records if r.outcome == "ok" and r.latency_ms]
    shown = metrics(at)
    for label, q in (("p50 latency", 0.5), ("p99 latency", 0.99)):
        exact = _exact_percentile(latencies, q)
        assert abs(_ms(shown[label]) - exact) <= exact * 0.1
    assert shown["Tokens/s (mean)"] == "40.0"
    assert any("No GPU sample" in i.value for i in at.info)


def test_quality_shows_each_score_s_mean_and_the_lowest_answers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    at.switch_page("pages/quality.py").run()
    assert not at.exception
    values = [s.value for s in store.scores]
    assert metrics(at)["heuristic.overall"] == f"{sum(values) / len(values):.3f}"
    lowest = at.dataframe[0].value
    assert list(lowest["score"]) == sorted(values)[: len(lowest)]


def test_alerts_lists_the_firing_alert_and_acknowledges_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception
    assert metrics(at)["Firing"] == "1"
    at.text_input(key="ack_by").input("alice")
    at.button[0].click().run()
    assert not at.exception
    (stored,) = list_alerts(store.engine, state="firing")
    assert stored["acknowledged_by"] == "alice"
    kinds = [e["kind"] for e in alert_history(store.engine, stored["fingerprint"])]
    assert kinds == ["acknowledged"]
    assert "alice" in at.dataframe[0].value["acknowledged"][0]


def test_requests_pages_filters_and_drills_down(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(store.url, monkeypatch).run()
    at.switch_page("pages/requests.py").run()
    assert not at.exception
    assert at.caption[0].value.startswith(f"{len(store.records):,} matching records")
    table = at.dataframe[0].value
    newest = sorted(store.records, key=lambda r: r.ts, reverse=True)
    assert list(table["id"]) == [r.id for r in newest[:50]]

    at.selectbox(key="outcome").select("backend_error").run()
    errors = [r for r in newest if r.outcome == "backend_error"]
    assert at.caption[0].value.startswith(f"{len(errors)} matching records")
    assert list(at.dataframe[0].value["id"]) == [r.id for r in errors]

    with_verdicts = next(r for r in errors if len(r.verdicts) == 2)
    at.selectbox(key="record").select(with_verdicts.id).run()
    verdicts = at.dataframe[1].value
    assert list(verdicts["action"]) == [v["action"] for v in with_verdicts.verdicts]

    at.selectbox(key="outcome").select("any").run()
    at.text_input(key="q").input(newest[7].id).run()
    assert list(at.dataframe[0].value["id"]) == [newest[7].id]


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_shows_what_to_do_next_on_every_page(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    at = app_for(empty_store.url, monkeypatch).run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception
    assert not at.error
    assert at.info, "an empty page says why it is empty"
    if page in ("overview", "requests"):
        assert any("gemma-monitor serve" in i.value for i in at.info)
