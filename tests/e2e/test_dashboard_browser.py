"""The dashboard served by `gemma-monitor dashboard` and used in a real headless Chromium.

One walk through it, as an operator would: a wrong password is refused, the right one lets them
in, every page of the navigation opens without an exception, a reload keeps them signed in, and
a screenshot of the overview is saved. A second one turns on live mode, writes records
and sees them counted without a page reload, then signs out. The store is a small SQLite file filled by
`bench/fill_store.py` (two days of traffic, probes, verdicts, scores and alerts, with rollups).

Skipped only where Debian's `chromium` and `chromium-driver` are not installed
(scripts/ensure_chromium.sh installs them).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    chromium,
    chromium_missing,
    dashboard_server,
    exceptions,
    page_text,
    save_screenshot,
    wait_for,
    wait_for_app,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
PAGES = ("Overview", "Safety", "Performance & system", "Quality", "Alerts", "Requests")
PASSWORD_INPUT = 'input[type="password"]'
NAV_LINK = '[data-testid="stSidebarNavLink"]'


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite store with two days of synthetic traffic and its rollups."""
    path = tmp_path_factory.mktemp("dashboard-store") / "monitor.db"
    url = f"sqlite:///{path}"
    command = [sys.executable, str(ROOT / "bench" / "fill_store.py"), "--database-url", url]
    command += ["--records", "3000", "--days", "2", "--probe-interval", "60", "--seed", "3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return url


@pytest.fixture
def browser() -> Iterator[Any]:
    reason = chromium_missing()
    if reason is not None:
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def sign_in(driver: Any, password: str) -> None:
    from selenium.webdriver.common.by import By

    field = wait_for(driver, PASSWORD_INPUT)[0]
    field.clear()
    field.send_keys(password)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button').click()
    wait_for_app(driver, settle=1.0)


def open_page(driver: Any, title: str) -> None:
    from selenium.webdriver.common.by import By

    # A link's text is its icon's name (a ligature of the icon font), then its title.
    links = {
        link.text.strip().splitlines()[-1]: link
        for link in driver.find_elements(By.CSS_SELECTOR, NAV_LINK)
    }
    assert title in links, f"no link to {title!r} in the navigation: {sorted(links)}"
    links[title].click()
    wait_for_app(driver, settle=1.0)


def test_sign_in_visit_every_page_and_reload(store_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with dashboard_server(store_url, tmp_path, password=PASSWORD) as url:
        driver.get(url)
        wait_for_app(driver)
        assert driver.find_elements(By.CSS_SELECTOR, PASSWORD_INPUT), page_text(driver)
        assert not driver.find_elements(By.CSS_SELECTOR, NAV_LINK)

        sign_in(driver, "not the password")
        assert "Wrong password" in page_text(driver)
        assert driver.find_elements(By.CSS_SELECTOR, PASSWORD_INPUT)
        assert not driver.find_elements(By.CSS_SELECTOR, NAV_LINK)
        assert "auth=" not in driver.current_url

        sign_in(driver, PASSWORD)
        wait_for(driver, NAV_LINK)
        assert not driver.find_elements(By.CSS_SELECTOR, PASSWORD_INPUT)
        assert exceptions(driver) == []

        shown: dict[str, str] = {}
        for title in PAGES:
            open_page(driver, title)
            assert exceptions(driver) == [], f"{title}: {exceptions(driver)}"
            assert "auth=" in driver.current_url, f"{title}: the login token left the URL"
            shown[title] = page_text(driver)
        # Each page drew something of its own, not the same frame six times.
        assert len({text for text in shown.values()}) == len(PAGES)

        driver.refresh()
        wait_for_app(driver, settle=1.0)
        assert not driver.find_elements(By.CSS_SELECTOR, PASSWORD_INPUT), "a reload signed out"
        wait_for(driver, NAV_LINK)
        assert exceptions(driver) == []

        open_page(driver, "Overview")
        screenshot = save_screenshot(driver, tmp_path / "dashboard.png")
        assert screenshot.stat().st_size > 10_000
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def requests_shown(driver: Any) -> int | None:
    """The Overview's "Requests" figure, or None while it is not drawn."""
    from selenium.webdriver.common.by import By

    for metric in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        label, _, value = metric.text.strip().partition("\n")
        if label.strip() == "Requests" and value.strip().replace(",", "").isdigit():
            return int(value.strip().replace(",", ""))
    return None


def stored_in_window(store_url: str) -> tuple[int, int]:
    """The store's records in the Overview's default window at this moment: (filled, live).

    The window ends at the current minute and starts an hour before, so it drops a filled
    record now and then while the test runs."""
    from monitor.dashboard import windows
    from sqlalchemy import func, select

    from monitor.store.engine import make_engine
    from monitor.store.models import RequestRow

    window = windows.preset(windows.DEFAULT, datetime.now(UTC))
    in_window = (RequestRow.ts >= window.since) & (RequestRow.ts < window.until)
    live = RequestRow.id.startswith("live-")
    engine = make_engine(store_url)
    try:
        with engine.connect() as connection:
            filled = connection.scalar(select(func.count()).where(in_window & ~live))
            fresh = connection.scalar(select(func.count()).where(in_window & live))
    finally:
        engine.dispose()
    return int(filled or 0), int(fresh or 0)


def shown_as_stored(driver: Any, store_url: str, timeout: float = 30.0) -> tuple[int, int]:
    """Wait until the Overview's "Requests" equals the store's count for the window, read at
    the same moment (page and store may straddle a minute; the page catches up within its
    one-second refresh); returns that count split as `stored_in_window` does."""
    deadline = time.monotonic() + timeout
    while True:
        shown = requests_shown(driver)
        filled, fresh = stored_in_window(store_url)
        if shown == filled + fresh:
            return filled, fresh
        assert time.monotonic() < deadline, (shown, filled, fresh)
        time.sleep(0.2)


def test_live_mode_shows_new_records_without_a_reload_and_sign_out_ends_the_session(
    store_url: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from monitor.store.engine import make_engine
    from monitor.store.inserts import insert_rows
    from tests.support.databases import make_records

    driver = browser
    with dashboard_server(
        store_url, tmp_path, password=PASSWORD, MONITOR_DASHBOARD__REFRESH_S="1"
    ) as url:
        driver.get(url)
        wait_for_app(driver)
        sign_in(driver, PASSWORD)
        wait_for(driver, NAV_LINK)
        assert requests_shown(driver) is not None, page_text(driver)

        live = driver.find_element(By.XPATH, "//label[.//p[normalize-space()='Live']]")
        live.click()
        time.sleep(2)  # never idle for long now: the fragment re-runs every second
        # A page reload would drop this; a fragment's refresh keeps it.
        driver.execute_script("window.__notReloaded = true;")
        filled, fresh = shown_as_stored(driver, store_url)
        assert filled > 0 and fresh == 0

        engine = make_engine(store_url)
        try:
            records = make_records(
                7, prefix="live-", start=datetime.now(UTC) - timedelta(seconds=5)
            )
            insert_rows(engine, [r.to_row() for r in records])
        finally:
            engine.dispose()
        # The count the page shows now holds the seven new records (and whatever filled ones
        # are still in the moving window): counted by a refresh, not by a reload.
        assert shown_as_stored(driver, store_url)[1] == 7
        assert driver.execute_script("return window.__notReloaded === true;")
        assert exceptions(driver) == []

        live.click()  # off again: the sign-out below is not raced by a refresh
        wait_for_app(driver, settle=1.0)
        driver.find_element(By.XPATH, "//button[.//p[normalize-space()='Sign out']]").click()
        wait_for(driver, PASSWORD_INPUT)
        assert "auth=" not in driver.current_url
        assert not driver.find_elements(By.CSS_SELECTOR, NAV_LINK)
        driver.refresh()
        wait_for_app(driver)
        assert driver.find_elements(By.CSS_SELECTOR, PASSWORD_INPUT), "signed in after sign-out"
