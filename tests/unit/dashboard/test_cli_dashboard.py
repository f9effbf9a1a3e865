"""`gemma-monitor dashboard`: refuses to start without a password unless --no-auth, and then
binds only 127.0.0.1; otherwise hands the process to `streamlit run` on the installed script."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor import cli
from monitor.passwords import verify_password


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr("os.execve", lambda path, args, env: calls.append(list(args)))
    monkeypatch.delenv("MONITOR_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("MONITOR_DASHBOARD__PASSWORD_HASH", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no monitor.yaml here
    return calls


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_without_a_password_it_refuses_to_start(
    execs: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dashboard", "--host", "0.0.0.0"]) == cli.EXIT_USAGE
    assert execs == []
    assert "MONITOR_DASHBOARD_PASSWORD" in capsys.readouterr().err


def test_no_auth_binds_only_the_loopback_address(execs: list[list[str]]) -> None:
    cli.main(["dashboard", "--no-auth", "--host", "0.0.0.0", "--port", "8600"])
    (command,) = execs
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]).name == "app.py" and Path(command[4]).is_file()
    assert _option(command, "--server.address") == "127.0.0.1"
    assert _option(command, "--server.port") == "8600"
    assert _option(command, "--browser.gatherUsageStats") == "false"
    assert command[command.index("--") + 1 :] == ["--no-auth"]


def test_with_a_password_it_serves_where_it_is_told(
    execs: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", "a-long-password")
    cli.main(["dashboard", "--host", "0.0.0.0"])
    (command,) = execs
    assert _option(command, "--server.address") == "0.0.0.0"
    assert _option(command, "--server.headless") == "true"
    assert "--no-auth" not in command


def test_hash_password_prints_a_hash_of_the_password_read(
    execs: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.sys, "stdin", _Stdin("open sesame\n"))
    assert cli.main(["dashboard", "--hash-password"]) == 0
    assert verify_password("open sesame", capsys.readouterr().out.strip())


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self.text
