"""deploy/kubernetes as Kubernetes sees it: every manifest parses and (offline) matches the
Kubernetes schemas, the rendering agrees with `kubectl kustomize`, and probes, ports, the
Service, resources and the PodDisruptionBudget hang together. The settings side (variables,
commands, grace period) is test_kubernetes_settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy_files import (
    KUBERNETES,
    LAYOUTS,
    Object,
    by_kind,
    containers,
    monitor_containers,
    pod_specs,
    read_yaml_documents,
    render,
)

KUBERNETES_VERSION = "1.30.0"  # the oldest minor the manifests promise to run on
SECRETS_EXAMPLE = KUBERNETES / "base" / "secrets.env.example"


def test_every_manifest_file_parses() -> None:
    files = sorted(KUBERNETES.rglob("*.yaml"))
    assert len(files) >= 10
    resources = 0
    for path in files:
        for document in read_yaml_documents(path):
            assert isinstance(document, dict), path
            if "kind" in document:  # not the settings or the policy the ConfigMap carries
                assert document["apiVersion"], path
                assert document.get("metadata", {}).get("name") or path.name.startswith(
                    "kustomization"
                ), path
                resources += 1
    assert resources >= 10


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_matches_the_kubernetes_schemas(layout: str) -> None:
    objects = render(layout)
    kinds = {obj["kind"] for obj in objects}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job",
            "PodDisruptionBudget"} <= kinds  # fmt: skip
    for obj in objects:
        # strict: a misspelt or misplaced field is an error, not ignored
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_misplaced_field_fails_the_schema_check() -> None:
    """The validator is not a rubber stamp: the check above can fail."""
    deployment = by_kind(render("replicas"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["path"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_renderer_agrees_with_kubectl_kustomize(layout: str, tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    shutil.copy(SECRETS_EXAMPLE, tree / "base" / "secrets.env")  # the operator's file
    built = subprocess.run(
        ["kubectl", "kustomize", str(tree / layout)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    real = [doc for doc in yaml.safe_load_all(built) if doc]

    def key(obj: Object, hashed: bool = False) -> tuple[str, str, str]:
        name = obj["metadata"]["name"]
        if hashed and obj["kind"] in ("ConfigMap", "Secret"):
            name = name.rsplit("-", 1)[0]  # kustomize's content hash
        return obj["kind"], name, obj["metadata"].get("namespace", "")

    assert sorted(key(o, hashed=True) for o in real) == sorted(map(key, render(layout)))
    ours = {key(o): o for o in render(layout)}
    for obj in real:  # the workloads are the files, with the generated names filled in
        if obj["kind"] in ("Deployment", "Job"):
            assert _without_generated_names(obj)["spec"] == ours[key(obj)]["spec"]


def _without_generated_names(obj: Object) -> Any:
    text = yaml.safe_dump(obj)
    for generated in ("gemma-monitor-config", "gemma-monitor-secrets"):
        text = _strip_suffix(text, generated)
    return yaml.safe_load(text)


def _strip_suffix(text: str, name: str) -> str:
    return re.sub(rf"{name}-[a-z0-9]{{10}}\b", name, text)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_probes_point_at_the_apps_health_routes(layout: str) -> None:
    for _, container in monitor_containers(render(layout)):
        if container["name"] != "monitor":
            continue
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = {kind: container[kind]["httpGet"] for kind in
                  ("livenessProbe", "readinessProbe", "startupProbe")}  # fmt: skip
        assert probes["livenessProbe"]["path"] == "/health"
        assert probes["readinessProbe"]["path"] == "/ready"
        assert probes["startupProbe"]["path"] == "/health"
        for probe in probes.values():
            assert probe["port"] in ports or probe["port"] in ports.values()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_service_exposes_the_monitor_only(layout: str) -> None:
    objects = render(layout)
    (deployment,) = by_kind(objects, "Deployment")
    (service,) = by_kind(objects, "Service")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    monitor = next(c for c in pod["spec"]["containers"] if c["name"] == "monitor")
    monitor_ports = {p["name"] for p in monitor["ports"]} | {
        p["containerPort"] for p in monitor["ports"]
    }
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in monitor_ports
    others = [c for c in pod["spec"]["containers"] if c["name"] != "monitor"]
    for container in others:  # vLLM: loopback only, no port the Service could name
        assert "ports" not in container
        assert "--host=127.0.0.1" in container["args"]
        backend = next(v["value"] for v in monitor["env"] if v["name"] == "MONITOR_BACKEND_URL")
        port = next(a.split("=")[1] for a in container["args"] if a.startswith("--port="))
        assert backend == f"http://127.0.0.1:{port}"
    assert (layout == "sidecar") == bool(others)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_container_has_resources(layout: str) -> None:
    for _, pod in pod_specs(render(layout)):
        for container in containers(pod):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_disruption_budget_covers_the_pods(layout: str) -> None:
    objects = render(layout)
    (deployment,) = by_kind(objects, "Deployment")
    (budget,) = by_kind(objects, "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    if layout == "replicas":
        assert deployment["spec"]["replicas"] >= 2
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
