"""tls.enabled: the orchestrator terminates TLS itself with a kubernetes.io/tls Secret mounted
at /etc/orchestrator/tls."""

from conftest import render, render_ci, render_error, validate_kubernetes


def test_tls_mount_and_config():
    r = render_ci("tls")
    validate_kubernetes(r)
    config = r.config()
    assert config["listen"]["tls"] == {"certFile": "/etc/orchestrator/tls/tls.crt", "keyFile": "/etc/orchestrator/tls/tls.key"}
    mount = next(m for m in r.container()["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/orchestrator/tls", "readOnly": True}
    volume = next(v for v in r.statefulset()["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "orchestrator-tls"
    svc = r.get("Service", "rel-orchestrator")
    assert svc["spec"]["ports"][0]["port"] == 443
    assert svc["spec"]["ports"][0]["appProtocol"] == "https"
    # The ingress speaks HTTPS to the pods.
    assert r.get("Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_tls_needs_a_secret_name():
    assert "tls.secretName" in render_error({"tls": {"enabled": True}})


def test_listen_tls_without_the_mount_fails():
    message = render_error({"config": {"listen": {"tls": {"certFile": "/x.crt", "keyFile": "/x.key"}}}})
    assert "tls.enabled" in message


def test_no_tls_volume_by_default():
    r = render()
    assert "tls" not in r.config()["listen"]
    assert all(v["name"] != "tls" for v in r.statefulset()["spec"]["template"]["spec"]["volumes"])
