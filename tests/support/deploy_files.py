"""The files under deploy/ as the tests read them: Kubernetes objects, PromQL expressions.

`render(layout)` builds a kustomize layout (`sidecar`, `replicas`) into its objects the way
`kubectl kustomize` does for the features these files use (resources, namespace, ConfigMap and
Secret generators; the Secret from `secrets.env.example`, as the operator's `secrets.env` is
never in the repository), without the hash suffixes. A test compares it with the real
`kubectl kustomize` where that is installed.

`expressions()` lists every PromQL expression of the Prometheus rules and the Grafana
dashboard, Grafana's variables replaced the way Grafana would before sending a query;
`metric_names(expr)` reads the metric names out of one with a real PromQL parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
LAYOUTS = ("sidecar", "replicas")
PROMETHEUS_RULES = (
    DEPLOY / "prometheus" / "recording-rules.yml",
    DEPLOY / "prometheus" / "alerting-rules.yml",
)
DASHBOARD = DEPLOY / "grafana" / "gemma-monitor.json"

Object = dict[str, Any]


def read_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def render(layout: str) -> list[Object]:
    """The objects of a layout folder (or of any kustomization folder)."""
    return _build(KUBERNETES / layout)


def _build(folder: Path) -> list[Object]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    objects: list[Object] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        objects.extend(_build(path) if path.is_dir() else read_yaml_documents(path))
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(name).name: (folder / name).read_text(encoding="utf-8")
                for name in generator.get("files", [])}  # fmt: skip
        objects.append(_object("ConfigMap", generator["name"], data=data))
    for generator in kustomization.get("secretGenerator", []):
        data = {}
        for name in generator.get("envs", []):
            data.update(read_env_file(_existing(folder / name)))
        objects.append(_object("Secret", generator["name"], type="Opaque", stringData=data))
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] != "Namespace":
                obj.setdefault("metadata", {})["namespace"] = namespace
    return objects


def _existing(path: Path) -> Path:
    """`secrets.env` is the operator's; the repository ships `secrets.env.example`."""
    example = path.with_name(path.name + ".example")
    return path if path.exists() else example


def _object(kind: str, name: str, **fields: Any) -> Object:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **fields}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize reads a generator's `envs` file."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def by_kind(objects: list[Object], kind: str) -> list[Object]:
    return [obj for obj in objects if obj["kind"] == kind]


def pod_specs(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    """(workload, pod spec) for every Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def containers(pod: Object) -> list[Object]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def monitor_containers(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    """(pod spec, container) for every container running the monitor's image."""
    for _, pod in pod_specs(objects):
        for container in containers(pod):
            if container["image"].startswith("gemma-monitor:"):
                yield pod, container


@dataclass(frozen=True)
class Expression:
    where: str  # file and rule or panel, for messages
    promql: str


def recording_rules() -> dict[str, str]:
    """Recording rule name → its expression."""
    return {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}


def alerting_rules() -> list[Object]:
    return [rule for rule in _rules() if "alert" in rule]


def _rules() -> Iterator[Object]:
    for path in PROMETHEUS_RULES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            yield from group["rules"]


def expressions() -> list[Expression]:
    found = []
    for path in PROMETHEUS_RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                found.append(Expression(f"{path.name}: {name}", rule["expr"]))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append(Expression(f"{DASHBOARD.name}: {panel['title']}", grafana(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(Expression(f"{DASHBOARD.name}: ${variable['name']}",
                                    grafana(label_values_selector(query["query"]))))  # fmt: skip
    return found


_RANGE_VARIABLES = re.compile(
    r"\$(?:__rate_interval|__interval|__range)\b|\$\{__(?:rate_interval|interval|range)\}"
)
_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def grafana(expr: str) -> str:
    """An expression as Grafana sends it: its range variables a duration, other variables (all
    used in regex matchers here) the match-anything `.*`."""
    return _VARIABLE.sub(".*", _RANGE_VARIABLES.sub("5m", expr))


def label_values_selector(query: str) -> str:
    """`label_values(metric{...}, label)` (a Grafana variable query) → `metric{...}`."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query, re.S)
    if match is None:
        raise ValueError(f"not a label_values query: {query}")
    return match.group(1)


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects, by name or by a `__name__="..."` matcher."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names
