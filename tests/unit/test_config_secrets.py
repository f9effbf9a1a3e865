"""Secrets in the settings are `SecretStr`: never in a repr, a log line or an error message."""

from __future__ import annotations

import logging

import pytest

from monitor.config import Settings
from monitor.upstream.backend import backend_authorization


def _settings() -> Settings:
    return Settings(
        backend_api_key="sk-backend-0123456789",  # type: ignore[arg-type]
        webhook_url="https://hooks.example.com/services/T0KEN-IN-URL",  # type: ignore[arg-type]
        alerts={"webhooks": [{"name": "slack", "url": "https://hooks.slack.example/SECRET-PATH"}]},  # type: ignore[arg-type]
        hash_key="h" * 32,  # type: ignore[arg-type]
    )


def test_secrets_do_not_show_in_the_settings_repr_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text, repr(settings.webhook_receivers())):
        for secret in ("sk-backend-0123456789", "T0KEN-IN-URL", "SECRET-PATH", "h" * 32):
            assert secret not in text


def test_every_use_still_gets_the_value() -> None:
    settings = _settings()
    assert backend_authorization(settings) == ("authorization", "Bearer sk-backend-0123456789")
    urls = {r.name: r.url.get_secret_value() for r in settings.webhook_receivers()}
    assert urls == {
        "slack": "https://hooks.slack.example/SECRET-PATH",
        "default": "https://hooks.example.com/services/T0KEN-IN-URL",
    }


def test_a_bad_webhook_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="http:// or https://") as caught:
        Settings(webhook_url="ftp://files.example/T0KEN")  # type: ignore[arg-type]
    assert "T0KEN" not in str(caught.value)
