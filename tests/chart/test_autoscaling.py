"""autoscaling.enabled: an autoscaling/v2 HPA on the StatefulSet, which then has no replicas."""

from conftest import FULLNAME, render, render_ci, validate_kubernetes


def test_off_by_default():
    assert not render().has("HorizontalPodAutoscaler")


def test_hpa_defaults():
    r = render({"autoscaling": {"enabled": True}})
    validate_kubernetes(r)
    hpa = r.get("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": FULLNAME}
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    # The HPA owns the replica count: a `replicas` field would fight it on every upgrade.
    assert "replicas" not in r.statefulset()["spec"]


def test_memory_target_and_behavior():
    r = render(
        {
            "autoscaling": {
                "enabled": True,
                "targetMemoryUtilizationPercentage": 80,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
            }
        }
    )
    validate_kubernetes(r)
    hpa = r.get("HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_ci_example():
    r = render_ci("autoscaling")
    validate_kubernetes(r)
    assert r.has("HorizontalPodAutoscaler")


def test_local_sessions_scale_down_one_pod_per_five_minutes_by_default():
    values = {
        "autoscaling": {"enabled": True},
        "config": {
            "cache": {"backend": "redis", "redis": {"url": "redis://r:6379"}},
            "appGateway": {"session": {"store": "local"},
                           "identityProviders": [{"name": "corp", "issuer": "https://idp.example.com", "clientId": "gw"}],
                           "apps": [{"name": "wiki", "host": "wiki.example.com", "upstream": "http://wiki:80", "identityProvider": "corp"}]},
        },
    }
    hpa = render(values).get("HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}
    # Shared sessions: nothing is lost with a pod, the default HPA behaviour stays.
    values["config"]["appGateway"]["session"]["store"] = "shared"
    assert "behavior" not in render(values).get("HorizontalPodAutoscaler")["spec"]
    # A behaviour of one's own wins.
    values["config"]["appGateway"]["session"]["store"] = "local"
    values["autoscaling"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    assert render(values).get("HorizontalPodAutoscaler")["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 60}}
