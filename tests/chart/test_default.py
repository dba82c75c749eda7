"""The default render: what a plain `helm install` creates."""

from conftest import FULLNAME, NAMESPACE, RELEASE, render, validate_kubernetes

SELECTOR = {"app.kubernetes.io/name": "orchestrator", "app.kubernetes.io/instance": RELEASE}


def test_default_kinds():
    r = render()
    # The NetworkPolicy is the permissive one (networkPolicy.permissive).
    assert r.kinds() == ["ConfigMap", "NetworkPolicy", "Pod", "Service", "Service", "ServiceAccount", "StatefulSet"]


def test_default_is_valid_kubernetes():
    validate_kubernetes(render())


def test_every_object_has_the_standard_labels_and_namespace():
    r = render()
    for doc in r.docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "orchestrator-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_statefulset_shape():
    sts = render().statefulset()
    spec = sts["spec"]
    assert sts["metadata"]["name"] == FULLNAME
    assert spec["serviceName"] == f"{FULLNAME}-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["replicas"] == 1
    assert spec["selector"]["matchLabels"] == SELECTOR
    for key, value in SELECTOR.items():
        assert spec["template"]["metadata"]["labels"][key] == value


def test_services_and_ports():
    r = render()
    svc = r.get("Service", FULLNAME)
    assert svc["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in svc["spec"]
    assert svc["spec"]["selector"] == SELECTOR
    # The ingress-facing Service carries the proxy port only: the admin port is never routable.
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("http", 80, "http")]

    headless = r.get("Service", f"{FULLNAME}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == SELECTOR
    assert [(p["name"], p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [
        ("http", 8080, "http"),
        ("admin", 9090, "admin"),
    ]

    ports = {p["name"]: p["containerPort"] for p in r.container()["ports"]}
    assert ports == {"http": 8080, "admin": 9090}


def test_probes_on_the_admin_port():
    c = render().container()
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert c[probe]["httpGet"] == {"path": path, "port": "admin"}, probe


def test_args_and_mount_layout():
    r = render()
    c = r.container()
    assert c["args"] == ["run", "--config", "/etc/orchestrator/config/orchestrator.yaml"]
    assert "env" not in c and "envFrom" not in c
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert set(mounts) == {"/etc/orchestrator/config", "/etc/orchestrator/secrets", "/tmp"}
    # Whole directories: subPath mounts never see the ConfigMap's atomic ..data swap.
    assert all("subPath" not in m for m in c["volumeMounts"])
    assert mounts["/etc/orchestrator/config"]["readOnly"] is True
    assert mounts["/etc/orchestrator/secrets"]["readOnly"] is True
    volumes = {v["name"]: v for v in r.statefulset()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"{FULLNAME}-config"
    # No secret referenced: an empty directory stands in for the Secret.
    assert "emptyDir" in volumes["secrets"]


def test_rendered_config_gets_the_pod_settings():
    config = render().config()
    assert config["listen"]["address"] == "0.0.0.0:8080"
    assert config["admin"]["address"] == "0.0.0.0:9090"
    assert config["secretsDir"] == "/etc/orchestrator/secrets"
    assert config["log"] == {"format": "json", "level": "info"}
    # The memory cache is bounded by the pod's memory limit: 80% of 512Mi.
    assert config["cache"] == {"backend": "memory", "memory": {"maxBytes": 512 * 1024 * 1024 * 80 // 100}}
    assert "oidcProvider" not in config and "appGateway" not in config


def test_user_settings_win_over_the_chart_defaults():
    r = render({"config": {"log": {"format": "text"}, "admin": {"address": "0.0.0.0:9100"}}})
    assert r.config()["log"]["format"] == "text"
    assert {p["name"]: p["containerPort"] for p in r.container()["ports"]}["admin"] == 9100
    assert r.get("Service", f"{FULLNAME}-headless")["spec"]["ports"][1]["port"] == 9100


def test_security_context():
    r = render()
    pod = r.statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = r.container()["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532 and sc["runAsGroup"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_service_account_without_token():
    r = render()
    sa = r.get("ServiceAccount")
    assert sa["metadata"]["name"] == FULLNAME
    assert sa["automountServiceAccountToken"] is False
    pod = r.statefulset()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is False


def test_resources():
    assert render().container()["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_image_defaults_to_app_version_and_never_latest():
    r = render()
    assert r.container()["image"] == "registry.example.com/platform/orchestrator:0.1.0"
    digest = "sha256:" + "ab" * 32
    r = render({"image": {"tag": "1.2.3", "digest": digest}})
    assert r.container()["image"] == f"registry.example.com/platform/orchestrator:1.2.3@{digest}"


def test_default_anti_affinity_is_preferred_per_node():
    pod = render().statefulset()["spec"]["template"]["spec"]
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == SELECTOR
    assert "topologySpreadConstraints" not in pod


def test_scheduling_passthrough_and_zone_spread():
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "auth", "effect": "NoSchedule"}],
        "priorityClassName": "platform-critical",
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "topologySpread": {"enabled": True},
        "podAntiAffinityPreset": "hard",
    }
    r = render(values)
    validate_kubernetes(r)
    template = r.statefulset()["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["priorityClassName"] == "platform-critical"
    assert template["metadata"]["annotations"]["example.com/team"] == "platform"
    assert template["metadata"]["labels"]["team"] == "platform"
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
        }
    ]
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"


def test_scrape_annotations_without_servicemonitor():
    annotations = render().statefulset()["spec"]["template"]["metadata"]["annotations"]
    # Besides the restart-only checksum (tests/chart/test_restart_checksum.py).
    assert annotations.pop("checksum/restart-config")
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"}


def test_termination_grace_covers_shutdown_delay_and_drain():
    # 2s delay + 20s drain (the defaults) + 10s margin.
    assert render().statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 32


def test_helm_test_pod_probes_readyz_with_the_orchestrator_image():
    r = render()
    pod = r.get("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == r.container()["image"]
    assert c["args"] == ["probe", "--url", f"http://{FULLNAME}-headless.{NAMESPACE}.svc:9090/readyz"]
    assert "command" not in c
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # Not selected by the Services (or the NetworkPolicy) of the release.
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] != "orchestrator"


def test_notes_tell_how_to_reach_and_check_readiness():
    notes = render().notes
    assert f"port-forward service/{FULLNAME} " in notes
    assert "/readyz" in notes
    assert f"helm test {RELEASE}" in notes


def test_long_release_names_stay_within_kubernetes_limits():
    r = render(name="a-very-long-release-name-that-goes-on-and-on-and-on-for-ever-and-ever")
    validate_kubernetes(r)
    for doc in r.docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
    # The controller adds `controller-revision-hash: <name>-<10 chars>` to each pod.
    assert len(r.statefulset()["metadata"]["name"]) <= 52


def test_openshift_lets_the_scc_choose_the_uid():
    """The README's OpenShift values: null removes the fixed IDs, the rest stays hardened."""
    r = render(
        {
            "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
            "containerSecurityContext": {"runAsUser": None, "runAsGroup": None},
        }
    )
    validate_kubernetes(r)
    pod = r.statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    sc = r.container()["securityContext"]
    assert "runAsUser" not in sc and sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
