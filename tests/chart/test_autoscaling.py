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
