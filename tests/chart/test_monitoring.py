"""metrics.grafanaDashboard and metrics.prometheusRule: the dashboard JSON parses and every
expression of the dashboard and the alert rules names series from docs/metrics.md (the catalogue
that tests/tests/metrics_catalogue.rs keeps true against /metrics). No Kubernetes schema exists
for the PrometheusRule CRD: its fields are asserted here."""

import json
import re
from pathlib import Path

from conftest import NAMESPACE, render, render_ci, validate_kubernetes

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def catalogue() -> set[str]:
    return set(re.findall(r"^\| `(orchestrator_[a-z_]+)` \|", CATALOGUE.read_text(), re.M))


def series(expr: str) -> set[str]:
    """Metric names in a PromQL expression (histogram suffixes folded into their family)."""
    names = set(re.findall(r"\b(orchestrator_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n for n in names}


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_off_by_default():
    r = render()
    assert not r.all("PrometheusRule")
    assert not [c for c in r.all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]


def test_dashboard_configmap_parses_and_names_catalogued_series():
    r = render_ci("monitoring")
    validate_kubernetes(r)
    cm = next(c for c in r.all("ConfigMap") if c["metadata"]["name"] == "rel-orchestrator-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Identity"}
    dashboard = json.loads(cm["data"]["orchestrator.json"])
    assert dashboard["uid"] == "orchestrator"
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    known = catalogue()
    used = set().union(*(series(e) for e in exprs))
    assert used <= known, f"not in docs/metrics.md: {sorted(used - known)}"
    # The operator's questions are on it: logins, denials, sessions, upstreams, cache.
    for needed in ["orchestrator_gateway_logins_total", "orchestrator_gateway_policy_denials_total",
                   "orchestrator_gateway_sessions_ended_total", "orchestrator_gateway_upstream_errors_total",
                   "orchestrator_cache_operations_total", "orchestrator_oidc_tokens_issued_total"]:
        assert needed in used, needed


def test_prometheus_rule_alerts_on_catalogued_series():
    r = render_ci("monitoring")
    rule = r.get("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = [x for g in rule["spec"]["groups"] for x in g["rules"]]
    alerts = {x["alert"]: x for x in rules}
    assert set(alerts) == {"OrchestratorLoginFailures", "OrchestratorServerErrors", "OrchestratorUpstreamErrors",
                           "OrchestratorConfigReloadFailed", "OrchestratorRedisDown", "OrchestratorCacheEvictions"}
    known = catalogue()
    for name, alert in alerts.items():
        used = series(alert["expr"])
        assert used and used <= known, f"{name}: {sorted(used - known)}"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]
        # Every expression is about this release only.
        assert f'namespace="{NAMESPACE}"' in alert["expr"], name
        assert 'job="rel-orchestrator-headless"' in alert["expr"], name
    assert "> 0.25" in alerts["OrchestratorLoginFailures"]["expr"]
    assert alerts["OrchestratorLoginFailures"]["annotations"]["summary"].startswith("More than 25")
    assert "{{ $labels.app }}" in alerts["OrchestratorUpstreamErrors"]["annotations"]["summary"]


def test_a_selector_replaces_the_default_matchers():
    r = render({"metrics": {"prometheusRule": {"enabled": True, "selector": 'cluster="eu1", app="sso"'}}})
    for g in r.get("PrometheusRule")["spec"]["groups"]:
        for x in g["rules"]:
            assert 'cluster="eu1", app="sso"' in x["expr"]
            assert "namespace=" not in x["expr"]
