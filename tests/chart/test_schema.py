"""values.schema.json rejects typos and wrong types (Helm checks it on install and render)."""

import json

import helm_python as helm
import pytest

from conftest import CHART_DIR, chart, render


@pytest.mark.parametrize(
    "values, where",
    [
        ({"replicaCont": 2}, "replicaCont"),
        ({"ingress": {"enabeld": True}}, "enabeld"),
        ({"networkPolicy": {"egress": [{"cidr": "10.0.0.0/8", "port": 443}]}}, "port"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"service": {"port": "80"}}, "/service/port"),
        ({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
        ({"config": {"cache": {"backend": "memcached"}}}, "/config/cache/backend"),
        ({"config": {"appGateway": {"session": {"store": "cookie"}}}}, "/config/appGateway/session/store"),
        ({"ingress": {"stickiness": "haproxy"}}, "/ingress/stickiness"),
        ({"image": {"digest": "sha256:nope"}}, "/image/digest"),
    ],
)
def test_rejects(values, where):
    with pytest.raises(helm.HelmValuesError) as caught:
        chart().validate_schema(values)
    assert where in str(caught.value)
    # And so does a render (what `helm install` does).
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_config_is_free_form():
    chart().validate_schema({"config": {"oidcProvider": {"issuer": "https://x", "anything": [1, 2]}, "newSection": {}}})


def test_defaults_pass():
    chart().validate_schema({})


def test_strict_everywhere_we_own():
    """Every object in the schema is closed, except the ones that are Kubernetes types or the
    orchestrator config (validated by the binary)."""
    open_by_design = {
        "config", "behavior", "affinity", "podSecurityContext", "containerSecurityContext",
        "requests", "limits", "to", "tolerations",
    }
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())

    def walk(node, path):
        if not isinstance(node, dict):
            return
        name = path[-1] if path else ""
        if node.get("type") == "object" and "properties" in node and name not in open_by_design and "config" not in path:
            assert node.get("additionalProperties") is False, "/".join(path)
        for key, child in node.get("properties", {}).items():
            walk(child, [*path, key])
        if isinstance(node.get("items"), dict):
            walk(node["items"], [*path, name])
        for key, child in node.get("definitions", {}).items():
            walk(child, [*path, key])

    walk(schema, [])
    assert schema["additionalProperties"] is False
