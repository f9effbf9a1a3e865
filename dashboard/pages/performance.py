"""Performance & system: the latency histogram, TTFT and inter-token latency, tokens/s, host and
process memory and CPU, and per GPU utilisation, memory, temperature, power and energy."""

from __future__ import annotations

import streamlit as st
from monitor.dashboard import charts, figures, frame, ui
from monitor.dashboard.figures import fmt

from monitor.store import rollups

SYSTEM = ("host_cpu_percent", "host_memory_used_mb", "host_memory_percent", "proxy_rss_mb",
          "proxy_cpu_percent", "backend_rss_mb", "backend_cpu_percent")  # fmt: skip
GPU = ("gpu_utilization_percent", "gpu_memory_used_mb", "gpu_memory_pct", "gpu_temperature_c",
       "gpu_power_w", "energy_j", "energy_tokens")  # fmt: skip


def render(v: ui.View) -> None:
    since, until, step = v.window.since, v.window.until, v.window.step
    total = rollups.request_totals(v.engine, since, until, **v.filters)
    numbers = figures.headline(total)
    cols = st.columns(4)
    cols[0].metric("p50 latency", figures.duration(numbers["latency_p50"]))
    cols[1].metric("p95 latency", figures.duration(numbers["latency_p95"]))
    cols[2].metric("p99 latency", figures.duration(numbers["latency_p99"]))
    cols[3].metric("Tokens/s (mean)", fmt(numbers["tokens_per_s"]))
    seed = figures.seed_thresholds()
    if total.requests == 0:
        ui.empty("No request in this window.", first_steps=True)
    else:
        st.altair_chart(
            charts.bar_chart(
                [{"latency": f"{r['from ms']:,.0f}-{r['to ms']:,.0f} ms", "requests": r["requests"]}
                 for r in figures.histogram_rows(total.latency_ms)],
                x="latency", y="requests", title="Latency distribution",
            ),
            width="stretch",
        )  # fmt: skip
        rows = figures.request_rows(
            rollups.request_series(v.engine, since, until, step, **v.filters), step
        )
        left, right = st.columns(2)
        left.altair_chart(charts.time_chart(rows, ["TTFT p50 ms", "TTFT p95 ms"],
                                            title="Time to first token", y_title="ms"),
                          width="stretch")  # fmt: skip
        right.altair_chart(charts.time_chart(rows, ["ITL p50 ms", "ITL p95 ms"],
                                             title="Inter-token latency", y_title="ms"),
                           width="stretch")  # fmt: skip
        st.altair_chart(charts.time_chart(rows, ["tokens/s"], title="Generation speed",
                                          y_title="tokens/s",
                                          threshold=seed.get("mean_tokens_per_s")),
                        width="stretch")  # fmt: skip

    st.subheader("Host and processes")
    system = rollups.probe_series(v.engine, since, until, step, metrics=SYSTEM)
    if not system:
        ui.empty("No host sample in this window: the proxy samples the host every "
                 f"{v.settings.probes.interval_s:g} s while it runs (`probes:` settings).")  # fmt: skip
    else:
        rows = figures.probe_rows(system)
        memory = [r for r in rows if r["metric"].endswith("_mb")]
        cpu = [r for r in rows if r["metric"].endswith("cpu_percent")]
        left, right = st.columns(2)
        left.altair_chart(charts.series_chart(memory, value="mean", series="series",
                                              title="Memory", y_title="MB",
                                              threshold=seed.get("process_memory_mb")),
                          width="stretch")  # fmt: skip
        right.altair_chart(charts.series_chart(cpu, value="mean", series="series",
                                               title="CPU", y_title="%"), width="stretch")  # fmt: skip

    st.subheader("GPUs")
    gpu = rollups.probe_series(v.engine, since, until, step, metrics=GPU)
    if not any(metric.startswith("gpu_") for metric, _ in gpu):
        ui.empty("No GPU sample in this window. The GPU probe reads NVIDIA GPUs through NVML: "
                 "on a CPU-only host (or without the NVIDIA driver) there is nothing to show, and "
                 "energy per token is not measured.")  # fmt: skip
        return
    rows = figures.probe_rows(gpu)
    st.metric("Energy per 1k tokens", fmt(figures.energy_per_1k_tokens(gpu), " J"))
    charts_by_metric = [
        ("gpu_utilization_percent", "Utilisation", "%"),
        ("gpu_memory_used_mb", "Memory", "MB"),
        ("gpu_temperature_c", "Temperature", "°C"),
        ("gpu_power_w", "Power", "W"),
    ]
    columns = st.columns(2)
    for i, (metric, title, unit) in enumerate(charts_by_metric):
        selected = [r for r in rows if r["metric"] == metric]
        if selected:
            columns[i % 2].altair_chart(
                charts.series_chart(selected, value="mean", series="target",
                                    title=f"{title} by GPU", y_title=unit),
                width="stretch",
            )  # fmt: skip


st.title("Performance & system")
frame.page(render)
