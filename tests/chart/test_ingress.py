"""Ingress: networking.k8s.io/v1, className, hosts, TLS, and stickiness presets for
ingress-nginx and the AWS Load Balancer Controller."""

from conftest import FULLNAME, render as render_any, render_ci, render_error as render_error_any, validate_kubernetes
from conftest import with_trusted_proxies


def render(values=None, **opts):
    """Rendered with trusted proxies set (the chart refuses an Ingress without them)."""
    return render_any(with_trusted_proxies(values or {}), **opts)


def render_error(values):
    return render_error_any(with_trusted_proxies(values))


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
    # Deregistration within the pod's shutdown (15s delay behind an ALB + 20s drain), then
    # stickiness.
    assert annotations["alb.ingress.kubernetes.io/target-group-attributes"] == (
        "deregistration_delay.timeout_seconds=35,"
        "stickiness.enabled=true,stickiness.type=lb_cookie,stickiness.lb_cookie.duration_seconds=28800"
    )
    assert r.config()["shutdown"]["delay"] == "15s"
    assert r.statefulset()["spec"]["minReadySeconds"] == 15
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


LOCAL = {"appGateway": {"session": {"store": "local"}}}


def many(ingress, **more):
    return {"replicaCount": 3, "ingress": {"enabled": True, "hosts": HOSTS, **ingress}, "config": LOCAL, **more}


def test_local_sessions_on_many_replicas_are_sticky_by_default():
    nginx = render(many({"className": "nginx"})).get("Ingress")["metadata"]["annotations"]
    assert nginx["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    alb = render(many({"className": "alb"})).get("Ingress")["metadata"]["annotations"]
    assert "stickiness.enabled=true" in alb["alb.ingress.kubernetes.io/target-group-attributes"]
    hpa = render({"autoscaling": {"enabled": True}, "ingress": {"enabled": True, "hosts": HOSTS, "controller": "nginx", "className": "nginx-internal"},
                  "config": {**LOCAL, "cache": {"backend": "redis", "redis": {"url": "redis://r:6379"}}}})
    assert hpa.get("Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    # One replica, or shared sessions: nothing to stick.
    single = render({"ingress": {"enabled": True, "hosts": HOSTS, "className": "nginx"}}).get("Ingress")
    assert not any("affinity" in k for k in single["metadata"].get("annotations", {}))


def test_an_unknown_controller_with_local_sessions_on_many_replicas_is_refused():
    message = render_error(many({"className": "nginx-internal"}))
    assert "ingress.controller" in message and "sticky" in message
    # Named explicitly, it works.
    ann = render(many({"className": "nginx-internal", "controller": "nginx"})).get("Ingress")["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_no_stickiness_with_local_sessions_on_many_replicas_is_refused_unless_allowed():
    message = render_error(many({"className": "nginx", "stickiness": "none"}))
    assert "ingress.allowNonSticky" in message
    ing = render(many({"className": "nginx", "stickiness": "none", "allowNonSticky": True})).get("Ingress")
    assert not any("affinity" in k for k in ing["metadata"].get("annotations", {}))


def test_stickiness_for_another_controller_is_refused():
    assert "does not work with the alb controller" in render_error(many({"className": "alb", "stickiness": "nginx"}))
    assert "does not work with the nginx controller" in render_error(
        {"ingress": {"enabled": True, "hosts": HOSTS, "controller": "nginx", "stickiness": "alb"}})


def test_a_users_alb_target_group_attributes_are_merged_with_stickiness():
    ann = render(many({"className": "alb", "annotations": {
        "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=30, stickiness.enabled=false"}})
    ).get("Ingress")["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/target-group-attributes"] == (
        "deregistration_delay.timeout_seconds=30,"
        "stickiness.enabled=true,stickiness.type=lb_cookie,stickiness.lb_cookie.duration_seconds=28800"
    )
    # Without stickiness the user's value is passed as it is, and without one of theirs the
    # chart's deregistration delay is there.
    one = render({"ingress": {"enabled": True, "hosts": HOSTS, "className": "alb", "annotations": {
        "alb.ingress.kubernetes.io/target-group-attributes": "deregistration_delay.timeout_seconds=30"}}}).get("Ingress")
    assert one["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"] == "deregistration_delay.timeout_seconds=30"
    plain = render({"ingress": {"enabled": True, "hosts": HOSTS, "className": "alb"}}).get("Ingress")
    assert plain["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"] == "deregistration_delay.timeout_seconds=35"


def test_without_an_alb_the_shutdown_delay_and_min_ready_stay_short():
    r = render({"ingress": {"enabled": True, "hosts": HOSTS, "className": "nginx"}})
    assert r.config()["shutdown"]["delay"] == "2s"
    assert "minReadySeconds" not in r.statefulset()["spec"]
    # Set explicitly, both are the user's.
    mine = render({"ingress": {"enabled": True, "hosts": HOSTS, "className": "alb"}, "minReadySeconds": 5,
                   "config": {"shutdown": {"delay": "30s"}}})
    assert mine.config()["shutdown"]["delay"] == "30s"
    assert mine.statefulset()["spec"]["minReadySeconds"] == 5
    assert mine.get("Ingress")["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"] == "deregistration_delay.timeout_seconds=50"


def test_local_sessions_on_many_replicas_without_the_charts_ingress_warn():
    values = {"replicaCount": 2, "config": LOCAL}
    assert "keep each user on one pod" in render(values).notes
    assert "keep each user on one pod" not in render(many({"className": "nginx"})).notes


def test_an_ingress_needs_trusted_proxies_and_the_default_trusts_nobody():
    from conftest import render as plain, render_error as plain_error
    message = plain_error({"ingress": {"enabled": True, "hosts": HOSTS}})
    assert "config.listen.trustedProxies" in message
    # Without an Ingress nothing is trusted by default (not every private range).
    assert plain().config()["listen"]["trustedProxies"] == []
