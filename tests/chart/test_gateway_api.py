"""Gateway API: the HTTPRoute (gateway.networking.k8s.io/v1), session persistence per controller
(the route's own, Istio's Service label, GKE's GCPBackendPolicy, the AWS Load Balancer
Controller's TargetGroupConfiguration), and the guards that refuse what would not work. Every
object is validated against validators generated from the Gateway API, Envoy Gateway and GKE CRD
schemas, and its field names against the models' declarations."""

import pytest

from conftest import (FULLNAME, model_fields, render, render_ci, render_error,
                      validate_gateway_api, validate_kubernetes, with_trusted_proxies)

GW = "gateway-api"
V1 = "gateway.networking.k8s.io/v1"
APPS = [{"name": "wiki", "host": "wiki.example.com", "upstream": "http://wiki.apps.svc:8080"},
        {"name": "any", "host": "*", "upstream": "http://any.apps.svc:8080"}]
PARENTS = [{"name": "eg", "namespace": "envoy-gateway-system"}]


def values(route=None, **more):
    config = more.pop("config", {})
    config.setdefault("appGateway", {}).setdefault("apps", APPS)
    return with_trusted_proxies({"httpRoute": {"enabled": True, "parentRefs": PARENTS, **(route or {})},
                                 "config": config, **more})


def many(route=None, **more):
    v = values(route, **more)
    v["replicaCount"] = 3
    v["config"]["appGateway"]["session"] = {"store": "local"}
    return v


def routed(v):
    r = render(v)
    validate_kubernetes(r)
    assert validate_gateway_api(r) >= 1
    check_fields(r.get("HTTPRoute"))
    return r


def check_fields(route):
    """No field the Gateway API model does not declare (the validators let unknown ones pass)."""
    spec = route["spec"]
    assert set(spec) <= model_fields(GW, f"{V1}/HTTPRouteSpec")
    for ref in spec["parentRefs"]:
        assert set(ref) <= model_fields(GW, f"{V1}/ParentReference")
    for rule in spec["rules"]:
        assert set(rule) <= model_fields(GW, f"{V1}/HTTPRouteRule")
        for ref in rule["backendRefs"]:
            assert set(ref) <= model_fields(GW, f"{V1}/HTTPBackendRef")
        if "timeouts" in rule:
            assert set(rule["timeouts"]) <= model_fields(GW, f"{V1}/HTTPRouteTimeouts")
        if "sessionPersistence" in rule:
            sp = rule["sessionPersistence"]
            assert set(sp) <= model_fields(GW, f"{V1}/SessionPersistence")
            assert set(sp["cookieConfig"]) <= model_fields(GW, f"{V1}/CookieConfig")


def test_off_by_default():
    assert not render().has("HTTPRoute")


def test_the_route_targets_only_the_proxy_port_of_the_service():
    r = routed(values())
    route = r.get("HTTPRoute")
    assert route["apiVersion"] == V1
    assert route["metadata"]["name"] == FULLNAME
    spec = route["spec"]
    assert spec["parentRefs"] == PARENTS
    (rule,) = spec["rules"]
    assert rule["backendRefs"] == [{"name": FULLNAME, "port": 80}]
    assert r.get("Service", FULLNAME)["spec"]["ports"][0]["port"] == 80
    # One replica: nothing to keep on a pod.
    assert "sessionPersistence" not in rule


def test_hostnames_come_from_the_apps_and_the_issuer_unless_given():
    v = values(config={"oidcProvider": {"issuer": "https://sso.example.com:8443/idp"}})
    assert routed(v).get("HTTPRoute")["spec"]["hostnames"] == ["wiki.example.com", "sso.example.com"]
    given = routed(values({"hostnames": ["a.example.com"]})).get("HTTPRoute")
    assert given["spec"]["hostnames"] == ["a.example.com"]
    message = render_error(with_trusted_proxies({"httpRoute": {"enabled": True, "parentRefs": PARENTS}}))
    assert "httpRoute.hostnames" in message


