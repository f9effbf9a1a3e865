"""deploy/kubernetes cannot drift from the code: every MONITOR_* variable a manifest sets is a
setting; the settings each monitor container ends up with (its --config file from the ConfigMap,
its variables, the Secret's example values) load, listen on the port the pod declares and drain
within the pod's grace period; every command parses with the real CLI; one Job migrates."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from pydantic import BaseModel

from monitor.cli import build_parser
from monitor.config import Settings
from monitor.guard.loader import load_policies
from tests.support.deploy_files import (
    KUBERNETES,
    LAYOUTS,
    Object,
    by_kind,
    containers,
    monitor_containers,
    pod_specs,
    read_env_file,
    render,
)

SECRETS_EXAMPLE = KUBERNETES / "base" / "secrets.env.example"


def setting_path(variable: str) -> list[str]:
    """MONITOR_HEALTH__TIMEOUT_S → ['health', 'timeout_s'], each part a field of `Settings` or
    of the section before it; AssertionError naming the variable otherwise."""
    assert variable.startswith("MONITOR_"), variable
    parts = variable.removeprefix("MONITOR_").lower().split("__")
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        assert field is not None, f"{variable}: {part!r} is not a setting of {model.__name__}"
        if index < len(parts) - 1:
            section = field.annotation
            assert isinstance(section, type) and issubclass(section, BaseModel), (
                f"{variable}: {part!r} is not a section"
            )
            model = section
    return parts


def test_setting_path_refuses_what_the_code_does_not_read() -> None:
    assert setting_path("MONITOR_BACKEND_METRICS__ENABLED") == ["backend_metrics", "enabled"]
    for wrong in ("MONITOR_BACKEND", "MONITOR_HEALTH__TIMEOUT", "MONITOR_PORT__X"):
        with pytest.raises(AssertionError):
            setting_path(wrong)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_monitor_variable_is_a_setting(layout: str) -> None:
    seen = 0
    for _, container in monitor_containers(render(layout)):
        for variable in container.get("env", []):
            if variable["name"].startswith("MONITOR_"):
                setting_path(variable["name"])
                seen += 1
    assert seen >= 8


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_secret_key_read_is_in_the_example_and_used(layout: str) -> None:
    example = set(read_env_file(SECRETS_EXAMPLE))
    read = set()
    for _, pod in pod_specs(render(layout)):
        for container in containers(pod):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == "gemma-monitor-secrets"
                    read.add(ref["key"])
    assert read <= example
    if layout == "sidecar":  # the sidecar reads every key (hf-token for vLLM)
        assert read == example


def resolve_mounted(pod: Object, container: Object, objects: list[Object], path: str) -> str:
    """The content of the file at `path` in `container`: a key of a mounted ConfigMap."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            config_map = volumes[mount["name"]]["configMap"]["name"]
            found = [
                o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == config_map
            ]
            assert found, f"no ConfigMap {config_map}"
            data: str = found[0]["data"][path.removeprefix(prefix)]
            return data
    raise AssertionError(f"{path} is not in a mounted ConfigMap of {container['name']}")


def container_settings(
    pod: Object,
    container: Object,
    objects: list[Object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """The settings `container` starts with: its --config file, its variables, the Secret's
    values from the example."""
    secrets = read_env_file(SECRETS_EXAMPLE)
    for name in list(os.environ):
        if name.upper().startswith("MONITOR_"):
            monkeypatch.delenv(name)
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        monkeypatch.setenv(variable["name"], secrets[ref["key"]] if ref else variable["value"])
    config = _config_option(cli_words(container))
    file = tmp_path / f"{container['name']}.yaml"
    file.write_text(resolve_mounted(pod, container, objects, config), encoding="utf-8")
    return Settings.load(file)


def cli_words(container: Object) -> list[str]:
    """The words after `gemma-monitor` in a container's command (also inside `sh -c`)."""
    command = [*container.get("command", []), *container.get("args", [])]
    if command[:2] == ["sh", "-c"]:
        words = shlex.split(command[2])
        command = []
        for word in words[words.index("gemma-monitor") :]:  # up to the end of that command
            command.append(word.rstrip(";"))
            if word.endswith(";"):
                break
    assert command[0] == "gemma-monitor", command
    return command[1:]


def _config_option(words: list[str]) -> str:
    return words[words.index("--config") + 1]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_command_parses_with_the_cli(layout: str) -> None:
    commands = []
    for _, container in monitor_containers(render(layout)):
        args = build_parser().parse_args(cli_words(container))
        commands.append((args.command, getattr(args, "db_command", None)))
        if args.command == "serve":
            assert not args.migrate  # the Job migrates, once
    assert commands.count(("db", "upgrade")) == 1  # the migrate Job, nothing else
    assert ("db", "current") in commands  # the init container waiting for it
    assert ("serve", None) in commands


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_monitor_container_loads_its_settings(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(layout)
    for pod, container in monitor_containers(objects):
        settings = container_settings(pod, container, objects, tmp_path, monkeypatch)
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert not settings.auto_migrate
        if container["name"] != "monitor":
            continue
        # the policy file it names is mounted and is a valid policy
        policy = tmp_path / "policy.yaml"
        policy.write_text(resolve_mounted(pod, container, objects, settings.policies), "utf-8")
        assert load_policies(policy)
        assert str(settings.spool_dir).startswith(
            tuple(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "spool")
        )
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": settings.port}
        assert settings.host == "0.0.0.0"


def _pre_stop_sleep(container: Object) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_grace_period_covers_the_drain(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes kills the pod terminationGracePeriodSeconds after the preStop hook starts:
    it must leave room for the preStop sleep, drain_timeout_s and the recorder's last flush,
    and not be so long that a stuck pod holds a rollout for minutes."""
    objects = render(layout)
    for pod, container in monitor_containers(objects):
        if container["name"] != "monitor":
            continue
        drain = container_settings(pod, container, objects, tmp_path, monkeypatch).drain_timeout_s
        grace = pod["terminationGracePeriodSeconds"]
        pre_stop = _pre_stop_sleep(container)
        assert pre_stop + drain + 5 <= grace <= pre_stop + drain + 30
        for other in pod["containers"]:
            if other is not container:  # the backend outlives the monitor's drain
                assert _pre_stop_sleep(other) >= pre_stop + drain
                assert _pre_stop_sleep(other) < grace
