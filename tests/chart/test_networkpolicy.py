"""NetworkPolicy: ingress from the ingress controller (proxy port) and monitoring (admin port),
egress to DNS, Redis, upstreams and the listed CIDRs only."""

from conftest import render, render_ci, render_error, validate_kubernetes


def policy(values):
    r = render({"networkPolicy": {"enabled": True}, **values})
    validate_kubernetes(r)
    return r.get("NetworkPolicy")["spec"]


def test_off_by_default():
    assert not render().has("NetworkPolicy")


def test_ingress_rules():
    spec = policy({})
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "orchestrator", "app.kubernetes.io/instance": "rel"}
    proxy, admin = spec["ingress"]
    assert proxy["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert proxy["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]
    assert admin["ports"] == [{"port": "admin", "protocol": "TCP"}]
    assert admin["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    # The release's `helm test` pod may ask /readyz.
    assert admin["from"][1] == {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "rel", "app.kubernetes.io/component": "test"}}}


def test_egress_dns_only_by_default():
    spec = policy({})
    assert len(spec["egress"]) == 1
    dns = spec["egress"][0]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_redis_upstream_and_listed_egress_from_ci_example():
    r = render_ci("networkpolicy")
    validate_kubernetes(r)
    egress = r.get("NetworkPolicy")["spec"]["egress"]
    dns, redis, upstream, listed = egress
    assert redis["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}}}]
    assert redis["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert upstream["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert upstream["ports"] == [{"port": 3000, "protocol": "TCP"}]
    assert listed == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}


def test_redis_by_ip_and_same_namespace_names():
    spec = policy({"config": {"cache": {"backend": "redis", "redis": {"url": "redis://10.1.2.3:6380/0"}}}})
    assert spec["egress"][1] == {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 6380, "protocol": "TCP"}]}
    spec = policy({"config": {"cache": {"backend": "redis", "redis": {"url": "redis://redis/0"}}}})
    assert spec["egress"][1] == {"to": [{"podSelector": {}}], "ports": [{"port": 6379, "protocol": "TCP"}]}


def test_external_redis_needs_explicit_peers():
    values = {"networkPolicy": {"enabled": True}, "config": {"cache": {"backend": "redis", "redis": {"url": "rediss://master.abc.euw1.cache.amazonaws.com:6379"}}}}
    assert "networkPolicy.redis.to" in render_error(values)
    values["networkPolicy"]["redis"] = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "port": 6379}
    r = render(values)
    validate_kubernetes(r)
    assert r.get("NetworkPolicy")["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_external_upstreams_are_not_guessed():
    spec = policy({"config": {"appGateway": {"apps": [{"name": "x", "upstream": "https://api.example.com"}]}}})
    assert len(spec["egress"]) == 1


def test_extra_cidrs_on_proxy_and_admin_ports():
    spec = policy({"networkPolicy": {"enabled": True, "ingressController": {"ipBlocks": ["10.0.0.0/16"]}, "monitoring": {"ipBlocks": ["10.0.0.0/16"]}}})
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in spec["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in spec["ingress"][1]["from"]


def test_in_cluster_upstream_idps_of_the_provider_are_derived():
    config = {
        "oidcProvider": {
            "issuer": "https://sso.example.com/idp",
            "upstreams": [
                {"name": "kc", "issuer": "http://keycloak.identity.svc:8080/realms/corp", "clientId": "o"},
                {"name": "entra", "issuer": "https://login.microsoftonline.com/t/v2.0", "clientId": "o"},
            ],
        }
    }
    spec = policy({"config": config})
    dns, keycloak = spec["egress"]
    assert keycloak["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "identity"}}}]
    assert keycloak["ports"] == [{"port": 8080, "protocol": "TCP"}]
