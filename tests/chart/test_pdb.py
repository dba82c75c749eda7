"""podDisruptionBudget: off by default; minAvailable or maxUnavailable."""

from conftest import render, render_error, validate_kubernetes

SELECTOR = {"app.kubernetes.io/name": "orchestrator", "app.kubernetes.io/instance": "rel"}


def test_off_by_default():
    assert not render().has("PodDisruptionBudget")


def test_max_unavailable_by_default():
    r = render({"replicaCount": 2, "podDisruptionBudget": {"enabled": True}})
    validate_kubernetes(r)
    pdb = r.get("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_min_available_wins():
    r = render({"replicaCount": 3, "podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}})
    validate_kubernetes(r)
    spec = r.get("PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == "50%"
    assert "maxUnavailable" not in spec


def test_neither_fails():
    message = render_error({"replicaCount": 2, "podDisruptionBudget": {"enabled": True, "maxUnavailable": None}})
    assert "minAvailable or maxUnavailable" in message


def test_not_rendered_with_one_replica():
    r = render({"podDisruptionBudget": {"enabled": True}})
    assert not r.has("PodDisruptionBudget"), "a budget over one pod blocks every drain"
    assert "not rendered with a single replica" in r.notes


def test_rendered_with_the_autoscaler_and_unhealthy_pods_can_be_evicted():
    values = {
        "podDisruptionBudget": {"enabled": True},
        "autoscaling": {"enabled": True},
        "config": {"cache": {"backend": "redis", "redis": {"url": "redis://redis:6379/0"}}},
    }
    r = render(values)
    validate_kubernetes(r)
    assert "unhealthyPodEvictionPolicy" not in r.get("PodDisruptionBudget")["spec"], "1.25 refuses it"
    values["podDisruptionBudget"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    # Kubernetes 1.27+ only: not validated against the 1.25 schema.
    assert render(values).get("PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_a_budget_that_allows_no_disruption_is_refused():
    for budget in ({"minAvailable": 2}, {"minAvailable": "100%"}, {"maxUnavailable": 0}, {"maxUnavailable": "0%"}):
        message = render_error({"replicaCount": 2, "podDisruptionBudget": {"enabled": True, **budget}})
        assert "allows no disruption" in message, budget
    r = render({"replicaCount": 3, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}})
    assert r.get("PodDisruptionBudget")["spec"]["minAvailable"] == 2
