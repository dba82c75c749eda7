"""Every example in charts/orchestrator/ci renders and is valid Kubernetes (strict) for the
oldest and newest versions kubernetes-validate ships."""

import pytest

from conftest import CI_VALUES, load_values, render, validate_kubernetes

EXPECTED = {
    "default",
    "autoscaling",
    "pdb",
    "networkpolicy",
    "ingress-nginx",
    "monitoring",
    "ingress-alb",
    "servicemonitor",
    "existing-secret",
    "dev-secrets",
    "tls",
    "redis-replicas",
    "ui-templates",
    "gateway-envoy",
    "gateway-istio",
    "gateway-gke",
    "gateway-alb",
}


def test_the_examples_are_all_there():
    assert {p.name.removesuffix("-values.yaml") for p in CI_VALUES} == EXPECTED


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.name)
def test_renders_and_validates(path):
    r = render(load_values(path))
    assert r.has("StatefulSet") and r.has("ConfigMap")
    validate_kubernetes(r)
