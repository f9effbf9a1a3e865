"""Safety: blocked, redacted and flagged requests over time by stage, check and policy; the
classifier's score distribution; recent verdicts, content shown only as content storage allows."""

from __future__ import annotations

import streamlit as st
from monitor.dashboard import charts, figures, frame, ui

from monitor.store import rollups, views


def render(v: ui.View) -> None:
    slices = rollups.verdict_series(
        v.engine, v.window.since, v.window.until, v.window.step, **v.filters
    )
    rows = figures.verdict_rows(slices)
    counts = figures.action_counts(rows)
    cols = st.columns(4)
    for col, (label, value) in zip(cols, counts.items(), strict=False):
        col.metric(label.capitalize(), f"{value:,}")
    if not rows:
        ui.empty("No request was blocked, redacted or flagged in this window. The guard "
                 f"policy in use is `{v.settings.policies}` (`gemma-monitor policy check` "
                 "describes it).")  # fmt: skip
    else:
        over_time = [
            {"time": r["time"], "series": f"{r['stage']} {r['action']}", "verdicts": r["verdicts"]}
            for r in rows
        ]
        st.altair_chart(
            charts.bar_chart(over_time, x="time", y="verdicts", color="series",
                             title="Verdicts over time, by stage and action"),
            width="stretch",
        )  # fmt: skip
        left, right = st.columns(2)
        left.markdown("**By check**")
        left.dataframe(figures.verdict_totals(rows, ["stage", "action", "category", "rule"]),
                       hide_index=True)  # fmt: skip
        right.markdown("**By policy**")
        right.dataframe(figures.verdict_totals(rows, ["policy", "stage", "action"]),
                        hide_index=True)  # fmt: skip

    st.subheader("Classifier scores")
    bins = rollups.score_distribution(v.engine, v.window.since, v.window.until, **v.filters)
    if not any(count for _, _, count in bins):
        ui.empty("No classifier score in this window: ShieldGemma runs only with a policy "
                 "that names it (`policies: shieldgemma`, the `shieldgemma` extra).")  # fmt: skip
    else:
        st.altair_chart(
            charts.bar_chart(
                [{"score": f"{low:.2f}-{high:.2f}", "verdicts": n} for low, high, n in bins],
                x="score", y="verdicts", title="P(violation), all checks",
            ),
            width="stretch",
        )  # fmt: skip

    st.subheader("Recent verdicts")
    recent = views.recent_verdicts(v.engine, v.window.since, v.window.until, **v.filters)
    if not recent:
        ui.empty("No block, redaction or flag in this window.")
        return
    storage = v.settings.content_storage
    st.dataframe(
        [{"time": r.ts, "request": r.request_id, "stage": r.stage, "action": r.action,
          "category": r.category or "", "rule": r.rule or "", "policy": r.policy,
          "score": r.score, "prompt": figures.content(r.prompt_text, r.prompt_hash, storage),
          "response": figures.content(r.response_text, r.response_hash, storage)}
         for r in recent],
        hide_index=True,
    )  # fmt: skip
    if storage != "full":
        st.caption("Content is not stored (`content_storage: none`): hashes only.")


st.title("Safety")
frame.page(render)
