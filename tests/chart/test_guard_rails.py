"""Impossible combinations fail the render with a message that says what to set."""

import pytest

from conftest import render, render_ci, render_error

PROVIDER = {"oidcProvider": {"issuer": "https://sso.example.com/idp"}}
SHARED = {"appGateway": {"session": {"store": "shared"}}}
REDIS = {"cache": {"backend": "redis", "redis": {"url": "redis://redis-master.redis.svc:6379/0"}}}
KEY = {"id": "k", "algorithm": "ES256", "privateKey": "${secret:oidc-signing-key.pem}"}


@pytest.mark.parametrize("scale", [{"replicaCount": 2}, {"autoscaling": {"enabled": True}}], ids=["replicas", "autoscaling"])
@pytest.mark.parametrize("state", [PROVIDER, SHARED], ids=["oidc-provider", "shared-sessions"])
@pytest.mark.parametrize("cache", [{}, {"cache": {"backend": "memory"}}], ids=["backend-unset", "backend-memory"])
def test_shared_state_on_many_replicas_needs_redis(scale, state, cache):
    message = render_error({**scale, "config": {**state, **cache}})
    assert "config.cache.backend: redis" in message
    assert "replicaCount" in message


@pytest.mark.parametrize("scale", [{"replicaCount": 3}, {"autoscaling": {"enabled": True}}], ids=["replicas", "autoscaling"])
@pytest.mark.parametrize("state", [PROVIDER, SHARED], ids=["oidc-provider", "shared-sessions"])
def test_redis_makes_it_pass(scale, state):
    if state is PROVIDER:
        # Replicas on Redis sign with shared keys (without them, refused: see below).
        state = {"oidcProvider": {**PROVIDER["oidcProvider"], "signingKeys": [KEY]}}
    r = render({**scale, "config": {**state, **REDIS}, "secrets": {"existingSecret": "orchestrator"}})
    assert r.config()["cache"]["backend"] == "redis"


def test_one_replica_with_memory_is_fine():
    assert render({"config": {**PROVIDER, **SHARED}}).has("StatefulSet")


def test_local_sessions_without_provider_may_scale_on_memory():
    assert render({"replicaCount": 3, "config": {"appGateway": {"session": {"store": "local"}}}}).has("StatefulSet")


def test_ci_redis_replicas_example_passes():
    r = render_ci("redis-replicas")
    assert r.statefulset()["spec"]["replicas"] == 3


def test_redis_backend_needs_a_url():
    assert "config.cache.redis.url" in render_error({"config": {"cache": {"backend": "redis"}}})


@pytest.mark.parametrize("key", ["listen", "admin"])
def test_loopback_listeners_fail(key):
    message = render_error({"config": {key: {"address": "127.0.0.1:8080" if key == "listen" else "127.0.0.1:9090"}}})
    assert f"config.{key}.address" in message


def test_same_port_for_proxy_and_admin_fails():
    assert "same port" in render_error({"config": {"admin": {"address": "0.0.0.0:8080"}}})


def test_latest_tag_is_refused():
    assert "latest" in render_error({"image": {"tag": "latest"}})


def test_min_above_max_replicas_fails():
    assert "minReplicas" in render_error({"autoscaling": {"enabled": True, "minReplicas": 6, "maxReplicas": 5}})
