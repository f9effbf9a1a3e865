"""Webhook receivers and payloads: golden JSON for each kind, headers, signing at send time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError

from monitor.alerts import webhooks
from monitor.alerts.rules import default_rules, evaluate
from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
from monitor.alerts.state import AlertTracker, Notification
from monitor.config_types import WebhookReceiver

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LINKS = {
    "dashboard": "https://monitor.example/dashboard",
    "alert": "https://monitor.example/admin/alerts/ea7fd8fd37b3f936",
}
FP = "ea7fd8fd37b3f936"


def notifications() -> tuple[Notification, Notification]:
    """high_response_time on backend "gemma": fires at 12:01, acknowledged, resolves at 12:10."""
    rule = default_rules()[0]  # > 10 s, for 1m, window 5m
    tracker = AlertTracker(resolve_after_s=0)

    def step(value: float, minute: int) -> list[Notification]:
        summary = {"mean_response_time_s": value}
        return tracker.step(
            [evaluate(rule, summary, {"backend": "gemma"})], T0 + timedelta(minutes=minute)
        )

    assert step(12.5, 0) == []
    (firing,) = step(12.5, 1)
    tracker.acknowledge(firing.alert.fingerprint, T0 + timedelta(minutes=2), by="ana")
    (resolved,) = step(4.25, 10)
    return firing, resolved


def test_generic_payload_golden() -> None:
    firing, resolved = notifications()
    assert webhooks.generic_payload(firing, LINKS) == {
        "version": "1",
        "id": f"{FP}-20250101T120100000000-firing",
        "source": "gemma-monitor",
        "alert": "high_response_time",
        "state": "firing",
        "severity": "medium",
        "description": "Mean response time above 10 s",
        "metric": "mean_response_time_s",
        "comparison": ">",
        "value": 12.5,
        "threshold": 10.0,
        "window_s": 300.0,
        "labels": {"backend": "gemma"},
        "fingerprint": FP,
        "starts_at": "2025-01-01T12:01:00Z",
        "ends_at": None,
        "acknowledged": False,
        "links": LINKS,
    }
    payload = webhooks.generic_payload(resolved)
    assert (payload["state"], payload["id"]) == ("resolved", f"{FP}-20250101T120100000000-resolved")
    assert (payload["value"], payload["ends_at"], payload["acknowledged"]) == (
        4.25,
        "2025-01-01T12:10:00Z",
        True,
    )
    assert payload["links"] == {}


def test_slack_payload_golden() -> None:
    firing, resolved = notifications()
    assert webhooks.slack_payload(firing, LINKS) == {
        "text": "[FIRING] high_response_time (medium): Mean response time above 10 s. "
        "Value 12.5, condition mean_response_time_s &gt; 10 over 5m.",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": ":rotating_light: FIRING: high_response_time",
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Mean response time above 10 s"},
                "fields": [
                    {"type": "mrkdwn", "text": "*Severity*\nmedium"},
                    {"type": "mrkdwn", "text": "*Value*\n12.5"},
                    {"type": "mrkdwn", "text": "*Condition*\nmean_response_time_s &gt; 10"},
                    {"type": "mrkdwn", "text": "*Window*\n5m"},
                    {"type": "mrkdwn", "text": "*backend*\ngemma"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"fingerprint `{FP}` · <{LINKS['dashboard']}|dashboard> · "
                        f"<{LINKS['alert']}|alert>",
                    }
                ],
            },
        ],
    }
    payload = webhooks.slack_payload(resolved)
    assert payload["text"].startswith("[RESOLVED] high_response_time (medium)")
    assert payload["blocks"][0]["text"]["text"] == ":white_check_mark: RESOLVED: high_response_time"
    assert (
        payload["blocks"][2]["elements"][0]["text"] == f"fingerprint `{FP}` · acknowledged by ana"
    )


def test_alertmanager_payload_golden() -> None:
    firing, resolved = notifications()
    labels = {"backend": "gemma", "alertname": "high_response_time", "severity": "medium"}
    annotations = {
        "summary": "Mean response time above 10 s",
        "description": "mean_response_time_s is 12.5 (threshold > 10 over 5m)",
        "value": "12.5",
        "threshold": "10",
    }
    assert webhooks.alertmanager_payload(firing, "ops", "https://monitor.example", LINKS) == {
        "version": "4",
        "groupKey": '{}:{alertname="high_response_time"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {"alertname": "high_response_time"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "https://monitor.example",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2025-01-01T12:01:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": LINKS["alert"],
                "fingerprint": FP,
            }
        ],
    }
    (alert,) = webhooks.alertmanager_payload(resolved)["alerts"]
    assert (alert["status"], alert["startsAt"], alert["endsAt"]) == (
        "resolved",
        "2025-01-01T12:01:00Z",
        "2025-01-01T12:10:00Z",
    )
    assert alert["generatorURL"] == ""


def test_slack_escapes_control_characters_in_text() -> None:
    firing, _ = notifications()
    rule = firing.alert.rule.model_copy(update={"description": "a <b> & c"})
    alert = firing.alert.copy()
    alert.rule = rule
    payload = webhooks.slack_payload(Notification("firing", alert, firing.at))
    assert payload["blocks"][1]["text"]["text"] == "a &lt;b&gt; &amp; c"


def test_build_payload_dispatches_on_kind() -> None:
    firing, _ = notifications()
    assert webhooks.build_payload("generic", firing)["version"] == "1"
    assert "blocks" in webhooks.build_payload("slack", firing)
    assert webhooks.build_payload("alertmanager", firing)["version"] == "4"


def test_prepare_builds_the_exact_body_and_headers_without_signing() -> None:
    firing, _ = notifications()
    receiver = WebhookReceiver(
        name="ops",
        url="https://hooks.example/alert",
        secret=SecretStr("s3cret"),
        headers={"X-Team": "ml"},
    )
    out = webhooks.prepare(receiver, firing, LINKS)
    assert (out.receiver, out.url, out.key) == ("ops", "https://hooks.example/alert", firing.key)
    assert json.loads(out.body) == webhooks.generic_payload(firing, LINKS)
    assert out.body == webhooks.encode(webhooks.generic_payload(firing, LINKS))
    assert out.headers == {
        "X-Team": "ml",
        "Content-Type": "application/json",
        "User-Agent": "gemma-monitor",
        "X-Gemma-Monitor-Event": "firing",
        "X-Gemma-Monitor-Delivery": firing.key,
    }


def test_signed_adds_a_verifiable_signature_for_the_attempts_time() -> None:
    firing, _ = notifications()
    receiver = WebhookReceiver(
        name="ops", url="http://127.0.0.1:9/hook", secret=SecretStr("s3cret")
    )
    out = webhooks.prepare(receiver, firing)
    first = webhooks.signed(out, "s3cret", now=1_700_000_000.7)
    assert first.headers[SIGNATURE_HEADER].startswith("t=1700000000,v1=")
    assert verify_signature(
        first.body, first.headers[SIGNATURE_HEADER], "s3cret", now=1_700_000_100
    )
    retry = webhooks.signed(out, "s3cret", now=1_700_003_600)
    assert retry.body == first.body
    assert retry.headers[SIGNATURE_HEADER] != first.headers[SIGNATURE_HEADER]
    assert webhooks.signed(out, None, now=0) is out
    assert SIGNATURE_HEADER not in out.headers


def test_encode_is_compact_utf8() -> None:
    assert webhooks.encode({"a": "°C", "b": [1, 2]}) == '{"a":"°C","b":[1,2]}'.encode()


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "hooks.example/x", "http://", "javascript:alert(1)"]
)
def test_receiver_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(ValidationError):
        WebhookReceiver(name="x", url=url)


def test_receiver_secret_is_not_shown_and_severity_filter() -> None:
    receiver = WebhookReceiver(
        name="x", url="http://h/", secret=SecretStr("s3cret"), min_severity="high"
    )
    assert "s3cret" not in repr(receiver)
    assert [receiver.accepts(s) for s in ("low", "medium", "high", "critical")] == [
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (45, "45s"), (86460, "1d1m"), (0.5, "0.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert webhooks.format_duration(seconds) == text


def test_rfc3339_is_utc_with_z() -> None:
    eastern = datetime(2025, 1, 1, 7, 0, tzinfo=UTC).astimezone()
    assert webhooks.rfc3339(eastern) == "2025-01-01T07:00:00Z"
    assert webhooks.rfc3339(datetime(2025, 1, 1, 7, 0)) == "2025-01-01T07:00:00Z"
