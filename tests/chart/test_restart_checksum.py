"""checksum/restart-config: the pods roll when a key that only a restart applies changes (cache,
listen address and limits, session store, log format, traces...), and do not when a hot-reloaded
key changes (apps, policies, log level), which the orchestrator reloads in place."""

import pytest

from conftest import render

BASE = {
    "config": {
        "log": {"level": "info"},
        "cache": {"backend": "memory"},
        "appGateway": {
            "identityProviders": [{"name": "corp", "issuer": "https://idp.example.com", "clientId": "gw"}],
            "apps": [{"name": "wiki", "host": "wiki.example.com", "upstream": "http://wiki:80", "identityProvider": "corp"}],
        },
    }
}


def checksum(values) -> str:
    return render(values).statefulset()["spec"]["template"]["metadata"]["annotations"]["checksum/restart-config"]


def changed(path, value):
    import copy
    values = copy.deepcopy(BASE)
    node = values
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return values


def test_always_there():
    assert len(checksum(BASE)) == 64


@pytest.mark.parametrize("path,value", [
    (["config", "cache"], {"backend": "redis", "redis": {"url": "redis://r:6379"}}),
    (["config", "listen"], {"address": "0.0.0.0:8443"}),
    (["config", "listen", "maxConnections"], 500),
    (["config", "log", "format"], "text"),
    (["config", "traces"], {"endpoint": "http://otel:4318"}),
    (["config", "appGateway", "session"], {"maxEntries": 5000}),
    (["config", "appGateway", "pendingLoginTtl"], "5m"),
    (["config", "secretsDir"], "/run/secrets"),
])
def test_restart_only_keys_roll_the_pods(path, value):
    assert checksum(changed(path, value)) != checksum(BASE), path


@pytest.mark.parametrize("path,value", [
    (["config", "log", "level"], "debug"),
    (["config", "appGateway", "apps"], [{"name": "wiki", "host": "wiki.example.com", "upstream": "http://wiki:8080", "identityProvider": "corp", "policy": {"allowGroups": ["eng"]}}]),
    (["config", "listen", "trustedProxies"], ["10.0.0.0/8"]),
])
def test_hot_reloaded_keys_do_not(path, value):
    assert checksum(changed(path, value)) == checksum(BASE), path
