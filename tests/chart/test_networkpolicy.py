"""NetworkPolicy: ingress from the ingress controller (proxy port) and monitoring (admin port),
egress to DNS, Redis, upstreams and the listed CIDRs only."""

from conftest import render, render_ci, render_error, validate_kubernetes


def policy(values):
    r = render({"networkPolicy": {"enabled": True}, **values})
    validate_kubernetes(r)
    return r.get("NetworkPolicy")["spec"]


def test_permissive_by_default():
    r = render()
    validate_kubernetes(r)
    spec = r.get("NetworkPolicy")["spec"]
    # Ingress only: egress is not restricted.
    assert spec["policyTypes"] == ["Ingress"]
    others, admin = spec["ingress"]
    # Every port but the admin port from anywhere: the proxy port, and a mesh's own.
    # The proxy port is named as well, for CNIs that read a range as its first port.
    assert others == {"ports": [{"port": "http", "protocol": "TCP"},
                                {"port": 1, "endPort": 9089, "protocol": "TCP"},
                                {"port": 9091, "endPort": 65535, "protocol": "TCP"},
                                {"port": 1, "endPort": 65535, "protocol": "UDP"}]}
    # The admin port (metrics, the admin API) only from the cluster's pods, and Istio
    # ambient's probes.
    assert admin == {"ports": [{"port": "admin", "protocol": "TCP"}],
                     "from": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "169.254.7.127/32"}}]}
    assert not render({"networkPolicy": {"permissive": False}}).has("NetworkPolicy")


