"""forwardAuth.ingresses: the app's Ingress with ingress-nginx's auth annotations, and the
/.orchestrator/ pages on the app's host routed to the orchestrator."""

from conftest import FULLNAME, NAMESPACE, render as render_any, render_error as render_error_any, validate_kubernetes
from conftest import with_trusted_proxies


def render(values=None, **opts):
    """Rendered with trusted proxies set (the chart refuses an Ingress without them)."""
    return render_any(with_trusted_proxies(values or {}), **opts)


def render_error(values):
    return render_error_any(with_trusted_proxies(values))


APP = {
    "name": "grafana",
    "namespace": "monitoring",
    "host": "grafana.example.com",
    "className": "nginx",
    "service": {"name": "grafana", "port": 3000},
    "tls": {"secretName": "grafana-tls"},
    "responseHeaders": ["X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups"],
}
GATEWAY = {
    "appGateway": {
        "identityProviders": [
            {"name": "corp", "issuer": "https://idp.example.com", "clientId": "gw", "clientSecret": "${secret:gw}"}
        ],
        "apps": [{"name": "grafana", "host": "grafana.example.com", "identityProvider": "corp"}],
    }
}


SECRETS = {"secrets": {"existingSecret": "orchestrator-secrets"}}


def ingresses(values):
    r = render({**SECRETS, **values})
    validate_kubernetes(r)
    return {i["metadata"]["name"]: i for i in r.all("Ingress")}


def test_off_by_default():
    assert not render().has("Ingress")


def test_app_ingress_asks_the_orchestrator_and_its_pages_are_routed_on_the_app_host():
    ings = ingresses({"forwardAuth": {"ingresses": [APP]}, "config": GATEWAY})
    app = ings[f"{FULLNAME}-fa-grafana"]
    assert app["metadata"]["namespace"] == "monitoring"
    annotations = app["metadata"]["annotations"]
    assert (
        annotations["nginx.ingress.kubernetes.io/auth-url"]
        == f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:80/.orchestrator/auth?orchestrator-app=grafana"
    )
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"] == "https://$host/.orchestrator/login"
    assert (
        annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
        == "X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups"
    )
    # No auth-snippet: ingress-nginx disables snippets by default.
    assert not any("snippet" in k for k in annotations)
    rule = app["spec"]["rules"][0]
    assert rule["host"] == "grafana.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "grafana", "port": {"number": 3000}}
    assert app["spec"]["tls"] == [{"hosts": ["grafana.example.com"], "secretName": "grafana-tls"}]

    pages = ings[f"{FULLNAME}-fa-grafana-pages"]
    assert pages["metadata"]["namespace"] == NAMESPACE
    assert "annotations" not in pages["metadata"], "the pages themselves need no auth"
    path = pages["spec"]["rules"][0]["http"]["paths"][0]
    assert pages["spec"]["rules"][0]["host"] == "grafana.example.com"
    assert path["path"] == "/.orchestrator/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}


def test_configured_paths_follow_the_config():
    config = {"appGateway": {**GATEWAY["appGateway"], "authPath": "/_auth", "loginPath": "/_login"}}
    app = {k: v for k, v in APP.items() if k != "tls"}
    ings = ingresses({"forwardAuth": {"ingresses": [app]}, "config": config})
    annotations = ings[f"{FULLNAME}-fa-grafana"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-url"].endswith(":80/_auth?orchestrator-app=grafana")
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"] == "http://$host/_login"


def test_needs_the_gateway_config():
    err = render_error({"forwardAuth": {"ingresses": [APP]}})
    assert "forwardAuth.ingresses needs config.appGateway" in err


def test_several_replicas_need_shared_sessions():
    err = render_error({**SECRETS, "forwardAuth": {"ingresses": [APP]}, "config": GATEWAY, "replicaCount": 2})
    assert "session.store: shared" in err


def test_the_auth_url_names_the_app():
    app = dict(APP, name="dashboards", app="grafana")
    ings = ingresses({"forwardAuth": {"ingresses": [app]}, "config": GATEWAY})
    url = ings[f"{FULLNAME}-fa-dashboards"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"]
    assert url.endswith("/.orchestrator/auth?orchestrator-app=grafana")
