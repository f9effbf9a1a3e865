"""Settings.load: explicit overrides, then MONITOR_* environment, then the YAML file, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.alerts.rules import effective_rules
from monitor.config import Settings, SettingsError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MONITOR_* variable from the outer environment, and no monitor.yaml in the cwd."""
    for name in list(os.environ):
        if name.upper().startswith("MONITOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(*args: object, **kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.load(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_defaults_without_file_or_environment() -> None:
    settings = Settings.load()
    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.backend_protocol == "openai"
    assert settings.backend_base == "http://127.0.0.1:8080"
    assert settings.content_storage == "none"


def test_values_from_yaml_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "custom.yaml",
        "port: 9000\n"
        "backend_url: http://gemma.internal:8081\n"
        "backend_protocol: ollama\n"
        "backend_name: gemma-a\n"
        "content_storage: full\n"
        "read_timeout_s: 30\n",
    )
    settings = Settings.load(config)
    assert settings.port == 9000
    assert settings.backend_base == "http://gemma.internal:8081"
    assert settings.backend_protocol == "ollama"
    assert settings.backend_label == "gemma-a"
    assert settings.content_storage == "full"
    assert settings.read_timeout_s == 30.0


def test_default_monitor_yaml_in_cwd_is_read(tmp_path: Path) -> None:
    write(tmp_path / "monitor.yaml", "port: 9001\n")
    assert Settings.load().port == 9001


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert Settings.load(write(tmp_path / "empty.yaml", "")).port == 8000


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "c.yaml", "port: 9000\nhost: 0.0.0.0\n")
    monkeypatch.setenv("MONITOR_PORT", "9100")
    settings = Settings.load(config)
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"  # not set in the environment: the file's value stays


def test_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_BACKEND_URL", "http://10.0.0.5:8000/v1")
    monkeypatch.setenv("MONITOR_AUTO_MIGRATE", "true")
    settings = Settings.load()
    assert settings.backend_base == "http://10.0.0.5:8000"
    assert settings.auto_migrate is True


def test_explicit_overrides_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.yaml", "port: 9000\nhost: 10.1.1.1\n")
    monkeypatch.setenv("MONITOR_PORT", "9100")
    monkeypatch.setenv("MONITOR_HOST", "10.2.2.2")
    settings = Settings.load(config, port=9200, host=None)
    assert settings.port == 9200
    assert settings.host == "10.2.2.2"  # a None override means "not given"


def test_override_without_file_or_environment() -> None:
    settings = Settings.load(database_url="sqlite:///x.db", auto_migrate=True)
    assert settings.database_url == "sqlite:///x.db"
    assert settings.auto_migrate is True


@pytest.mark.parametrize(
    "url",
    [
        "http://gemma:8080/v1",
        "http://gemma:8080/v1/",
        "http://gemma:8080/",
        "http://gemma:8080",
    ],
)
def test_trailing_v1_is_stripped_from_backend_url(tmp_path: Path, url: str) -> None:
    config = write(tmp_path / "c.yaml", f"backend_url: {url}\n")
    assert Settings.load(config).backend_base == "http://gemma:8080"
    assert Settings.load(backend_url=url).backend_base == "http://gemma:8080"


def test_v1_inside_the_path_is_kept() -> None:
    settings = Settings.load(backend_url="http://gemma:8080/v1/proxy")
    assert settings.backend_base == "http://gemma:8080/v1/proxy"


def test_backend_label_defaults_to_base_url() -> None:
    assert Settings.load().backend_label == "http://127.0.0.1:8080"


def test_invalid_port_in_file_names_field_env_var_and_file(tmp_path: Path) -> None:
    config = write(tmp_path / "bad.yaml", "port: 70000\n")
    message = error_of(config)
    assert "'port'" in message
    assert "MONITOR_PORT" in message
    assert "bad.yaml" in message


def test_invalid_protocol_names_field_and_env_var(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "bad.yaml", "backend_protocol: grpc\n"))
    assert "'backend_protocol'" in message
    assert "MONITOR_BACKEND_PROTOCOL" in message


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_PORT", "not-a-port")
    message = error_of()
    assert "'port'" in message
    assert "MONITOR_PORT" in message


