"""deploy/prometheus and deploy/grafana against the code: every PromQL expression parses (with a
real PromQL parser), the alerting rules mirror the built-in alert rules one for one (figure's
window, threshold, comparison, `for`, severity), and the scrape config, the dashboard and its
provisioning files are what Prometheus and Grafana load. That every metric named exists on a
live /metrics is tests/integration/deploy."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import promql_parser
import pytest
import yaml

from monitor.alerts.rules import default_rules
from monitor.config_types import AlertRule
from tests.support.deploy_files import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS_RULES,
    alerting_rules,
    expressions,
    grafana,
    metric_names,
    recording_rules,
)


def test_every_expression_parses() -> None:
    found = expressions()
    assert len(found) >= 60
    for expression in found:
        try:
            promql_parser.parse(expression.promql)
        except Exception as exc:  # the parser's error names the position
            raise AssertionError(f"{expression.where}: {exc}") from exc


def test_a_broken_expression_does_not_parse() -> None:
    with pytest.raises(Exception, match=r"."):
        promql_parser.parse("sum by (job) (rate(gemma_monitor_requests_total[5m])")


def test_grafana_variables_become_valid_promql() -> None:
    expr = 'sum(rate(x_total{job=~"$job", instance=~"${instance}"}[$__rate_interval]))'
    assert grafana(expr) == 'sum(rate(x_total{job=~".*", instance=~".*"}[5m]))'
    assert metric_names(grafana(expr)) == {"x_total"}


def test_rule_names_are_unique_and_recording_names_follow_the_convention() -> None:
    records = recording_rules()
    alerts = [rule["alert"] for rule in alerting_rules()]
    assert len(alerts) == len(set(alerts))
    for name in records:  # level:metric:operations (Prometheus' naming practice)
        assert name.count(":") == 2, name


def expanded(expr: str) -> Any:
    """The expression with every recording rule it reads replaced by that rule's expression."""
    records = {name: promql_parser.parse(e) for name, e in recording_rules().items()}

    def inline(node: Any) -> Any:
        if isinstance(node, promql_parser.VectorSelector) and node.name in records:
            return promql_parser.transform(records[node.name], pre_visit=inline)
        return None

    return promql_parser.transform(promql_parser.parse(expr), pre_visit=inline)


def nodes(tree: Any) -> list[Any]:
    found: list[Any] = []
    promql_parser.walk(tree, lambda node: found.append(node) or None)
    return found


_COMPARISONS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}


def _mirrors() -> dict[str, dict[str, Any]]:
    return {
        rule["labels"]["gemma_monitor_rule"]: rule
        for rule in alerting_rules()
        if "gemma_monitor_rule" in rule.get("labels", {})
    }


def test_each_builtin_rule_has_one_prometheus_alert() -> None:
    mirrors = [r for r in alerting_rules() if "gemma_monitor_rule" in r.get("labels", {})]
    assert sorted(r["labels"]["gemma_monitor_rule"] for r in mirrors) == sorted(
        rule.name for rule in default_rules()
    )


@pytest.mark.parametrize("rule", default_rules(), ids=lambda r: r.name)
def test_the_prometheus_alert_mirrors_the_builtin_rule(rule: AlertRule) -> None:
    alert = _mirrors()[rule.name]
    assert alert["labels"]["severity"] == rule.severity
    for_ = promql_parser.parse_duration(alert["for"]) if "for" in alert else timedelta(0)
    assert for_ == timedelta(seconds=rule.for_)
    assert alert["annotations"]["summary"] == rule.description
    tree = nodes(expanded(alert["expr"]))
    ranges = {n.range for n in tree if isinstance(n, promql_parser.MatrixSelector)}
    assert timedelta(seconds=rule.window) in ranges, f"window {rule.window}s not in {ranges}"
    numbers = {n.val for n in tree if isinstance(n, promql_parser.NumberLiteral)}
    assert rule.threshold in numbers, f"threshold {rule.threshold} not in {numbers}"
    if rule.baseline_floor:
        assert rule.baseline_floor in numbers
    if rule.baseline is not None:  # the baseline window of summaries.BASELINE (24 h)
        assert timedelta(hours=24) in ranges
    operators = {str(n.op) for n in tree if isinstance(n, promql_parser.BinaryExpr)}
    assert any(_COMPARISONS[rule.comparison] in op.split() or op.endswith(rule.comparison)
               for op in operators), f"no {rule.comparison} in {operators}"  # fmt: skip


def test_a_changed_threshold_is_noticed() -> None:
    """The mirror check reads numbers from the parsed tree: a rule whose threshold moved fails."""
    rule = next(r for r in default_rules() if r.name == "low_success_rate")
    moved = rule.model_copy(update={"threshold": 0.9})
    with pytest.raises(AssertionError, match="threshold"):
        test_the_prometheus_alert_mirrors_the_builtin_rule(moved)


def test_the_scrape_config_loads_the_rules_and_scrapes_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    assert sorted(config["rule_files"]) == sorted(p.name for p in PROMETHEUS_RULES)
    jobs = config["scrape_configs"]
    assert len({job["job_name"] for job in jobs}) == len(jobs)
    for job in jobs:
        assert job["metrics_path"] == "/metrics"
        assert job["job_name"].startswith("gemma-monitor")  # GemmaMonitorDown's up{job=~...}
    (pods,) = [job for job in jobs if "kubernetes_sd_configs" in job]
    keep = next(r for r in pods["relabel_configs"] if r.get("action") == "keep")
    assert keep["regex"] == "monitor;http"  # the container and port names of deploy/kubernetes


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["uid"] == "gemma-monitor"
    assert dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("requests", "response time", "first token", "tokens/s", "outcomes",
                  "guard blocks by check", "queue", "spool", "gpu", "alerts"):  # fmt: skip
        assert topic in titles, topic
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_latency_panels_read_percentiles_from_the_histograms() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    for title in ("Response time (successful requests)", "Time to first token"):
        panel = next(p for p in dashboard["panels"] if p["title"] == title)
        exprs = [t["expr"] for t in panel["targets"]]
        assert all(e.startswith("histogram_quantile(") and "_bucket{" in e for e in exprs)


def test_the_provisioning_files_point_at_the_dashboard_and_prometheus() -> None:
    folder = DEPLOY / "grafana" / "provisioning"
    dashboards = yaml.safe_load((folder / "dashboards" / "gemma-monitor.yaml").read_text("utf-8"))
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((folder / "datasources" / "prometheus.yaml").read_text("utf-8"))
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