def test_permissive_admits_health_checks_from_outside_behind_an_alb():
    from conftest import with_trusted_proxies
    hosts = [{"host": "a.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]
    for ingress in ({"className": "alb"}, {"className": "internal-alb", "controller": "other", "stickiness": "alb"}):
        r = render(with_trusted_proxies({"ingress": {"enabled": True, "hosts": hosts, **ingress}}))
        admin = r.get("NetworkPolicy")["spec"]["ingress"][1]
        assert "from" not in admin, ingress
        # And the ALB's deregistration is allowed for, whichever way the ALB was chosen.
        assert r.config()["shutdown"]["delay"] == "15s"


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


EXTERNAL = {"appGateway": {"apps": [{"name": "x", "upstream": "https://api.example.com"}]}}


def test_external_hosts_are_not_guessed_and_refused_unless_covered():
    message = render_error({"networkPolicy": {"enabled": True}, "config": EXTERNAL})
    assert "api.example.com" in message and "hosts:" in message and "networkPolicy.fqdn" in message
    # Covered by a listed CIDR that says so, the host gets no rule of its own.
    listed = {"cidr": "198.51.100.0/24", "ports": [443], "hosts": ["api.example.com"]}
    spec = policy({"networkPolicy": {"enabled": True, "egress": [listed]}, "config": EXTERNAL})
    assert spec["egress"][1:] == [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]
    anything = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"], "ports": [443], "hosts": ["*"]}
    assert len(policy({"networkPolicy": {"enabled": True, "egress": [anything]}, "config": EXTERNAL})["egress"]) == 2


FQDN_CONFIG = {
    "cache": {"backend": "redis", "redis": {"url": "rediss://master.abc.euw1.cache.amazonaws.com:6380"}},
    "appGateway": {
        "session": {"store": "shared"},
        "identityProviders": [{"name": "corp", "issuer": "https://login.example.com/", "clientId": "o"}],
        "apps": [{"name": "x", "upstream": "https://api.example.com"}, {"name": "y", "upstream": "http://wiki.apps.svc:8080"}],
    },
}


def test_cilium_fqdn_policy_allows_external_hosts_by_name():
    r = render({"networkPolicy": {"enabled": True, "fqdn": "cilium"}, "config": FQDN_CONFIG})
    validate_kubernetes(r)
    cnp = r.get("CiliumNetworkPolicy")
    assert cnp["apiVersion"] == "cilium.io/v2"
    assert cnp["spec"]["endpointSelector"]["matchLabels"] == {"app.kubernetes.io/name": "orchestrator", "app.kubernetes.io/instance": "rel"}
    dns, *names = cnp["spec"]["egress"]
    # DNS through Cilium's proxy, which is how it learns what the names resolve to.
    assert dns["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}
    assert dns["toEndpoints"][0]["matchLabels"] == {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}
    by_port = {rule["toPorts"][0]["ports"][0]["port"]: sorted(f["matchName"] for f in rule["toFQDNs"]) for rule in names}
    assert by_port == {"443": ["api.example.com", "login.example.com"], "6380": ["master.abc.euw1.cache.amazonaws.com"]}
    # The in-cluster upstream stays a NetworkPolicy rule.
    egress = r.get("NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]} in egress


def test_calico_fqdn_policy_allows_external_hosts_by_domain():
    r = render({"networkPolicy": {"enabled": True, "fqdn": "calico"}, "config": FQDN_CONFIG})
    validate_kubernetes(r)
    (calico,) = [d for d in r.all("NetworkPolicy") if d["apiVersion"] == "projectcalico.org/v3"]
    spec = calico["spec"]
    assert spec["selector"] == "app.kubernetes.io/name == 'orchestrator' && app.kubernetes.io/instance == 'rel'"
    assert spec["types"] == ["Egress"]
    rules = {r_["destination"]["ports"][0]: sorted(r_["destination"]["domains"]) for r_ in spec["egress"]}
    assert rules == {443: ["api.example.com", "login.example.com"], 6380: ["master.abc.euw1.cache.amazonaws.com"]}
    assert all(r_["action"] == "Allow" and r_["protocol"] == "TCP" for r_ in spec["egress"])


def test_no_fqdn_policy_when_every_host_is_derived():
    r = render({"networkPolicy": {"enabled": True, "fqdn": "cilium"}})
    assert not r.has("CiliumNetworkPolicy")


def test_redis_cluster_needs_explicit_peers():
    cluster = {"cache": {"backend": "redis", "redis": {"clusterUrls": ["redis://10.0.42.1:7000", "redis://10.0.42.2:7000"]}}}
    message = render_error({"networkPolicy": {"enabled": True}, "config": cluster})
    assert "clusterUrls" in message and "networkPolicy.redis.to" in message
    spec = policy({"networkPolicy": {"enabled": True, "redis": {"to": [{"ipBlock": {"cidr": "10.0.42.0/24"}}]}}, "config": cluster})
    assert spec["egress"][1] == {"to": [{"ipBlock": {"cidr": "10.0.42.0/24"}}], "ports": [{"port": 7000, "protocol": "TCP"}]}


def test_load_balancers_outside_the_cluster_need_ip_blocks():
    from conftest import with_trusted_proxies
    alb = with_trusted_proxies({"networkPolicy": {"enabled": True},
                                "ingress": {"enabled": True, "className": "alb", "hosts": [{"host": "a.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]}})
    message = render_error(alb)
    assert "ALB" in message and "ingressController.ipBlocks" in message and "monitoring.ipBlocks" in message
    alb["networkPolicy"].update({"ingressController": {"ipBlocks": ["10.0.0.0/16"]}, "monitoring": {"ipBlocks": ["10.0.0.0/16"]}})
    validate_kubernetes(render(alb))
    gke = with_trusted_proxies({"networkPolicy": {"enabled": True},
                                "httpRoute": {"enabled": True, "controller": "gke", "parentRefs": [{"name": "gw"}], "hostnames": ["a.example.com"]}})
    assert "35.191.0.0/16" in render_error(gke)


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
    listed = {"cidr": "20.190.128.0/18", "ports": [443], "hosts": ["login.microsoftonline.com", "sso.example.com"]}
    spec = policy({"networkPolicy": {"enabled": True, "egress": [listed]}, "config": config})
    dns, keycloak, entra = spec["egress"]
    assert keycloak["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "identity"}}}]
    assert keycloak["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_external_hosts_of_the_issuers_endpoints_are_checked_and_allowed():
    google = {"appGateway": {"identityProviders": [{"name": "g", "issuer": "https://accounts.google.com", "clientId": "o"}]}}
    listed = {"cidr": "142.250.0.0/15", "ports": [443], "hosts": ["accounts.google.com"]}
    values = {"networkPolicy": {"enabled": True, "egress": [listed], "externalHosts": ["oauth2.googleapis.com", "www.googleapis.com:443"]},
              "config": google}
    message = render_error(values)
    assert "oauth2.googleapis.com" in message and "www.googleapis.com" in message
    values["networkPolicy"]["fqdn"] = "cilium"
    cnp = render(values).get("CiliumNetworkPolicy")
    names = sorted(f["matchName"] for rule in cnp["spec"]["egress"][1:] for f in rule["toFQDNs"])
    assert names == ["accounts.google.com", "oauth2.googleapis.com", "www.googleapis.com"]