def test_invalid_override_value() -> None:
    assert "'port'" in error_of(port=0)


def test_unknown_key_in_yaml_is_named(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "prot: 9000\n"))
    assert "'prot'" in message


def test_non_mapping_yaml_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "list.yaml", "- port\n- 9000\n"))
    assert "list.yaml" in message
    assert "mapping" in message


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "broken.yaml", "port: [9000\n"))
    assert "broken.yaml" in message
    assert "not valid YAML" in message


def test_missing_config_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in message
    assert "does not exist" in message


def test_settings_are_frozen() -> None:
    settings = Settings.load()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1


def test_direct_construction_keywords_win_over_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONITOR_PORT", "9100")
    monkeypatch.setenv("MONITOR_HOST", "10.2.2.2")
    settings = Settings(port=9300)
    assert settings.port == 9300
    assert settings.host == "10.2.2.2"


def test_override_and_file_errors_are_reported_together(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "backend_protocol: grpc\n"), port=0)
    assert "'port'" in message
    assert "'backend_protocol'" in message


def test_nested_sections_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "m.yaml",
        "health:\n  timeout_s: 5\n  interval_s: 3\nalerts:\n  interval_s: 30s\n",
    )
    monkeypatch.setenv("MONITOR_HEALTH__TIMEOUT_S", "9")
    monkeypatch.setenv("MONITOR_PROBES__ENABLED", "false")
    settings = Settings.load(config)
    assert settings.health.timeout_s == 9.0  # the environment wins over the file's section
    assert settings.health.interval_s == 3.0  # and the section's other keys are kept
    assert settings.probes.enabled is False
    assert settings.alerts.interval_s == 30.0  # durations accept "30s"


def test_webhook_variables_add_a_generic_signed_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_WEBHOOK_URL", "https://hooks.example.com/gemma")
    monkeypatch.setenv("MONITOR_WEBHOOK_SECRET", "s3cret")
    (receiver,) = Settings.load().webhook_receivers()
    assert (receiver.name, receiver.kind, receiver.url.get_secret_value()) == (
        "default",
        "generic",
        "https://hooks.example.com/gemma",
    )
    assert receiver.secret is not None and receiver.secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(Settings.load())


def test_a_bad_webhook_url_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_WEBHOOK_URL", "ftp://hooks.example.com")
    assert "http:// or https://" in error_of()


def test_rules_extend_and_replace_the_built_in_ones(tmp_path: Path) -> None:
    config = write(
        tmp_path / "m.yaml",
        """
alerts:
  rules:
    - {name: low_success_rate, metric: success_rate, comparison: "<", threshold: 0.99}
    - {name: slow_p95, metric: p95_response_time_s, comparison: ">", threshold: 4}
""",
    )
    alerts = Settings.load(config).alerts
    rules = {r.name: r for r in effective_rules(alerts.rules, with_defaults=alerts.default_rules)}
    assert rules["low_success_rate"].threshold == 0.99
    assert "slow_p95" in rules and "backend_unhealthy" in rules
    none = Settings.load(alerts={"default_rules": False}).alerts
    assert effective_rules(none.rules, with_defaults=none.default_rules) == []


def test_duplicate_alert_names_are_refused(tmp_path: Path) -> None:
    config = write(
        tmp_path / "m.yaml",
        """
alerts:
  rules:
    - {name: a, metric: success_rate, comparison: "<", threshold: 1}
    - {name: a, metric: success_rate, comparison: "<", threshold: 1}
  webhooks:
    - {name: x, url: "http://127.0.0.1:9/a"}
    - {name: x, url: "http://127.0.0.1:9/b"}
""",
    )
    message = error_of(config)
    assert "alerts.rules names must be unique: a" in message


def test_the_example_file_loads_and_shows_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "monitor.example.yaml"
    assert Settings.load(example) == Settings.load()


