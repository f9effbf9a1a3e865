"""Quality: the seed's four scores, embedding relevance, judge scores and user feedback over
time, and the lowest-scoring recent answers."""

from __future__ import annotations

import streamlit as st
from monitor.dashboard import charts, figures, frame, ui

from monitor.store import rollups, views


def render(v: ui.View) -> None:
    series = rollups.quality_series(v.engine, v.window.since, v.window.until, v.window.step)
    means = figures.quality_means(series)
    if not means:
        ui.empty(f"No answer was scored in this window. The proxy scores "
                 f"{v.settings.quality.sample_rate:.0%} of successful requests with "
                 f"{', '.join(v.settings.quality.scorers)} (`quality:` settings); users rate "
                 "answers through POST /v1/feedback.")  # fmt: skip
        return
    columns = st.columns(min(len(means), 6))
    for i, (name, mean) in enumerate(means.items()):
        columns[i % len(columns)].metric(name, f"{mean:.3f}")
    rows = figures.quality_rows(series)
    groups = [
        ("heuristic", "The seed's scores (heuristic)"),
        ("embedding", "Embedding relevance"),
        ("judge", "Judge (the backend Gemma rates answers)"),
        ("user", "User feedback"),
        ("guard", "Safety from the guard"),
    ]
    left, right = st.columns(2)
    shown = 0
    for scorer, title in groups:
        selected = [r for r in rows if r["score"].startswith(f"{scorer}.")]
        if selected:
            (left if shown % 2 == 0 else right).altair_chart(
                charts.series_chart(selected, value="mean", series="score", title=title,
                                    y_title="score (0-1)"),
                width="stretch",
            )  # fmt: skip
            shown += 1

    st.subheader("Lowest-scoring answers")
    lowest = views.lowest_scores(v.engine, v.window.since, v.window.until, **v.filters)
    if not lowest:
        ui.empty("No `overall` score in this window.")
        return
    storage = v.settings.content_storage
    st.dataframe(
        [{"score": a.value, "scorer": a.scorer, "time": a.ts, "request": a.request_id,
          "model": a.model or "", "prompt": figures.content(a.prompt_text, a.prompt_hash, storage),
          "response": figures.content(a.response_text, a.response_hash, storage)}
         for a in lowest],
        hide_index=True,
    )  # fmt: skip


st.title("Quality")
frame.page(render)
