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
    message = render_error({"podDisruptionBudget": {"enabled": True, "maxUnavailable": None}})
    assert "minAvailable or maxUnavailable" in message


def test_single_replica_warns_in_notes():
    assert "block node drains" in render({"podDisruptionBudget": {"enabled": True}}).notes
