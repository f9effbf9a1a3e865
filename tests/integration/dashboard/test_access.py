"""The login, the session it gives, and a database that is down."""

from __future__ import annotations

import pytest
from monitor.dashboard import auth
from monitor.dashboard.shell import ENTRY
from streamlit.testing.v1 import AppTest

from tests.integration.dashboard.conftest import PASSWORD, Store, app_for

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"


def _titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(empty_store.url, monkeypatch, signed_in=False).run()
    assert _titles(at) == ["Gemma Monitor"]
    at.text_input[0].input("wrong password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert _titles(at) == ["Gemma Monitor"]
    assert "auth_token" not in at.session_state

    at.text_input[0].input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert _titles(at) == ["Overview"]
    token = at.query_params[auth.TOKEN_PARAM]
    assert PASSWORD not in str(at.session_state.to_dict())

    # moving between pages keeps the session
    at.switch_page("pages/alerts.py").run()
    assert _titles(at) == ["Alerts"]
    # a reload (a new session with the same URL) is still signed in
    reloaded = AppTest.from_file(ENTRY, default_timeout=60)
    reloaded.query_params[auth.TOKEN_PARAM] = token
    assert _titles(reloaded.run()) == ["Overview"]


def test_a_forged_or_expired_token_shows_the_login(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(empty_store.url, monkeypatch, signed_in=False)
    expired = auth.issue_token(b"k" * 32, 0, 10)
    at.query_params[auth.TOKEN_PARAM] = expired
    assert _titles(at.run()) == ["Gemma Monitor"]
    assert auth.TOKEN_PARAM not in at.query_params


def test_without_a_password_the_app_says_how_to_set_one(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONITOR_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.setenv("MONITOR_DATABASE_URL", empty_store.url)
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    assert "MONITOR_DASHBOARD_PASSWORD" in at.error[0].value
    assert not at.title


@pytest.mark.parametrize("page", ["overview", "safety", "alerts", "requests"])
def test_a_dead_database_shows_a_banner_and_keeps_the_page(
    monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    at = app_for(DEAD_DATABASE, monkeypatch).run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception
    assert _titles(at) == [page.capitalize()]
    (banner,) = at.error
    assert "The database is unreachable" in banner.value
    assert "127.0.0.1:1" in banner.value
    assert at.sidebar.selectbox(key="window").value == "Last hour"