def test_precedence_of_all_four_sources_top_level_and_nested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "m.yaml",
        "port: 9000\nhost: 10.1.1.1\nbackend_name: from-file\n"
        "health:\n  timeout_s: 5\n  interval_s: 6\n  degraded_after_s: 7\n",
    )
    monkeypatch.setenv("MONITOR_PORT", "9100")
    monkeypatch.setenv("MONITOR_HOST", "10.2.2.2")
    monkeypatch.setenv("MONITOR_HEALTH__TIMEOUT_S", "50")
    monkeypatch.setenv("MONITOR_HEALTH__INTERVAL_S", "60")
    settings = Settings.load(config, port=9200, health={"timeout_s": 500})
    # top level: override > environment > file > default
    assert settings.port == 9200
    assert settings.host == "10.2.2.2"
    assert settings.backend_name == "from-file"
    assert settings.log_level == "info"
    # the same order inside a section, key by key
    assert settings.health.timeout_s == 500.0
    assert settings.health.interval_s == 60.0
    assert settings.health.degraded_after_s == 7.0
    assert settings.health.max_tokens == 4


def test_direct_construction_reads_no_file(tmp_path: Path) -> None:
    write(tmp_path / "monitor.yaml", "port: 9001\n")
    assert Settings().port == 8000
    assert Settings.load().port == 9001


def test_environment_error_names_the_real_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_HEALTH__TIMEOUT_S", "soon")
    message = error_of()
    assert "'health.timeout_s'" in message
    assert "MONITOR_HEALTH__TIMEOUT_S" in message
    assert "MONITOR_HEALTH.TIMEOUT_S" not in message


def test_environment_error_wins_over_the_file_it_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "m.yaml", "health:\n  timeout_s: 5\n")
    monkeypatch.setenv("MONITOR_HEALTH__TIMEOUT_S", "-1")
    message = error_of(config)
    assert "from MONITOR_HEALTH__TIMEOUT_S" in message
    assert "m.yaml" not in message  # the file's value is not the one that was refused


def test_file_error_names_the_file_and_the_field_path(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "nested.yaml", "health:\n  interval_s: 5 minutes\n"))
    assert "nested.yaml" in message
    assert "'health.interval_s'" in message
    assert "MONITOR_HEALTH__INTERVAL_S" in message


def test_unknown_nested_key_in_yaml_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "health:\n  timeot_s: 5\n"))
    assert "unknown setting 'health.timeot_s' in" in message
    assert "c.yaml" in message


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    assert "is not a file" in error_of(tmp_path / "conf.d")


def test_environment_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_RATE_LIMITS", "{not json")
    message = error_of()
    assert "rate_limits" in message


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ADMIN_TOKEN", "REDIS_URL", "USER_HEADER", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.setenv(f"MONITOR_{name}", " ")
    settings = Settings.load()
    assert (settings.admin_token, settings.redis_url, settings.user_header) == (None, None, None)
    assert (settings.webhook_url, settings.webhook_secret) == (None, None)
    assert settings.webhook_receivers() == []


PG = "postgresql+psycopg://monitor@db/monitor"


def test_one_worker_is_the_default_and_needs_nothing_shared() -> None:
    assert Settings.load(None).workers == 1


def test_several_workers_need_postgres() -> None:
    with pytest.raises(SettingsError, match="workers: 2 needs Postgres"):
        Settings.load(None, workers=2, rate_limit="off")


def test_several_workers_with_rate_limits_need_redis() -> None:
    with pytest.raises(SettingsError, match="needs redis_url"):
        Settings.load(None, workers=2, database_url=PG)
    shared = Settings.load(None, workers=2, database_url=PG, redis_url="redis://cache:6379/0")
    assert shared.workers == 2
    assert Settings.load(None, workers=4, database_url=PG, rate_limit="off").workers == 4


@pytest.mark.parametrize("count", [0, 65])
def test_worker_count_is_bounded(count: int) -> None:
    with pytest.raises(SettingsError, match="workers"):
        Settings.load(None, workers=count, database_url=PG, rate_limit="off")
