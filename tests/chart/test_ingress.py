"""Ingress: networking.k8s.io/v1, className, hosts, TLS, and stickiness presets for
ingress-nginx and the AWS Load Balancer Controller."""

from conftest import FULLNAME, render, render_ci, render_error, validate_kubernetes

HOSTS = [{"host": "sso.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]


def ingress(values):
    r = render({"ingress": {"enabled": True, "hosts": HOSTS, **values}})
    validate_kubernetes(r)
    return r.get("Ingress")


def test_off_by_default():
    assert not render().has("Ingress")


def test_routes_only_the_proxy_port():
    ing = ingress({"className": "traefik", "tls": [{"secretName": "sso-tls", "hosts": ["sso.example.com"]}]})
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert ing["spec"]["tls"] == [{"secretName": "sso-tls", "hosts": ["sso.example.com"]}]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "sso.example.com"
    backends = [p["backend"]["service"] for p in rule["http"]["paths"]]
    assert backends == [{"name": FULLNAME, "port": {"name": "http"}}]
    # No preset annotations for an unknown controller without stickiness.
    assert "annotations" not in ing["metadata"]


def test_nginx_stickiness():
    ing = render_ci("ingress-nginx").get("Ingress")
    annotations = ing["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"] == "orchestrator_affinity"
    # The cookie lives as long as a gateway session may (session.maxLifetime, 8h by default).
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-expires"] == "28800"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-max-age"] == "28800"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"][0]["secretName"] == "sso-example-com-tls"


def test_nginx_cookie_follows_session_max_lifetime():
    values = {"ingress": {"enabled": True, "hosts": HOSTS, "stickiness": "nginx"}, "config": {"appGateway": {"session": {"maxLifetime": "1h 30m"}}}}
    annotations = render(values).get("Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-max-age"] == "5400"


def test_alb_stickiness():
    r = render_ci("ingress-alb")
    validate_kubernetes(r)
    annotations = r.get("Ingress")["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/target-group-attributes"] == (
        "stickiness.enabled=true,stickiness.type=lb_cookie,stickiness.lb_cookie.duration_seconds=28800"
    )
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    # Health checks on the admin port's /readyz, never through the proxy port.
    assert annotations["alb.ingress.kubernetes.io/healthcheck-port"] == "9090"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert not any(k.startswith("nginx.") for k in annotations)


def test_alb_duration_is_bounded():
    message = render_error({"ingress": {"enabled": True, "hosts": HOSTS, "stickiness": "alb", "stickinessDurationSeconds": 700000}})
    assert "604800" in message


def test_user_annotations_win():
    ing = ingress({"stickiness": "alb", "annotations": {"alb.ingress.kubernetes.io/target-type": "instance"}})
    assert ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] == "instance"


def test_no_stickiness_annotations_when_none():
    ing = ingress({"className": "nginx"})
    assert not any("affinity" in k or "session-cookie" in k for k in ing["metadata"].get("annotations", {}))


def test_hosts_are_required():
    assert "ingress.hosts" in render_error({"ingress": {"enabled": True, "hosts": []}})


def test_local_sessions_on_many_replicas_without_stickiness_warn():
    values = {
        "replicaCount": 2,
        "ingress": {"enabled": True, "hosts": HOSTS},
        "config": {"appGateway": {"session": {"store": "local"}}},
    }
    assert "sticky" in render(values).notes
    values["ingress"]["stickiness"] = "nginx"
    assert "sticky" not in render(values).notes
