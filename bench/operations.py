"""The operations side of a synthetic month (`synthetic.Month`): probe samples, and the alerts
its incidents raise, with their events and webhook deliveries.

Probes: host CPU and memory, the proxy's and the backend's processes, one GPU (utilisation,
memory, temperature, power) every `interval_s`, and a health check of each backend every 30 s;
the daily curve shows in them, and so do the incidents (a backend down, a hot GPU, GPU memory
high). Alerts: one episode per incident (two for the outage, two for the slow hours), pending
then firing then resolved (or still firing at the end), the critical and high ones
acknowledged, and short flaps of the latency rule spread over the month; each notification goes
to two receivers, one of which fails now and then.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import orjson
from synthetic import BACKENDS, Month, Row, clamp, load

from monitor.alerts.rules import default_rules
from monitor.alerts.state import Alert, fingerprint
from monitor.config_types import AlertRule

GPU_TOTAL_MB = 81_920.0
PROXY_PID, BACKEND_PID = 4242, 4243


def probe_rows(
    month: Month, rng: random.Random, interval_s: float, batch: int
) -> Iterator[list[Row]]:
    """Probe rows in time order: system and GPU every `interval_s`, health every 30 s."""
    rows: list[Row] = []
    step = timedelta(seconds=interval_s)
    ts = month.start + step / 2
    end = month.end
    host_mem = 48_000.0
    proxy_rss = 380.0
    last_health = month.start - timedelta(seconds=30)
    while ts < end:
        busy = load(ts)
        incidents = {i.kind: i for i in month.active(ts)}
        cpu = clamp(12 + 55 * busy + rng.gauss(0, 6), 1, 100)
        host_mem = clamp(host_mem + rng.gauss(0, 40), 40_000, 60_000)
        proxy_rss = clamp(proxy_rss + rng.gauss(0.02, 1.5), 300, 700)
        util = clamp(10 + 80 * busy + rng.gauss(0, 7), 0, 100)
        gpu_mem = 61_000 + 9_000 * busy + rng.gauss(0, 300)
        if "gpu_memory_high" in incidents:
            gpu_mem = 79_300 + rng.gauss(0, 200)
        temp = 48 + 30 * util / 100 + rng.gauss(0, 1.2)
        if "gpu_hot" in incidents:
            temp = 88 + rng.gauss(0, 1.5)
        power = 90 + 260 * util / 100 + rng.gauss(0, 8)
        values = (
            ("system", "host_cpu_percent", cpu, "host"),
            ("system", "host_memory_used_mb", host_mem, "host"),
            ("system", "host_memory_percent", host_mem / 64_000 * 100, "host"),
            ("system", "proxy_rss_mb", proxy_rss, f"proxy:{PROXY_PID}"),
            (
                "system",
                "proxy_cpu_percent",
                clamp(4 + 30 * busy + rng.gauss(0, 3), 0, 200),
                f"proxy:{PROXY_PID}",
            ),
            ("system", "backend_rss_mb", 5_900 + rng.gauss(0, 20), f"backend:{BACKEND_PID}"),
            (
                "system",
                "backend_cpu_percent",
                clamp(20 + 60 * busy + rng.gauss(0, 5), 0, 200),
                f"backend:{BACKEND_PID}",
            ),
            ("gpu", "gpu_utilization_percent", util, "0"),
            ("gpu", "gpu_memory_used_mb", min(gpu_mem, GPU_TOTAL_MB), "0"),
            ("gpu", "gpu_memory_total_mb", GPU_TOTAL_MB, "0"),
            ("gpu", "gpu_memory_pct", min(gpu_mem, GPU_TOTAL_MB) / GPU_TOTAL_MB * 100, "0"),
            ("gpu", "gpu_temperature_c", temp, "0"),
            ("gpu", "gpu_power_w", clamp(power, 60, 400), "0"),
        )
        for probe, metric, value, target in values:
            rows.append(_probe(ts, probe, metric, round(value, 3), target))
        if ts - last_health >= timedelta(seconds=30):
            last_health = ts
            down = incidents.get("backend_down")
            for backend in BACKENDS:
                up = not (down is not None and down.backend == backend)
                detail = "healthy" if up else "unhealthy: connection refused"
                rows.append(_probe(ts, "health", "backend_up", 1.0 if up else 0.0, backend, detail))
                latency = rng.lognormvariate(5.5, 0.3) if up else None
                rows.append(_probe(ts, "health", "health_latency_ms", latency, backend))
        if len(rows) >= batch:
            yield rows
            rows = []
        ts += step
    if rows:
        yield rows


def alert_rows(month: Month, rng: random.Random) -> tuple[list[Row], list[Row], list[Row]]:
    """Alert rows, alert events and webhook deliveries: one episode per incident (two for
    the backend outage), and short flaps of the latency rule spread over the month."""
    rules = {rule.name: rule for rule in default_rules()}
    episodes: list[tuple[AlertRule, dict[str, str], datetime, datetime | None, float]] = []
    for incident in month.incidents:
        end: datetime | None = incident.end if incident.end < month.end else None
        if incident.kind == "backend_down":
            episodes.append(
                (
                    rules["backend_unhealthy"],
                    {"backend": str(incident.backend)},
                    incident.start,
                    end,
                    0.0,
                )
            )
            episodes.append((rules["low_success_rate"], {}, incident.start, end, 0.61))
        elif incident.kind == "slow":
            episodes.append((rules["low_throughput"], {}, incident.start, end, 3.9))
            episodes.append((rules["high_response_time"], {}, incident.start, end, 14.2))
        elif incident.kind == "blocked_burst":
            episodes.append((rules["blocked_requests_spike"], {}, incident.start, end, 0.16))
        elif incident.kind == "gpu_hot":
            episodes.append(
                (rules["gpu_temperature_high"], {"gpu": "0"}, incident.start, end, 88.4)
            )
        elif incident.kind == "gpu_memory_high":
            episodes.append((rules["gpu_memory_high"], {"gpu": "0"}, incident.start, end, 96.8))
    for _ in range(max(2, month.minutes // 1440)):
        start = month.start + timedelta(minutes=rng.randrange(month.minutes - 30))
        length = timedelta(minutes=rng.randint(2, 12))
        episodes.append(
            (rules["high_response_time"], {}, start, start + length, 10 + 3 * rng.random())
        )
    alerts: list[Row] = []
    events: list[Row] = []
    deliveries: list[Row] = []
    for rule, labels, start, end, value in _apart(episodes):
        alert_rows, alert_events, alert_deliveries = _episode(rng, rule, labels, start, end, value)
        alerts.extend(alert_rows)
        events.extend(alert_events)
        deliveries.extend(alert_deliveries)
    return alerts, events, deliveries


def _apart(
    episodes: list[tuple[AlertRule, dict[str, str], datetime, datetime | None, float]],
) -> list[tuple[AlertRule, dict[str, str], datetime, datetime | None, float]]:
    """The episodes in time order, without one that starts before the previous episode of
    the same alert has resolved: one alert cannot be pending or firing twice at once (and its
    webhook deliveries' keys, fingerprint, kind and second, would collide)."""
    kept = []
    busy_until: dict[str, datetime | None] = {}
    for episode in sorted(episodes, key=lambda e: e[2]):
        rule, labels, start, end, _ = episode
        fp = fingerprint(rule.name, {**rule.labels, **labels})
        if fp in busy_until:
            until = busy_until[fp]
            if until is None or start <= until:
                continue
        kept.append(episode)
        busy_until[fp] = end + timedelta(seconds=60) if end is not None else None
    return kept


def _episode(
    rng: random.Random,
    rule: AlertRule,
    labels: dict[str, str],
    start: datetime,
    end: datetime | None,
    value: float,
) -> tuple[list[Row], list[Row], list[Row]]:
    fp = fingerprint(rule.name, {**rule.labels, **labels})
    fired = start + timedelta(seconds=float(rule.for_ or 60))
    resolved = end + timedelta(seconds=60) if end is not None else None
    acknowledged = None
    if rule.severity in ("critical", "high") or end is None:
        acknowledged = fired + timedelta(minutes=rng.randint(2, 9))
    by = "ops@example.com" if acknowledged is not None else None
    state = "resolved" if resolved is not None else "firing"
    now = resolved or fired
    alert = Alert(
        fp,
        rule,
        dict(labels),
        state,
        start,
        value=value,
        threshold=rule.threshold,
        fired_at=fired,
        resolved_at=resolved,
        acknowledged_at=acknowledged,
        acknowledged_by=by,
    )
    alert_row = {
        "fingerprint": fp,
        "rule": rule.name,
        "severity": rule.severity,
        "labels": dict(labels),
        "state": state,
        "value": value,
        "threshold": rule.threshold,
        "pending_since": start,
        "fired_at": fired,
        "resolved_at": resolved,
        "acknowledged_at": acknowledged,
        "acknowledged_by": by,
        "updated_at": now,
        "snapshot": alert.to_dict(),
    }
    events = [
        _event(fp, rule.name, "pending", start, value),
        _event(fp, rule.name, "firing", fired, value),
    ]
    if acknowledged is not None:
        events.append(_event(fp, rule.name, "acknowledged", acknowledged, None, by))
    if resolved is not None:
        events.append(_event(fp, rule.name, "resolved", resolved, value))
    deliveries = []
    for kind, at in (("firing", fired), ("resolved", resolved)):
        if at is None:
            continue
        for receiver, url in (
            ("ops-slack", "https://hooks.slack.com"),
            ("pager", "https://pager.example.com"),
        ):
            deliveries.append(_delivery(rng, fp, rule, kind, at, receiver, url, value))
    return [alert_row], events, deliveries


def _delivery(
    rng: random.Random,
    fp: str,
    rule: AlertRule,
    kind: str,
    at: datetime,
    receiver: str,
    url: str,
    value: float,
) -> Row:
    body = orjson.dumps(
        {
            "status": kind,
            "rule": rule.name,
            "severity": rule.severity,
            "fingerprint": fp,
            "value": value,
            "threshold": rule.threshold,
            "starts_at": at.isoformat(),
        }
    ).decode()
    failed = receiver == "pager" and rng.random() < 0.25
    attempts = rng.choice((1, 1, 1, 2, 3)) if not failed else rng.choice((1, 6))
    return {
        "key": f"{fp}:{kind}:{int(at.timestamp())}",
        "receiver": receiver,
        "fingerprint": fp,
        "rule": rule.name,
        "kind": kind,
        "url": url,
        "body": body,
        "headers": {"Content-Type": "application/json"},
        "status": "failed" if failed else "delivered",
        "attempts": attempts,
        "next_attempt_at": None,
        "last_status": (404 if attempts == 1 else 503) if failed else 200,
        "last_error": ("HTTP 404: permanent" if attempts == 1 else "HTTP 503 after 6 attempts")
        if failed
        else None,
        "created_at": at,
        "delivered_at": None if failed else at + timedelta(seconds=attempts * 2),
    }


def _probe(
    ts: datetime,
    probe: str,
    metric: str,
    value: float | None,
    target: str,
    detail: str | None = None,
) -> Row:
    return {
        "ts": ts,
        "probe": probe,
        "metric": metric,
        "target": target,
        "value": value,
        "detail": detail,
    }


def _event(
    fp: str, rule: str, kind: str, at: datetime, value: float | None, by: str | None = None
) -> Row:
    return {"fingerprint": fp, "rule": rule, "kind": kind, "at": at, "value": value, "by": by}
