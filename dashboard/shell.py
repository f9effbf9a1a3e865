"""The entry script's body: the login when the session is not signed in, else the pages.

`main()` runs at every script run (each interaction, each reload); the page it runs frames
itself (`frame.page`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import streamlit as st
from monitor.dashboard import auth, frame

from monitor.config import Settings

HERE = Path(__file__).resolve().parent
ENTRY = frame.ENTRY
PAGES = [
    ("overview.py", "Overview", ":material/monitoring:"),
    ("safety.py", "Safety", ":material/shield:"),
    ("performance.py", "Performance & system", ":material/speed:"),
    ("quality.py", "Quality", ":material/grade:"),
    ("alerts.py", "Alerts", ":material/notifications:"),
    ("requests.py", "Requests", ":material/list:"),
]


def main() -> None:
    st.set_page_config(page_title="Gemma Monitor", page_icon=":material/monitoring:", layout="wide")
    opts = frame.options(sys.argv)
    settings = frame.settings_or_stop(opts)
    if not opts.no_auth and not frame.signed_in(settings):
        st.navigation([st.Page(lambda: _login(settings), title="Sign in", url_path="login")]).run()
        return
    st.navigation(
        [
            st.Page(str(HERE / "pages" / name), title=title, icon=icon, default=i == 0)
            for i, (name, title, icon) in enumerate(PAGES)
        ]
    ).run()


def _login(settings: Settings) -> None:
    st.title("Gemma Monitor")
    with st.form("login", clear_on_submit=True):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    if not frame.throttle().attempt(settings, password):
        st.error("Wrong password.")
        return
    key = auth.signing_key(settings)
    assert key is not None  # signed_in stopped the run otherwise
    token = auth.issue_token(key, time.time(), settings.dashboard.session_ttl_s)
    st.session_state["auth_token"] = token
    st.query_params[auth.TOKEN_PARAM] = token
    st.rerun()
