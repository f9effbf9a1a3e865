"""docker-compose.yml stays valid YAML whose monitor settings load (no Docker engine needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from monitor.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _substitute(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_monitor_environment_in_compose_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert {"postgres", "redis", "monitor"} <= set(document["services"])
    environment = document["services"]["monitor"]["environment"]
    for name in list(os.environ):
        if name.upper().startswith("MONITOR_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, _substitute(str(value)))
    settings = Settings.load()
    assert settings.backend_protocol == "ollama"
    assert settings.webhook_receivers() == []  # unset in .env: no receiver
    assert settings.redis_url == "redis://redis:6379/0"


def test_a_keyless_monitor_is_published_on_loopback_only() -> None:
    """Without MONITOR_API_KEYS (the default) anyone reaching the port may generate: by
    default the port is published on 127.0.0.1, never on every interface."""
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    monitor = document["services"]["monitor"]
    keys = _substitute(str(monitor["environment"]["MONITOR_API_KEYS"]))
    assert keys == ""  # keyless by default: so the port must not be public
    for port in monitor["ports"]:
        published = _substitute(str(port))
        assert published.startswith("127.0.0.1:"), published
