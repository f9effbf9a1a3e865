"""A served dashboard and a headless Chromium that drives it, for the browser tests.

Chromium and its driver are Debian's packages (`chromium`, `chromium-driver`, installed by
scripts/ensure_chromium.sh); selenium is pointed at both, so nothing is downloaded. The browser
runs with a fresh profile and without any of its background network traffic.

Streamlit draws a page in several round trips over its websocket: `wait_for_app` waits until
the app is connected and its script has finished running (the attributes Streamlit's own
browser tests wait on), and `exceptions` lists the exceptions a page shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, wait_until_ok

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)
APP_IDLE = (
    '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
    '[data-test-script-state="notRunning"]'
)
EXCEPTION = '[data-testid="stException"]'


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"{' and '.join(missing)} not found (scripts/ensure_chromium.sh installs them)"
    return None


@contextlib.contextmanager
def dashboard_server(
    database_url: str, workdir: Path, *, password: str | None, timeout: float = 60.0, **env: str
) -> Iterator[str]:
    """`gemma-monitor dashboard` as its own process on a free port; yields its URL. Its output
    goes to `workdir / "dashboard.log"`, shown when it fails to start."""
    port = free_port()
    variables = {
        **os.environ,
        "MONITOR_DATABASE_URL": database_url,
        "MONITOR_SPOOL_DIR": str(workdir / "spool"),
        **env,
    }
    variables.pop("MONITOR_DASHBOARD_PASSWORD", None)
    if password is not None:
        variables["MONITOR_DASHBOARD_PASSWORD"] = password
    command = [sys.executable, "-m", "monitor", "dashboard", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if password is None:
        command.append("--no-auth")
    log_path = workdir / "dashboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=variables, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ok(f"{url}/_stcore/health", process, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def chromium(downloads: Path | None = None) -> Iterator[Any]:
    """A headless Chromium under selenium's WebDriver, with a new empty profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_app(driver: Any, timeout: float = 60.0, settle: float = 0.5) -> None:
    """Wait until the app is connected and idle, and stays idle for `settle` seconds (a
    fragment or a rerun started by the page itself briefly runs the script again)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if driver.find_elements(By.CSS_SELECTOR, APP_IDLE):
            idle_since = idle_since or now
            if now - idle_since >= settle:
                return
        else:
            idle_since = None
        if now > deadline:
            state = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"]')
            attributes = (
                {
                    name: state[0].get_attribute(name)
                    for name in ("data-test-connection-state", "data-test-script-state")
                }
                if state
                else "no stApp element"
            )
            raise AssertionError(f"the app did not become idle within {timeout}s: {attributes}")
        time.sleep(0.1)


def wait_for(driver: Any, css: str, timeout: float = 30.0) -> list[Any]:
    """The elements matching `css`, once there is at least one."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return list(found)
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing matches {css!r} after {timeout}s")
        time.sleep(0.1)


def exceptions(driver: Any) -> list[str]:
    """The text of every exception the page shows."""
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, EXCEPTION)]


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, '[data-testid="stApp"]').text)


def save_screenshot(driver: Any, path: Path, width: int = 1440) -> Path:
    """A screenshot of the whole page (not only the window) as a PNG at `path`."""
    height = driver.execute_script(
        "const main = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(main.scrollHeight, document.body.scrollHeight);"
    )
    driver.set_window_size(width, max(900, min(int(height) + 120, 4000)))
    wait_for_app(driver)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