def test_long_sessions_keep_within_gateway_api_durations():
    # At most five digits a unit: a week is 168h, not 604800s.
    v = many({"controller": "envoy"})
    v["config"]["appGateway"]["session"]["maxLifetime"] = "7d 30m 5s"
    sp = routed(v).get("HTTPRoute")["spec"]["rules"][0]["sessionPersistence"]
    assert sp["absoluteTimeout"] == "168h30m5s"
    v = many({"controller": "alb"})
    v["ingress"] = {"stickinessDurationSeconds": 700000}
    assert "604800" in render_error(v)


def test_forward_auth_apps_are_not_in_the_main_route():
    v = values({"hostnames": []})
    v["config"]["appGateway"]["apps"] = APPS + [{"name": "grafana", "host": "grafana.example.com"}]
    assert routed(v).get("HTTPRoute")["spec"]["hostnames"] == ["wiki.example.com"]


def test_the_request_timeout_outlasts_the_upstreams():
    rule = routed(values()).get("HTTPRoute")["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "90s"}
    v = values(config={"appGateway": {"apps": APPS, "upstreamResponseTimeout": "2m"}})
    assert routed(v).get("HTTPRoute")["spec"]["rules"][0]["timeouts"] == {"request": "150s"}
    assert routed(values({"requestTimeout": "5m"})).get("HTTPRoute")["spec"]["rules"][0]["timeouts"] == {"request": "300s"}
    message = render_error(values({"requestTimeout": "30s"}))
    assert "httpRoute.requestTimeout" in message and "upstreamResponseTimeout" in message


def test_parent_refs_and_trusted_proxies_are_required():
    assert "httpRoute.parentRefs" in render_error(values({"parentRefs": []}))
    v = values()
    v["config"]["listen"]["trustedProxies"] = []
    assert "trustedProxies" in render_error(v)


def test_local_sessions_on_many_pods_stick_through_the_routes_cookie():
    for controller in ("envoy", "other"):
        rule = routed(many({"controller": controller})).get("HTTPRoute")["spec"]["rules"][0]
        assert rule["sessionPersistence"] == {
            "sessionName": "orchestrator_affinity",
            "type": "Cookie",
            # As long as a gateway session may live (session.maxLifetime, 8h by default).
            "absoluteTimeout": "8h",
            "cookieConfig": {"lifetimeType": "Permanent"},
        }
    # Shared sessions: any pod serves any user.
    shared = values(replicaCount=3, config={"appGateway": {"apps": APPS, "session": {"store": "shared"}},
                                           "cache": {"backend": "redis", "redis": {"url": "redis://r:6379"}}})
    assert "sessionPersistence" not in routed(shared).get("HTTPRoute")["spec"]["rules"][0]


def test_route_persistence_is_refused_on_the_standard_channel():
    message = render_error(many({"controller": "envoy", "crdChannel": "standard"}))
    assert "experimental channel" in message
    routed(many({"controller": "envoy", "crdChannel": "experimental"}))


def test_a_bad_persistence_is_refused_by_the_validators():
    # The validators are real: a value the schema forbids fails (here a cookie name with a space,
    # which the chart's own schema already refuses, so the object is edited after rendering).
    r = render(many({"controller": "envoy"}))
    r.get("HTTPRoute")["spec"]["rules"][0]["sessionPersistence"]["type"] = "Sticky"
    with pytest.raises(pytest.fail.Exception) as failed:
        validate_gateway_api(r)
    assert "sessionPersistence/type" in str(failed.value)


def test_istio_sticks_through_the_service_label():
    r = routed(many({"controller": "istio"}))
    labels = r.get("Service", FULLNAME)["metadata"]["labels"]
    assert labels["istio.io/persistent-session"] == "orchestrator_affinity"
    assert "sessionPersistence" not in r.get("HTTPRoute")["spec"]["rules"][0]
    assert "istio.io/persistent-session" not in render(values({"controller": "istio"})).get("Service", FULLNAME)["metadata"]["labels"]


def test_gke_gets_a_backend_policy_and_health_checks_on_readyz():
    r = routed(many({"controller": "gke"}))
    policy = r.get("GCPBackendPolicy")
    assert policy["spec"]["targetRef"] == {"group": "", "kind": "Service", "name": FULLNAME}
    assert policy["spec"]["default"]["sessionAffinity"] == {"type": "GENERATED_COOKIE", "cookieTtlSec": 28800}
    # GKE's backend timeout (30s by default) outlasts the upstream's.
    assert policy["spec"]["default"]["timeoutSec"] == 90
    check = r.get("HealthCheckPolicy")["spec"]["default"]["config"]
    assert check == {"type": "HTTP", "httpHealthCheck": {"port": 9090, "requestPath": "/readyz"}}
    assert "timeouts" not in r.get("HTTPRoute")["spec"]["rules"][0]
    assert "sessionAffinity" not in routed(values({"controller": "gke"})).get("GCPBackendPolicy")["spec"]["default"]


def test_alb_gets_a_target_group_configuration_and_time_to_deregister():
    r = routed(many({"controller": "alb"}))
    tgc = r.get("TargetGroupConfiguration")
    assert tgc["apiVersion"] == "gateway.k8s.aws/v1beta1"
    assert tgc["spec"]["targetReference"] == {"name": FULLNAME}
    default = tgc["spec"]["defaultConfiguration"]
    assert default["targetType"] == "ip"
    assert default["healthCheckConfig"] == {"healthCheckPath": "/readyz", "healthCheckPort": "9090", "healthCheckProtocol": "HTTP"}
    attributes = {a["key"]: a["value"] for a in default["targetGroupAttributes"]}
    assert attributes == {
        # The pod's shutdown delay (15s behind an ALB) + its drain timeout (20s).
        "deregistration_delay.timeout_seconds": "35",
        "stickiness.enabled": "true",
        "stickiness.type": "lb_cookie",
        "stickiness.lb_cookie.duration_seconds": "28800",
    }
    assert r.config()["shutdown"]["delay"] == "15s"
    assert r.statefulset()["spec"]["minReadySeconds"] == 15
    # The grace period covers the longer delay.
    assert r.statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_persistence_for_another_controller_or_none_is_refused():
    assert "does not work with httpRoute.controller gke" in render_error(many({"controller": "gke", "sessionPersistence": "istio"}))
    assert "does not implement" in render_error(many({"controller": "alb", "sessionPersistence": "route"}))
    assert "httpRoute.allowNonSticky" in render_error(many({"controller": "envoy", "sessionPersistence": "none"}))
    rule = routed(many({"controller": "envoy", "sessionPersistence": "none", "allowNonSticky": True})).get("HTTPRoute")["spec"]["rules"][0]
    assert "sessionPersistence" not in rule


@pytest.mark.parametrize("name", ["gateway-envoy", "gateway-istio", "gateway-gke", "gateway-alb"])
def test_the_ci_examples_validate(name):
    r = render_ci(name)
    validate_kubernetes(r)
    assert validate_gateway_api(r) >= 1
    check_fields(r.get("HTTPRoute"))
    assert r.config()["listen"]["trustedProxies"]


FA_APP = {"name": "grafana", "namespace": "monitoring", "host": "grafana.example.com",
          "service": {"name": "grafana", "port": 3000}, "responseHeaders": ["X-Auth-Request-User"]}
FA_CONFIG = {"appGateway": {"apps": [{"name": "grafana", "host": "grafana.example.com"}]}}


def forward_auth(controller, **more):
    return with_trusted_proxies({"httpRoute": {"parentRefs": PARENTS, "controller": controller},
                                 "forwardAuth": {"routes": [FA_APP]}, "config": FA_CONFIG, **more})


def fa_routes(r):
    return {d["metadata"]["name"]: d for d in r.all("HTTPRoute")}


def test_forward_auth_behind_envoy_gateway_is_a_security_policy():
    r = render(forward_auth("envoy"))
    validate_kubernetes(r)
    assert validate_gateway_api(r) == 4
    routes = fa_routes(r)
    app = routes[f"{FULLNAME}-fa-grafana"]
    assert app["metadata"]["namespace"] == "monitoring"
    assert app["spec"]["hostnames"] == ["grafana.example.com"]
    (rule,) = app["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "grafana", "port": 3000}]
    assert "filters" not in rule
    check_fields(app)
    policy = r.get("SecurityPolicy")
    assert policy["metadata"]["namespace"] == "monitoring"
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": f"{FULLNAME}-fa-grafana"}]
    ext = policy["spec"]["extAuth"]
    # Envoy sends only Host, method, path and Authorization unless told: the cookie is the session.
    assert "cookie" in ext["headersToExtAuth"]
    # What tells an API call (401) from a navigation (302 to the sign-in).
    assert {"accept", "sec-fetch-mode", "x-requested-with"} <= set(ext["headersToExtAuth"])
    assert ext["http"]["backendRefs"] == [{"name": FULLNAME, "namespace": "ns", "port": 80}]
    assert ext["http"]["path"] == "/.orchestrator/auth"
    assert ext["http"]["headersToBackend"] == ["X-Auth-Request-User"]
    assert set(ext) <= model_fields("envoy-gateway", "gateway.envoyproxy.io/v1alpha1/ExtAuth")
    assert set(ext["http"]) <= model_fields("envoy-gateway", "gateway.envoyproxy.io/v1alpha1/HTTPExtAuthService")
    # The pages on the app's host go to the orchestrator, from this namespace.
    pages = routes[f"{FULLNAME}-fa-grafana-pages"]
    assert pages["metadata"]["namespace"] == "ns"
    assert pages["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/.orchestrator/"}}]
    assert pages["spec"]["rules"][0]["backendRefs"] == [{"name": FULLNAME, "port": 80}]
    grant = r.get("ReferenceGrant")
    assert grant["spec"]["from"] == [{"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy", "namespace": "monitoring"}]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": FULLNAME}]


