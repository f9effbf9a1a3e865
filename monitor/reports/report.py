"""Health reports: one window of the store as JSON, Markdown or HTML (`gemma-monitor report`,
`GET /admin/report`, and the scheduled reports of `monitor.workers.reports`).

    report = build_report(engine, since, until)          # the model (build.py, model.py)
    write_report(report, "json", out, engine)            # the export, lists streamed (export.py)
    text = render(report, "md")                          # Markdown (markdown.py)
    page = render(report, "html")                        # one page, inline SVG charts (html.py)

A report reads only the database, so it runs anywhere the database is reachable, beside or
instead of the proxy.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import IO, TYPE_CHECKING, Literal

from monitor.reports.build import build_report
from monitor.reports.export import iter_json
from monitor.reports.html import render_html
from monitor.reports.markdown import render_markdown
from monitor.reports.model import HealthReport

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["FORMATS", "HealthReport", "build_report", "iter_report", "render", "write_report"]

Format = Literal["json", "md", "html"]
FORMATS: tuple[Format, ...] = ("json", "md", "html")
MEDIA_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def render(report: HealthReport, fmt: str) -> str:
    """`report` as `fmt`, whole: "md", "html", or "json" without the per-request lists."""
    return "".join(iter_report(report, fmt))


def iter_report(
    report: HealthReport, fmt: str, engine: Engine | None = None
) -> Generator[str, None, None]:
    """`report` as `fmt`, in pieces; for "json" with `engine`, the per-request lists are read
    and written a page at a time."""
    if fmt == "json":
        yield from iter_json(report, engine)
    elif fmt == "md":
        yield render_markdown(report)
    elif fmt == "html":
        yield render_html(report)
    else:
        raise ValueError(f"unknown report format {fmt!r}: json, md or html")


def write_report(
    report: HealthReport, fmt: str, out: IO[str], engine: Engine | None = None
) -> None:
    """Write `report` as `fmt` to `out` as it is produced."""
    for piece in iter_report(report, fmt, engine):
        out.write(piece)
