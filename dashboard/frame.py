"""What every run needs before a page draws: the settings, the store, the signed-in check,
and the sidebar (window, live mode, model and backend filters) that makes the page's `View`.

Each page script calls `page(render)` first thing, so a page run alone (as `AppTest` runs one
after `switch_page`) is checked and framed just as one run through the entry script is.
The entry script's own arguments (`streamlit run app.py -- --config FILE --no-auth`, as
`gemma-monitor dashboard` passes them) are read only when Streamlit runs that script; elsewhere
(tests) the settings come from the environment alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from monitor.dashboard import auth, windows
from monitor.dashboard.ui import View, panel

from monitor.config import Settings, SettingsError
from monitor.store import rollups
from monitor.store.engine import make_engine
from monitor.store.views import STORE_ERRORS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

ENTRY = Path(__file__).resolve().parent / "app.py"
ALL = "All"


@dataclass(frozen=True, slots=True)
class Options:
    config: str | None = None
    no_auth: bool = False


def options(argv: list[str]) -> Options:
    """The entry script's arguments, when Streamlit runs it (`argv[0]` is the script)."""
    if not argv or Path(argv[0]).resolve() != ENTRY:
        return Options()
    parser = argparse.ArgumentParser(prog="dashboard", add_help=False)
    parser.add_argument("--config")
    parser.add_argument("--no-auth", action="store_true")
    known, _ = parser.parse_known_args(argv[1:])
    return Options(known.config, known.no_auth)


@st.cache_resource(show_spinner=False)
def engine_for(url: str) -> Engine:
    return make_engine(url)


@st.cache_resource(show_spinner=False)
def throttle() -> auth.LoginThrottle:
    return auth.LoginThrottle()


def settings_or_stop(opts: Options) -> Settings:
    try:
        return Settings.load(opts.config)
    except SettingsError as exc:
        st.error(f"**The settings cannot be loaded**: {exc}")
        st.stop()


def signed_in(settings: Settings) -> bool:
    """Whether this session holds a valid token (from a login, or the page's URL); keeps the
    token in the URL, so a reload or a page change stays signed in."""
    key = auth.signing_key(settings)
    if key is None:
        st.error(
            "**No dashboard password is configured.** Set MONITOR_DASHBOARD_PASSWORD (or "
            "MONITOR_DASHBOARD__PASSWORD_HASH), or start with `gemma-monitor dashboard --no-auth`, "
            "which listens on 127.0.0.1 only."
        )
        st.stop()
    token = st.session_state.get("auth_token") or st.query_params.get(auth.TOKEN_PARAM)
    if not auth.token_valid(key, token, time.time()):
        st.session_state.pop("auth_token", None)
        if auth.TOKEN_PARAM in st.query_params:
            del st.query_params[auth.TOKEN_PARAM]
        return False
    st.session_state["auth_token"] = token
    if st.query_params.get(auth.TOKEN_PARAM) != token:
        st.query_params[auth.TOKEN_PARAM] = token
    return True


def page(render: Callable[[View], None]) -> None:
    """Frame a page (check the login, draw the sidebar) and render its data in a panel."""
    opts = options(sys.argv)
    settings = settings_or_stop(opts)
    if not opts.no_auth and not signed_in(settings):
        st.stop()  # the entry script shows the login instead of this page
    panel(sidebar(settings, auth_on=not opts.no_auth), render)


def sidebar(settings: Settings, *, auth_on: bool) -> View:
    engine = engine_for(settings.database_url)
    now = datetime.now(UTC)
    bar = st.sidebar
    labels = [*windows.PRESETS, windows.CUSTOM]
    label = bar.selectbox("Window", labels, index=labels.index(windows.DEFAULT), key="window")
    custom_range: tuple[date, date] | None = None
    live = False
    if label == windows.CUSTOM:
        today = now.date()
        picked = bar.date_input(
            "Days (UTC)", value=(today - timedelta(days=1), today), max_value=today, key="days"
        )
        days = list(picked) if isinstance(picked, tuple | list) else [picked]
        start, end = (days + days)[0], (days + days)[1] if len(days) > 1 else days[0]
        custom_range = (start, end)
        window = windows.custom(start, end, now)
    else:
        window = windows.preset(label, now)
        live = bar.toggle(
            "Live", key="live", help=f"Refresh every {settings.dashboard.refresh_s:g} s"
        )
    model = backend = None
    try:
        found = rollups.dimensions(engine, window.since, window.until)
        if len(found.models) > 1:
            choice = bar.selectbox("Model", [ALL, *found.models], key="model")
            model = None if choice == ALL else choice
        if len(found.backends) > 1:
            choice = bar.selectbox("Backend", [ALL, *found.backends], key="backend")
            backend = None if choice == ALL else choice
    except STORE_ERRORS:
        pass  # the page's panel shows the banner
    bar.caption(window.describe())
    if auth_on and bar.button("Sign out", key="sign_out"):
        st.session_state.pop("auth_token", None)
        st.query_params.clear()
        st.rerun()
    return View(settings, engine, window, None if label == windows.CUSTOM else label,
                custom_range, model, backend, live, now)  # fmt: skip
