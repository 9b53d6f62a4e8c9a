"""The chart's alerts, dashboard and policy-report audit job, rendered by a real Helm.

Every PromQL expression is parsed (promql-parser, the Rust parser Prometheus-compatible
databases use); tests/integration/test_monitoring_e2e.py checks their metric names
against what a running ``trustgate serve`` exports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import promql_parser
import pytest

from tests.chart.test_chart import NAMESPACE, RELEASE, one, render
from webhook.cli.main import build_parser

MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Security"}},
    }
}
#: What each alert is for (the issue's list), by alert name.
ALERTS = {
    "TrustgateDenialRateSpike": "a denial rate spike",
    "TrustgatePolicyReloadFailing": "policy reload failures",
    "TrustgatePolicySetRefused": "a policy set refused for its signature or version",
    "TrustgateRegistryErrors": "registry errors",
    "TrustgateRegistryDeadlines": "registry errors",
    "TrustgateRegistryAuthFailures": "registry logins that fail, by credential source",
    "TrustgateHostLimitRejections": "registry errors",
    "TrustgateByteBudgetExceeded": "registry errors",
    "TrustgateLogLinesDropped": "a log sink that falls behind (decision-log lines lost)",
    "TrustgateCircuitBreakerOpen": "open circuit breakers",
    "TrustgateReviewsNearTimeout": "p99 latency near the webhook timeout",
    "TrustgateCertificateExpiresSoon": "certificates near expiry",
    "TrustgateExceptionsInUse": "exceptions in use",
    "TrustgateBreakGlassUsed": "break-glass in use",
}
#: Grafana's variables, as Grafana substitutes them before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__range": "6h"}


def walk(node: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from walk(node.lhs)
        yield from walk(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from walk(arg)
    elif isinstance(
        node,
        promql_parser.AggregateExpr
        | promql_parser.ParenExpr
        | promql_parser.UnaryExpr
        | promql_parser.SubqueryExpr,
    ):
        yield from walk(node.expr)


def rules(objects: list[dict]) -> list[dict]:
    rule = one(objects, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard(objects: list[dict]) -> dict:
    config_map = one(objects, "ConfigMap", f"{RELEASE}-dashboard")
    return json.loads(config_map["data"]["trustgate.json"])


def dashboard_queries(board: dict) -> Iterator[str]:
    for panel in board["panels"]:
        for target in panel["targets"]:
            query = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                query = query.replace(variable, value)
            yield query


def selectors(objects: list[dict]) -> Iterator[tuple[str, promql_parser.VectorSelector]]:
    """(where, selector) of every series the rules and the dashboard read."""
    for rule in rules(objects):
        for selector in walk(promql_parser.parse(rule["expr"])):
            yield rule["alert"], selector
    for query in dashboard_queries(dashboard(objects)):
        for selector in walk(promql_parser.parse(query)):
            yield "dashboard", selector


def test_monitoring_objects_are_optional() -> None:
    kinds = {o["kind"] for o in render()}
    assert "PrometheusRule" not in kinds
    assert not [o for o in render() if o["metadata"]["name"].endswith("-dashboard")]


def test_every_alert_the_issue_asks_for_is_there() -> None:
    objects = render(MONITORING)
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = rules(objects)
    assert {r["alert"] for r in alerts} == set(ALERTS)
    for alert in alerts:
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        # Prometheus's own template syntax survives Helm's.
        assert "{{ $value" in alert["annotations"]["description"] or "$value" not in str(alert)


def test_every_query_parses_and_reads_only_this_release() -> None:
    objects = render(MONITORING)
    seen = 0
    for where, selector in selectors(objects):
        seen += 1
        matchers = {(m.name, m.value) for m in selector.matchers.matchers}
        assert selector.name and selector.name.startswith("trustgate_"), where
        if where == "dashboard":
            assert {("namespace", "$namespace"), ("job", "$job")} <= matchers, where
        else:
            assert {("namespace", NAMESPACE), ("job", RELEASE)} <= matchers, where
    assert seen > 30


def test_thresholds_follow_the_values() -> None:
    values = {
        "webhook": {"timeoutSeconds": 5},
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "latencyRatio": 0.6,
                "certificateExpiryDays": 21,
                "selector": 'cluster="eu-1",service="tg"',
                "alertLabels": {"team": "platform"},
            },
            "dashboard": {"enabled": True},
        },
    }
    objects = render(values)
    by_name: dict[str, list[dict]] = {}
    for rule in rules(objects):
        by_name.setdefault(rule["alert"], []).append(rule)
    (slow,) = by_name["TrustgateReviewsNearTimeout"]
    assert slow["expr"].strip().endswith("> 3")
    assert "the API server gives up at 5s" in slow["annotations"]["summary"]
    warning, critical = by_name["TrustgateCertificateExpiresSoon"]
    assert "< 21 * 86400" in warning["expr"] and warning["labels"]["severity"] == "warning"
    assert "< 3 * 86400" in critical["expr"] and critical["labels"]["severity"] == "critical"
    for rule in rules(objects):
        assert rule["labels"]["team"] == "platform"
        for selector in walk(promql_parser.parse(rule["expr"])):
            matchers = {(m.name, m.value) for m in selector.matchers.matchers}
            assert matchers >= {("cluster", "eu-1"), ("service", "tg")}
    timeout_line = next(
        t
        for p in dashboard(objects)["panels"]
        for t in p["targets"]
        if t["legendFormat"] == "webhook.timeoutSeconds"
    )
    assert timeout_line["expr"] == "vector(5)"


def test_auth_failures_alert_per_source_at_the_set_rate() -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "authFailuresPerSecond": 0.2}}}
    (rule,) = [r for r in rules(render(values)) if r["alert"] == "TrustgateRegistryAuthFailures"]
    expr = promql_parser.parse(rule["expr"])
    assert isinstance(expr, promql_parser.BinaryExpr)
    assert isinstance(expr.rhs, promql_parser.NumberLiteral) and expr.rhs.val == 0.2
    assert isinstance(expr.lhs, promql_parser.AggregateExpr)
    assert expr.lhs.modifier is not None and list(expr.lhs.modifier.labels) == ["source"]
    (selector,) = walk(expr)
    assert selector.name == "trustgate_registry_auth_failures_total"
    assert rule["for"] == "15m" and rule["labels"]["severity"] == "warning"
    assert "$labels.source" in rule["annotations"]["summary"]
    # The default: a few failures a minute, not one wrong secret tried before the right one.
    (default,) = [
        r for r in rules(render(MONITORING)) if r["alert"] == "TrustgateRegistryAuthFailures"
    ]
    assert default["expr"].strip().endswith("> 0.01")


def test_dashboard_is_a_sidecar_config_map() -> None:
    objects = render(MONITORING)
    config_map = one(objects, "ConfigMap", f"{RELEASE}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Security"}
    board = dashboard(objects)
    assert board["uid"] == "trustgate-admission"
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "job"}
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
    elsewhere = render({"metrics": {"dashboard": {"enabled": True, "namespace": "monitoring"}}})
    assert one(elsewhere, "ConfigMap", f"{RELEASE}-dashboard")["metadata"]["namespace"] == (
        "monitoring"
    )


@pytest.mark.parametrize(
    ("group", "api_group", "plural"),
    [
        ("openreports", "openreports.io", "reports"),
        ("wgpolicyk8s", "wgpolicyk8s.io", "policyreports"),
    ],
)
def test_audit_job_writes_policy_reports(group: str, api_group: str, plural: str) -> None:
    values = {"auditJob": {"enabled": True, "output": "policyreport", "reportGroup": group}}
    objects = render(values)
    role = one(objects, "ClusterRole", f"{RELEASE}-audit")
    report_rules = [r for r in role["rules"] if r["apiGroups"] == [api_group]]
    assert report_rules == [
        {"apiGroups": [api_group], "resources": [plural], "verbs": ["list", "patch", "delete"]}
    ]
    # Every other rule still only lists workloads.
    assert all(r["verbs"] == ["list"] for r in role["rules"] if r not in report_rules)
    cron = one(objects, "CronJob")
    (audit,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = build_parser({}).parse_args(audit["args"])
    assert (args.output, args.report_group, args.write_reports) == ("policyreport", group, True)


def test_audit_job_without_policy_reports_writes_nothing() -> None:
    objects = render({"auditJob": {"enabled": True, "output": "json"}})
    role = one(objects, "ClusterRole", f"{RELEASE}-audit")
    assert all(r["verbs"] == ["list"] for r in role["rules"])
    cron = one(objects, "CronJob")
    (audit,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "--write-reports" not in audit["args"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auditJob": {"enabled": True, "output": "yaml"}}, "/auditJob/output"),
        ({"auditJob": {"enabled": True, "reportGroup": "kyverno.io"}}, "/auditJob/reportGroup"),
        ({"metrics": {"prometheusRule": {"latencyRatio": 1.5}}}, "/latencyRatio"),
        ({"metrics": {"dashboard": {"labels": {"grafana_dashboard": 1}}}}, "grafana_dashboard"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)
