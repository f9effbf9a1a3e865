"""Alerts: firing, pending and resolved with their history; acknowledging from here (through
the store, recorded with who and when); the webhook deliveries and their failures."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st
from monitor.dashboard import figures, frame, ui

from monitor.store import views


def _alert_rows(alerts: list[views.AlertView], now: datetime) -> list[figures.Row]:
    return [
        {"rule": a.rule, "severity": a.severity, "state": a.state,
         "labels": ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
         "value": a.value, "threshold": a.threshold, "since": a.pending_since,
         "fired": a.fired_at, "resolved": a.resolved_at,
         "acknowledged": f"{a.acknowledged_by or '?'}, {figures.ago(a.acknowledged_at, now)}"
         if a.acknowledged_at else "", "fingerprint": a.fingerprint}
        for a in alerts
    ]  # fmt: skip


def render(v: ui.View) -> None:
    board = views.alert_board(v.engine)
    cols = st.columns(3)
    cols[0].metric("Firing", len(board.firing))
    cols[1].metric("Pending", len(board.pending))
    cols[2].metric("Resolved (recent)", len(board.resolved))
    for title, alerts, none in (
        ("Firing", board.firing, "No alert is firing."),
        ("Pending", board.pending, "No alert is pending."),
        ("Resolved", board.resolved, "No alert has resolved yet."),
    ):
        st.subheader(title)
        if alerts:
            st.dataframe(_alert_rows(alerts, v.now), hide_index=True)
        else:
            st.caption(none)

    open_alerts = [a for a in board.firing + board.pending if a.acknowledged_at is None]
    if open_alerts:
        with st.form("acknowledge"):
            st.markdown("**Acknowledge**")
            labels = {f"{a.rule} ({a.state}, {a.fingerprint})": a.fingerprint for a in open_alerts}
            chosen = st.selectbox("Alert", list(labels), key="ack_alert")
            by = st.text_input("Your name", key="ack_by")
            if st.form_submit_button("Acknowledge"):
                if not by.strip():
                    st.warning("Say who acknowledges it.")
                elif views.acknowledge_alert(v.engine, labels[chosen], by.strip(),
                                             datetime.now(UTC)):  # fmt: skip
                    st.success(f"Acknowledged {chosen} as {by.strip()}.")
                    st.rerun()
                else:
                    st.warning("That alert is no longer active, or is acknowledged already.")

    st.subheader("History")
    if board.events:
        st.dataframe(
            [{"at": e.at, "rule": e.rule, "event": e.kind, "value": e.value, "by": e.by or "",
              "fingerprint": e.fingerprint} for e in board.events],
            hide_index=True,
        )  # fmt: skip
    else:
        ui.empty("No alert has been raised yet. The proxy evaluates its alert rules every "
                 f"{v.settings.alerts.interval_s:g} s while it runs (`alerts:` settings).")  # fmt: skip

    st.subheader("Webhook deliveries")
    outbox = views.delivery_board(v.engine)
    cols = st.columns(3)
    for col, status in zip(cols, ("delivered", "pending", "failed"), strict=True):
        col.metric(status.capitalize(), outbox.counts.get(status, 0))
    if not outbox.recent:
        receivers = len(v.settings.webhook_receivers())
        ui.empty("No notification sent yet." + ("" if receivers else " No webhook receiver "
                 "is configured (MONITOR_WEBHOOK_URL, or `alerts.webhooks`)."))  # fmt: skip
        return
    if outbox.failures:
        st.markdown("**Failures**")
        st.dataframe(
            [{"created": d.created_at, "receiver": d.receiver, "rule": d.rule, "kind": d.kind,
              "status": d.status, "attempts": d.attempts, "HTTP": d.last_status,
              "error": d.last_error or "", "next attempt": d.next_attempt_at}
             for d in outbox.failures],
            hide_index=True,
        )  # fmt: skip
    st.markdown("**Recent**")
    st.dataframe(
        [{"created": d.created_at, "receiver": d.receiver, "url": d.url, "rule": d.rule,
          "kind": d.kind, "status": d.status, "attempts": d.attempts,
          "delivered": d.delivered_at} for d in outbox.recent],
        hide_index=True,
    )  # fmt: skip


st.title("Alerts")
frame.page(render)
