"""Webhook receivers and the payloads they get, one per notification.

A receiver (`config_types.WebhookReceiver`) is configured, never taken from request data, with
a `kind`:

- ``generic``: our own JSON, one object per notification (`generic_payload`);
- ``slack``: a Slack incoming-webhook message, ``text`` plus Block Kit ``blocks``;
- ``alertmanager``: the Prometheus Alertmanager webhook (version 4) JSON, so tools that take
  Alertmanager's notifications (PagerDuty or Opsgenie bridges, ntfy, custom relays) take ours.

`prepare` turns a notification into an `OutgoingWebhook`: the exact body bytes, and headers
with the event and an idempotency key (``X-Gemma-Monitor-Delivery``, the same for every retry
of one notification to one receiver). `signed` adds the signature, at each attempt, when the
receiver has a secret (see `alerts.signing`). Times are UTC, RFC 3339 with a ``Z``. Delivery
(attempts, retries, backoff) is `alerts.delivery`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.alerts.signing import SIGNATURE_HEADER, signature_header
from monitor.alerts.state import Notification
from monitor.config_types import WebhookKind, WebhookReceiver

PAYLOAD_VERSION = "1"
SOURCE = "gemma-monitor"
EVENT_HEADER = "X-Gemma-Monitor-Event"
DELIVERY_HEADER = "X-Gemma-Monitor-Delivery"
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for a firing alert


@dataclass(frozen=True, slots=True)
class OutgoingWebhook:
    """One request, ready to POST (and to store in the outbox as it is)."""

    receiver: str
    url: str
    body: bytes
    headers: dict[str, str]
    key: str  # the notification's idempotency key


def prepare(
    receiver: WebhookReceiver,
    notification: Notification,
    links: Mapping[str, str] | None = None,
    external_url: str = "",
) -> OutgoingWebhook:
    """The (unsigned) request for `receiver`: what the outbox stores. Secrets stay in the
    configuration; `signed` adds the signature at each attempt, with that attempt's time."""
    payload = build_payload(receiver.kind, notification, links, receiver.name, external_url)
    headers = {
        **receiver.headers,
        "Content-Type": "application/json",
        "User-Agent": SOURCE,
        EVENT_HEADER: notification.kind,
        DELIVERY_HEADER: notification.key,
    }
    url = receiver.url.get_secret_value()
    return OutgoingWebhook(receiver.name, url, encode(payload), headers, notification.key)


def signed(outgoing: OutgoingWebhook, secret: str | None, now: float) -> OutgoingWebhook:
    """The request with a signature for unix time `now`; unchanged when there is no secret."""
    if secret is None:
        return outgoing
    signature = signature_header(outgoing.body, secret, int(now))
    headers = {**outgoing.headers, SIGNATURE_HEADER: signature}
    return dataclasses.replace(outgoing, headers=headers)


def build_payload(
    kind: WebhookKind,
    notification: Notification,
    links: Mapping[str, str] | None = None,
    receiver: str = "",
    external_url: str = "",
) -> dict[str, Any]:
    if kind == "slack":
        return slack_payload(notification, links)
    if kind == "alertmanager":
        return alertmanager_payload(notification, receiver, external_url, links)
    return generic_payload(notification, links)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def generic_payload(n: Notification, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    alert, rule = n.alert, n.alert.rule
    return {
        "version": PAYLOAD_VERSION,
        "id": n.key,
        "source": SOURCE,
        "alert": rule.name,
        "state": n.kind,
        "severity": rule.severity,
        "description": rule.description,
        "metric": rule.metric,
        "comparison": rule.comparison,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_s": rule.window,
        "labels": dict(alert.labels),
        "fingerprint": alert.fingerprint,
        "starts_at": rfc3339(alert.fired_at or alert.pending_since),
        "ends_at": rfc3339(alert.resolved_at) if alert.resolved_at else None,
        "acknowledged": alert.acknowledged,
        "links": dict(links or {}),
    }


def slack_payload(n: Notification, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    alert, rule = n.alert, n.alert.rule
    state = n.kind.upper()
    icon = ":rotating_light:" if n.kind == "firing" else ":white_check_mark:"
    condition = f"{rule.metric} {rule.comparison} {format_number(alert.threshold)}"
    title = rule.description or rule.name
    text = (
        f"[{state}] {rule.name} ({rule.severity}): {title}. "
        f"Value {format_number(alert.value)}, condition {condition} over {format_duration(rule.window)}."
    )
    context = [f"fingerprint `{alert.fingerprint}`"]
    if alert.acknowledged:
        context.append(f"acknowledged by {_slack_escape(alert.acknowledged_by or 'an operator')}")
    context += [f"<{url}|{_slack_escape(name)}>" for name, url in (links or {}).items()]
    fields = {
        "Severity": rule.severity,
        "Value": format_number(alert.value),
        "Condition": condition,
        "Window": format_duration(rule.window),
    }
    fields.update(alert.labels)
    return {
        "text": _slack_escape(text),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": f"{icon} {state}: {rule.name}"[:150],
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(title)},
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"}
                    for k, v in list(fields.items())[:10]  # Slack's limit per section
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        ],
    }


def alertmanager_payload(
    n: Notification,
    receiver: str = "",
    external_url: str = "",
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    alert, rule = n.alert, n.alert.rule
    labels = {**alert.labels, "alertname": rule.name, "severity": rule.severity}
    annotations = {
        "summary": rule.description or rule.name,
        "description": (
            f"{rule.metric} is {format_number(alert.value)} "
            f"(threshold {rule.comparison} {format_number(alert.threshold)} "
            f"over {format_duration(rule.window)})"
        ),
        "value": format_number(alert.value),
        "threshold": format_number(alert.threshold),
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{rule.name}"}}',
        "truncatedAlerts": 0,
        "status": n.kind,
        "receiver": receiver,
        "groupLabels": {"alertname": rule.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": n.kind,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(alert.fired_at or alert.pending_since),
                "endsAt": rfc3339(alert.resolved_at)
                if alert.resolved_at
                else ALERTMANAGER_ZERO_TIME,
                "generatorURL": (links or {}).get("alert", external_url),
                "fingerprint": alert.fingerprint,
            }
        ],
    }


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds, with a Z (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def format_duration(seconds: float) -> str:
    """300 → ``5m``, 5400 → ``1h30m``, 45 → ``45s``, 0.5 → ``0.5s``."""
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
