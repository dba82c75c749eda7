"""Secrets: an existing Secret (production) or one created from values (development), mounted
read-only at /etc/orchestrator/secrets; nothing secret in the ConfigMap or the environment."""

from conftest import FULLNAME, render, render_ci, render_error, validate_kubernetes


def volumes(r):
    return {v["name"]: v for v in r.statefulset()["spec"]["template"]["spec"]["volumes"]}


def test_existing_secret():
    r = render_ci("existing-secret")
    validate_kubernetes(r)
    assert not r.has("Secret")
    secret = volumes(r)["secrets"]["secret"]
    assert secret["secretName"] == "orchestrator-secrets"
    assert secret["defaultMode"] == 0o440
    mount = next(m for m in r.container()["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/etc/orchestrator/secrets", "readOnly": True}
    # The ConfigMap keeps the references, never the values.
    config = r.config()
    assert config["oidcProvider"]["signingKeys"][0]["privateKey"] == "${secret:oidc-signing-key.pem}"
    assert "oidc-signing-key.pem" in r.notes


def test_secret_references_need_a_secret():
    message = render_error({"config": {"cache": {"backend": "redis", "redis": {"url": "redis://redis:6379", "password": "${secret:redis-password}"}}}})
    assert "secrets.existingSecret" in message
    assert "redis-password" in message


def test_created_secret_for_development():
    r = render_ci("dev-secrets")
    validate_kubernetes(r)
    secret = r.get("Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-secrets"
    assert secret["stringData"] == {"dev-client-secret": "dev-only-not-a-secret"}
    assert volumes(r)["secrets"]["secret"]["secretName"] == f"{FULLNAME}-secrets"
    assert "development" in r.notes
    # rollOnConfigChange: checksums of the ConfigMap and the Secret roll the pods.
    annotations = r.statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64
    assert len(annotations["checksum/secret"]) == 64


def test_created_secret_must_hold_every_reference():
    message = render_error({"secrets": {"create": True, "stringData": {}}, "config": {"log": {"level": "${secret:nope}"}}})
    assert "secrets.stringData" in message and "nope" in message


def test_create_and_existing_are_exclusive():
    assert "not both" in render_error({"secrets": {"create": True, "existingSecret": "x"}})


def test_roll_on_config_change_is_opt_in():
    annotations = render().statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" not in annotations
    a = render({"rollOnConfigChange": True, "config": {"log": {"level": "info"}}}).statefulset()["spec"]["template"]["metadata"]["annotations"]
    b = render({"rollOnConfigChange": True, "config": {"log": {"level": "debug"}}}).statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/config"] != b["checksum/config"]


def test_no_environment_variables():
    for name in ("existing-secret", "dev-secrets", "redis-replicas"):
        c = render_ci(name).container()
        assert "env" not in c and "envFrom" not in c, name
