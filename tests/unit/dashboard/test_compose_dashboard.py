"""The compose file's dashboard service: its settings load, and it is published on loopback
unless told otherwise."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from monitor.config import Settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"


def _substitute(value: str) -> str:
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_dashboard_service_runs_the_dashboard_command_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["dashboard"]
    assert service["command"][:2] == ["gemma-monitor", "dashboard"]
    assert "dashboard" in service["build"]["args"]["EXTRAS"].split(",")
    assert all(_substitute(str(p)).startswith("127.0.0.1:") for p in service["ports"])
    for name in list(os.environ):
        if name.upper().startswith("MONITOR_"):
            monkeypatch.delenv(name)
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, _substitute(str(value)))
    settings = Settings.load()
    assert settings.dashboard_password is None  # unset: the dashboard refuses to start
    assert settings.database_url.startswith("postgresql+psycopg://")
