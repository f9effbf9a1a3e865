"""What every page shares: the current view (settings, store, window, filters), the panel that
renders a page's data (live or not) and turns a store failure into a banner, empty states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import streamlit as st
from monitor.dashboard import windows

from monitor.store.engine import redact_url
from monitor.store.views import STORE_ERRORS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config import Settings

FIRST_STEPS = (
    "Start the proxy (`gemma-monitor serve`, or `docker compose up`) and point an OpenAI or "
    "Ollama client at it: each request becomes a record here within a second. "
    "`gemma-monitor demo` runs a local Gemma with the proxy, to try it out."
)


@dataclass(frozen=True, slots=True)
class View:
    """What a page renders: the same for every page of one run, set by the shell."""

    settings: Settings
    engine: Engine
    window: windows.Window
    preset: str | None  # None for a custom range
    custom_range: tuple[date, date] | None
    model: str | None
    backend: str | None
    live: bool
    now: datetime

    def refreshed(self) -> View:
        """The same view at the current time (a preset window moves with it)."""
        now = datetime.now(UTC)
        if self.preset is not None:
            return replace(self, now=now, window=windows.preset(self.preset, now))
        return replace(self, now=now)

    @property
    def filters(self) -> dict[str, str | None]:
        return {"model": self.model, "backend": self.backend}


def panel(current: View, render: Callable[[View], None]) -> None:
    """Render a page's data; in live mode as a fragment re-run every `refresh_s` seconds (the
    page is not reloaded). A store failure shows a banner in its place; the page stays."""

    def body() -> None:
        fresh = current.refreshed() if current.live else current
        try:
            render(fresh)
        except STORE_ERRORS as exc:
            database_banner(fresh, exc)

    if current.live:
        st.fragment(run_every=current.settings.dashboard.refresh_s)(body)()
    else:
        body()


def database_banner(current: View, exc: BaseException) -> None:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    retry = (
        f"Live mode retries every {current.settings.dashboard.refresh_s:g} s."
        if current.live
        else "Reload the page, or turn on live mode, to retry."
    )
    st.error(
        f"**The database is unreachable** ({redact_url(current.engine.url)}): {reason[:300]}. "
        f"{retry}",
        icon=":material/database_off:",
    )


def empty(message: str, *, first_steps: bool = False) -> None:
    st.info(message + ("\n\n" + FIRST_STEPS if first_steps else ""), icon=":material/info:")
