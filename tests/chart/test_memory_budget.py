"""The memory budget: local gateway sessions, pending logins and the memory cache fit in 80% of
the memory limit; unset bounds are derived from it, bounds set too high fail the render."""

from conftest import render, render_error

MI = 1024 * 1024
GATEWAY = {"appGateway": {"apps": []}}


def budget(limit_mi):
    return limit_mi * MI * 80 // 100


def test_the_cache_alone_gets_the_budget():
    config = render().config()
    assert config["cache"]["memory"]["maxBytes"] == budget(512)
    assert "appGateway" not in config


def test_sessions_and_the_cache_share_it():
    config = render({"config": GATEWAY}).config()
    cache = config["cache"]["memory"]["maxBytes"]
    assert cache == budget(512) // 4
    entries = config["appGateway"]["session"]["maxEntries"]
    # What is left after the cache and the pending logins (32 MiB by default), 2 KiB a session.
    assert entries == (budget(512) - cache - 32 * MI) // 2048
    assert entries * 2048 + cache + 32 * MI <= budget(512)


def test_the_derived_bounds_follow_the_limit_and_the_session_size():
    big = render({"config": GATEWAY, "resources": {"limits": {"memory": "2Gi"}},
                  "memoryBudget": {"sessionBytes": 4096}}).config()
    assert big["cache"]["memory"]["maxBytes"] == budget(2048) // 4
    assert big["appGateway"]["session"]["maxEntries"] == (budget(2048) - budget(2048) // 4 - 32 * MI) // 4096


def test_shared_sessions_on_redis_leave_the_pod_nothing_to_bound():
    config = render({"config": {"appGateway": {"apps": [], "session": {"store": "shared"}},
                                "cache": {"backend": "redis", "redis": {"url": "redis://r:6379"}}}}).config()
    assert "memory" not in config["cache"]
    assert "maxEntries" not in config["appGateway"].get("session", {})


def test_bounds_that_do_not_fit_are_refused_with_the_numbers():
    message = render_error({"config": {"appGateway": {"apps": [], "session": {"maxEntries": 1_000_000}}}})
    assert "memory budget" in message and "maxEntries" in message and "512Mi" in message
    message = render_error({"config": {"cache": {"memory": {"maxBytes": 500 * MI}}}})
    assert "config.cache.memory.maxBytes" in message
    # Set so that they fit, they are kept as they are.
    config = render({"config": {"appGateway": {"apps": [], "session": {"maxEntries": 10_000}},
                                "cache": {"memory": {"maxBytes": 64 * MI}}}}).config()
    assert config["appGateway"]["session"]["maxEntries"] == 10_000
    assert config["cache"]["memory"]["maxBytes"] == 64 * MI


def test_limits_in_every_form_helm_reads():
    # A plain number reaches the template as a float; decimals with a unit are quantities too.
    for limit, byte_count in ((536870912, 512 * MI), ("1.5Gi", 1536 * MI), ("500M", 500_000_000)):
        config = render({"resources": {"limits": {"memory": limit}}}).config()
        assert config["cache"]["memory"]["maxBytes"] == byte_count * 80 // 100, limit


def test_a_limit_too_small_for_sessions_is_refused():
    message = render_error({"config": GATEWAY, "resources": {"limits": {"memory": "40Mi"}}})
    assert "fewer than 1000 local gateway sessions" in message
    assert "not a memory quantity" in render_error({"resources": {"limits": {"memory": "lots"}}})


def test_without_a_memory_limit_nothing_is_derived():
    config = render({"config": GATEWAY, "resources": {"limits": None}}).config()
    assert "memory" not in config["cache"]
    assert "maxEntries" not in config["appGateway"].get("session", {})