def test_forward_auth_elsewhere_is_the_routes_external_auth_filter():
    import copy
    r = render(forward_auth("other"))
    validate_kubernetes(r)
    app = fa_routes(r)[f"{FULLNAME}-fa-grafana"]
    check_fields(app)
    (auth,) = app["spec"]["rules"][0]["filters"]
    # The validators carry the standard channel's filter types, which lack the experimental
    # ExternalAuth: the route is checked without it, the filter against its own model.
    bare = copy.deepcopy(app)
    del bare["spec"]["rules"][0]["filters"]
    others = [d for d in r.docs if d is not app]
    filter_model = {"apiVersion": V1, "kind": "HTTPExternalAuthFilter", **auth["externalAuth"]}
    assert validate_gateway_api([bare, filter_model, *others]) == 4
    assert auth["type"] == "ExternalAuth"
    ext = auth["externalAuth"]
    assert set(ext) <= model_fields(GW, f"{V1}/HTTPExternalAuthFilter")
    assert ext["protocol"] == "HTTP"
    assert ext["backendRef"] == {"name": FULLNAME, "namespace": "ns", "port": 80}
    assert ext["http"]["path"] == "/.orchestrator/auth"
    assert {"cookie", "accept", "sec-fetch-mode", "x-requested-with"} <= set(ext["http"]["allowedHeaders"])
    assert ext["http"]["allowedResponseHeaders"] == ["X-Auth-Request-User"]
    assert not r.has("SecurityPolicy")
    assert r.get("ReferenceGrant")["spec"]["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "monitoring"}]
    # The filter is experimental: refused where the CRDs say standard.
    v = forward_auth("other")
    v["httpRoute"]["crdChannel"] = "standard"
    assert "experimental channel" in render_error(v)


def test_forward_auth_routes_are_refused_where_they_cannot_work():
    assert "has no external auth" in render_error(forward_auth("gke"))
    v = forward_auth("envoy", replicaCount=2)
    assert "session.store: shared" in render_error(v)
    v = forward_auth("envoy")
    v["httpRoute"]["parentRefs"] = []
    assert "httpRoute.parentRefs" in render_error(v)
    # In this release's own namespace no grant is needed.
    same = forward_auth("envoy")
    same["forwardAuth"]["routes"] = [{**FA_APP, "namespace": "ns"}]
    r = render(same)
    assert not r.has("ReferenceGrant")
    assert "namespace" not in r.get("SecurityPolicy")["spec"]["extAuth"]["http"]["backendRefs"][0]
