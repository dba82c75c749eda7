"""metrics.serviceMonitor: a Prometheus Operator ServiceMonitor on the admin port instead of
scrape annotations. (No Kubernetes schema for the CRD: its fields are asserted here.)"""

from conftest import NAMESPACE, render_ci, validate_kubernetes


def test_servicemonitor():
    r = render_ci("servicemonitor")
    validate_kubernetes(r)
    sm = r.get("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "orchestrator", "app.kubernetes.io/instance": "rel"}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "scheme": "http", "interval": "15s", "scrapeTimeout": "5s"}]
    # Only the headless Service has a port named admin, so only it is scraped.
    ports = {s["metadata"]["name"]: [p["name"] for p in s["spec"]["ports"]] for s in r.all("Service")}
    assert [name for name, names in ports.items() if "admin" in names] == ["rel-orchestrator-headless"]


def test_no_scrape_annotations_with_servicemonitor():
    annotations = render_ci("servicemonitor").statefulset()["spec"]["template"]["metadata"].get("annotations") or {}
    assert not any(k.startswith("prometheus.io/") for k in annotations)
