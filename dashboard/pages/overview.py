"""Overview: firing alerts, the request figures over time against the seed's thresholds, and
the backends' health now."""

from __future__ import annotations

import streamlit as st
from monitor.dashboard import charts, figures, frame, ui
from monitor.dashboard.figures import fmt

from monitor.store import rollups, views


def render(v: ui.View) -> None:
    board = views.alert_board(v.engine, resolved_limit=0, event_limit=0)
    if board.firing:
        for alert in board.firing:
            ack = f" · acknowledged by {alert.acknowledged_by}" if alert.acknowledged_at else ""
            st.error(
                f"**{alert.rule}** ({alert.severity}) firing {figures.ago(alert.fired_at, v.now)}: "
                f"{alert.description} — value {fmt(alert.value, digits=2)}{ack}",
                icon=":material/notifications_active:",
            )
    else:
        st.success("No alert is firing.", icon=":material/check_circle:")

    total = rollups.request_totals(v.engine, v.window.since, v.window.until, **v.filters)
    numbers = figures.headline(total)
    cols = st.columns(6)
    cols[0].metric("Requests", fmt(numbers["requests"], digits=0))
    cols[1].metric("Success rate", fmt(numbers["success_rate"], " %", 2))
    cols[2].metric("Error rate", fmt(numbers["error_rate"], " %", 2))
    cols[3].metric("p95 latency", figures.duration(numbers["latency_p95"]))
    cols[4].metric("TTFT p95", figures.duration(numbers["ttft_p95"]))
    cols[5].metric("Tokens/s (mean)", fmt(numbers["tokens_per_s"], digits=1))

    if total.requests == 0:
        ui.empty("No request in this window.", first_steps=True)
    else:
        slices = rollups.request_series(
            v.engine, v.window.since, v.window.until, v.window.step, **v.filters
        )
        rows = figures.request_rows(slices, v.window.step)
        seed = figures.seed_thresholds()
        left, right = st.columns(2)
        left.altair_chart(charts.time_chart(rows, ["requests/min"], title="Request rate",
                                            y_title="requests/min"), width="stretch")  # fmt: skip
        right.altair_chart(
            charts.time_chart(rows, ["success rate %"], title="Success rate", y_title="%",
                              threshold=seed.get("success_rate")),
            width="stretch",
        )  # fmt: skip
        left.altair_chart(
            charts.time_chart(rows, ["p50 ms", "p95 ms", "p99 ms", "mean ms"], title="Latency",
                              y_title="ms", threshold=seed.get("mean_response_time_s")),
            width="stretch",
        )  # fmt: skip
        right.altair_chart(
            charts.time_chart(rows, ["TTFT p50 ms", "TTFT p95 ms"], title="Time to first token",
                              y_title="ms"),
            width="stretch",
        )  # fmt: skip
        left.altair_chart(
            charts.time_chart(rows, ["tokens/s"], title="Generation speed", y_title="tokens/s",
                              threshold=seed.get("mean_tokens_per_s")),
            width="stretch",
        )  # fmt: skip
        right.altair_chart(
            charts.time_chart(rows, ["error rate %"], title="Error rate", y_title="%"),
            width="stretch",
        )

    st.subheader("Backend health now")
    health = views.backend_health(v.engine)
    if not health:
        ui.empty("No health check recorded yet: the proxy checks its backend every "
                 f"{v.settings.health.interval_s:g} s while it runs (`health:` settings).")  # fmt: skip
    else:
        st.dataframe(
            [{"backend": h.target, "status": "up" if h.value else "down",
              "detail": h.detail or "", "checked": figures.ago(h.ts, v.now)} for h in health],
            hide_index=True,
        )  # fmt: skip


st.title("Overview")
frame.page(render)
