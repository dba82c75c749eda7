"""Extension points platform teams need, with the schema still strict: extra env, volumes and
mounts (the Secrets Store CSI driver), init containers, extra objects, annotations for
Reloader, Service labels, a full topologySpreadConstraints list, revision history and the
StatefulSet canary partition."""

from conftest import FULLNAME, render, render_error, validate_kubernetes

CSI = {
    "name": "aws-secrets",
    "csi": {
        "driver": "secrets-store.csi.k8s.io",
        "readOnly": True,
        "volumeAttributes": {"secretProviderClass": "{{ .Release.Name }}-aws"},
    },
}
PROVIDER_CLASS = {
    "apiVersion": "secrets-store.csi.x-k8s.io/v1",
    "kind": "SecretProviderClass",
    "metadata": {"name": "{{ .Release.Name }}-aws"},
    "spec": {"provider": "aws", "parameters": {"objects": "- objectName: orchestrator/redis"}},
}


def test_extension_points_render_into_the_statefulset():
    values = {
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "{{ .Release.Name }}-orchestrator"}],
        "extraVolumes": [CSI],
        "extraVolumeMounts": [{"name": "aws-secrets", "mountPath": "/mnt/secrets", "readOnly": True}],
        "initContainers": [{"name": "wait", "image": "busybox:1.36", "command": ["true"]}],
        "statefulSetAnnotations": {"reloader.stakater.com/auto": "true"},
        "revisionHistoryLimit": 3,
        "updateStrategy": {"partition": 2},
        "replicaCount": 3,
        "config": {"cache": {"backend": "redis", "redis": {"url": "redis://redis:6379/0"}}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "{{ .Release.Name }}"}}}
        ],
        "service": {"labels": {"mesh": "on"}},
    }
    r = render(values)
    validate_kubernetes(r)
    sts = r.get("StatefulSet")
    annotations = {k: v for k, v in sts["metadata"]["annotations"].items() if not k.startswith("checkov.io/")}
    assert annotations == {"reloader.stakater.com/auto": "true"}
    assert sts["spec"]["revisionHistoryLimit"] == 3
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "OTEL_SERVICE_NAME", "value": "rel-orchestrator"} in container["env"], "templated"
    assert {"name": "aws-secrets", "mountPath": "/mnt/secrets", "readOnly": True} in container["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "aws-secrets")
    assert volume["csi"]["volumeAttributes"]["secretProviderClass"] == "rel-aws"
    assert pod["initContainers"][0]["name"] == "wait"
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "rel"}
    assert r.get("Service", FULLNAME)["metadata"]["labels"]["mesh"] == "on"


def test_extra_objects_are_rendered_with_the_release():
    r = render({"extraObjects": [PROVIDER_CLASS, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\n"]})
    assert r.get("SecretProviderClass")["metadata"]["name"] == "rel-aws"
    assert r.get("ConfigMap", "rel-extra")["metadata"]["name"] == "rel-extra"


def test_defaults_keep_the_statefulset_as_it_was():
    sts = render().get("StatefulSet")
    # Only checkov's skips with their reasons (test_checkov.py).
    assert all(k.startswith("checkov.io/skip") for k in sts["metadata"]["annotations"])
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert "env" not in sts["spec"]["template"]["spec"]["containers"][0]
    assert "initContainers" not in sts["spec"]["template"]["spec"]


def test_the_schema_stays_strict():
    assert "additional properties" in render_error({"extraEnvs": []}).lower() or "extraEnvs" in render_error({"extraEnvs": []})
    assert "name" in render_error({"extraEnv": [{"value": "x"}]})


def test_each_pod_signing_its_own_assertions_is_refused():
    config = {
        "appGateway": {
            "identityProviders": [{"name": "i", "issuer": "https://idp.example.com", "clientId": "c"}],
            "apps": [{"name": "grafana", "identityProvider": "i", "upstream": "http://grafana:3000",
                      "assertionHeader": "X-Assertion"}],
        }
    }
    message = render_error({"replicaCount": 2, "ingress": {"stickiness": "nginx"}, "config": config})
    assert "assertionSigningKeys" in message and "grafana" in message


def test_the_provider_on_redis_without_keys_is_refused():
    config = {
        "cache": {"backend": "redis", "redis": {"url": "redis://redis:6379/0"}},
        "oidcProvider": {"issuer": "https://sso.example.com/idp"},
    }
    assert "signingKeys" in render_error({"config": config})
