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


def test_cert_manager_issues_the_listeners_certificate():
    r = render({"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "internal-ca"}, "dnsNames": ["sso.example.com"]}}})
    validate_kubernetes(r)
    cert = r.get("Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["secretName"] == "rel-orchestrator-tls"
    assert cert["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    names = cert["spec"]["dnsNames"]
    ns = r.get("Service", "rel-orchestrator")["metadata"]["namespace"]
    assert f"rel-orchestrator.{ns}.svc" in names and f"*.rel-orchestrator-headless.{ns}.svc" in names
    assert "sso.example.com" in names
    assert cert["spec"]["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    assert cert["spec"]["usages"] == ["server auth"]
    # The pods mount the Secret cert-manager writes.
    volume = next(v for v in r.statefulset()["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "rel-orchestrator-tls"


def test_cert_manager_needs_tls_and_an_issuer():
    assert "tls.enabled" in render_error({"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}})
    assert "issuerRef.name" in render_error({"tls": {"enabled": True, "certManager": {"enabled": True}}})
    assert not render({"tls": {"enabled": True, "secretName": "mine"}}).all("Certificate")
