"""Requests: the window's records, searchable, filtered and paginated, and one record in full
with its verdicts and quality scores."""

from __future__ import annotations

import streamlit as st
from monitor.dashboard import figures, frame, ui

from monitor.store import views

OUTCOMES = ["any", "ok", "blocked_input", "blocked_output", "invalid", "rate_limited",
            "backend_error", "client_abort"]  # fmt: skip
PAGE_SIZE = 50


def render(v: ui.View) -> None:
    cols = st.columns([3, 2, 2, 1])
    text = cols[0].text_input("Search (id, route, model, principal, error code)", key="q")
    outcome = cols[1].selectbox("Outcome", OUTCOMES, key="outcome")
    principal = cols[2].text_input("Principal", key="principal")
    page_number = cols[3].number_input("Page", min_value=1, value=1, step=1, key="page")
    page = views.search_requests(
        v.engine, since=v.window.since, until=v.window.until,
        outcome=None if outcome == "any" else outcome, principal=principal.strip() or None,
        text=text.strip() or None, page=int(page_number) - 1, page_size=PAGE_SIZE, **v.filters,
    )  # fmt: skip
    sampled = (
        f" (standing for {page.represented:,} requests: sampling keeps one success in N)"
        if page.represented != page.total
        else ""
    )
    st.caption(f"{page.total:,} matching records{sampled} · page {page.page + 1} of {page.pages}")
    if not page.records:
        if page.total:
            ui.empty(f"Past the last page ({page.pages}).")
        else:
            ui.empty("No record matches in this window.", first_steps=not (text or principal))
        return
    st.dataframe(
        [{"time": r.ts, "id": r.id, "route": r.route, "model": r.model or "",
          "outcome": r.outcome, "principal": r.principal or "", "latency ms": r.latency_ms,
          "prompt tokens": r.prompt_tokens, "completion tokens": r.completion_tokens,
          "stream": r.stream} for r in page.records],
        hide_index=True,
    )  # fmt: skip

    st.subheader("Record")
    chosen = st.selectbox("Request id", [r.id for r in page.records], key="record")
    detail = views.request_detail(v.engine, chosen) if chosen else None
    if detail is None:
        ui.empty("That record is gone (pruned by retention).")
        return
    record, storage = detail.record, v.settings.content_storage
    st.json(
        {k: (str(val) if k == "ts" else val) for k, val in record.to_row().items()
         if k not in ("verdicts", "prompt_text", "response_text", "extra")},
        expanded=False,
    )  # fmt: skip
    st.markdown(f"**Prompt**: {figures.content(record.prompt_text, record.prompt_hash, storage)}")
    st.markdown(
        f"**Response**: {figures.content(record.response_text, record.response_hash, storage)}"
    )
    st.markdown("**Verdicts**")
    if record.verdicts:
        st.dataframe(
            [{"stage": d["stage"], "policy": d["policy"], "action": d["action"],
              "classifier": d["classifier"], "findings": len(d["findings"]),
              "checks": ", ".join(sorted({f.get("rule", "") for f in d["findings"]})),
              "µs": d["latency_us"]} for d in record.verdicts],
            hide_index=True,
        )  # fmt: skip
    else:
        st.caption("No guard verdict (the guard was off, or the request was refused first).")
    st.markdown("**Quality scores**")
    if detail.scores:
        st.dataframe([{"scorer": s.scorer, "metric": s.metric, "value": s.value, "at": s.ts}
                      for s in detail.scores], hide_index=True)  # fmt: skip
    else:
        st.caption("Not scored (the quality sample skipped it).")


st.title("Requests")
frame.page(render)
