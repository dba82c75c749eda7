"""Shared helpers for the chart tests: render with Helm's own engine, validate against the
Kubernetes schemas, look objects up.

Rendering uses helm-python-sdk, which embeds Helm v4 (no helm binary, no cluster, no network).
Validation uses kubernetes-validate in strict mode (unknown fields are errors) against the
oldest and the newest Kubernetes version it ships.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "orchestrator"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))

RELEASE = "rel"
NAMESPACE = "ns"
FULLNAME = "rel-orchestrator"

# The oldest and newest versions kubernetes-validate 1.37.0 ships schemas for.
KUBE_VERSIONS = ("1.25", "1.37")

# Custom resources: kubernetes-validate has no schema for them, their fields are asserted
# by the tests of the feature instead.
CRD_KINDS = {
    "ServiceMonitor", "PrometheusRule", "Certificate",
    # Gateway API and the controllers' policies: validate_gateway_api checks them.
    "HTTPRoute", "ReferenceGrant", "GCPBackendPolicy", "HealthCheckPolicy", "SecurityPolicy",
    # AWS Load Balancer Controller: no schema package exists; its tests assert the fields.
    "TargetGroupConfiguration",
}
# API groups of CNI policies (their kinds may clash with Kubernetes' own, e.g. Calico's
# NetworkPolicy): asserted by their tests.
CRD_GROUPS = ("cilium.io/", "projectcalico.org/")

# Validators generated from the Gateway API (v1.5, experimental channel), Envoy Gateway and GKE
# CRD schemas, installed by scripts/chart-tests.sh (npm ci) from the @kubernetes-models packages.
GATEWAY_API_DIR = Path(__file__).resolve().parent / "gateway-api"
GATEWAY_API_GROUPS = ("gateway.networking.k8s.io/", "gateway.envoyproxy.io/", "networking.gke.io/")


@functools.cache
def chart() -> helm.Chart:
    """The chart, loaded once (Chart handles are immutable and shareable)."""
    return helm.Chart.load(str(CHART_DIR))


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


class Rendered:
    """The manifests of one render, parsed, with lookups by kind and name."""

    def __init__(self, manifests: dict[str, str]):
        self.notes = ""
        self.docs: list[dict[str, Any]] = []
        self.sources: list[str] = []
        for template, text in sorted(manifests.items()):
            if template.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.docs.append(doc)
                    self.sources.append(template)

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}: {self.kinds()}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    def statefulset(self) -> dict[str, Any]:
        return self.get("StatefulSet")

    def container(self) -> dict[str, Any]:
        return self.statefulset()["spec"]["template"]["spec"]["containers"][0]

    def config(self) -> dict[str, Any]:
        """The orchestrator config as rendered into the ConfigMap."""
        cm = self.get("ConfigMap", f"{FULLNAME}-config")
        return yaml.safe_load(cm["data"]["orchestrator.yaml"])


def render(values: dict[str, Any] | None = None, **opts: Any) -> Rendered:
    opts.setdefault("name", RELEASE)
    opts.setdefault("namespace", NAMESPACE)
    return Rendered(chart().render(values or {}, **opts))


def render_ci(name: str) -> Rendered:
    return render(load_values(CHART_DIR / "ci" / f"{name}-values.yaml"))


def render_error(values: dict[str, Any]) -> str:
    """Render expecting a failure; returns the error message."""
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def validate_kubernetes(rendered: Rendered) -> None:
    """Every manifest is valid (strict: no unknown fields) for the oldest and newest Kubernetes."""
    for doc, source in zip(rendered.docs, rendered.sources):
        if doc["kind"] in CRD_KINDS or doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                pytest.fail(f"{source}: {doc['kind']} invalid for Kubernetes {version} at {path}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                pytest.fail(f"{source}: {err.message} (not a known CRD either)")


def validate_gateway_api(rendered: Rendered | list[dict[str, Any]]) -> int:
    """Every Gateway API, Envoy Gateway and GKE object is valid against its CRD schema; returns
    how many were checked. Also takes a list of objects; a part of one (a filter, say) is checked
    as {"apiVersion": ..., "kind": <its model, e.g. HTTPExternalAuthFilter>, **fields}."""
    import json
    import subprocess
    all_docs = rendered if isinstance(rendered, list) else rendered.docs
    docs = [d for d in all_docs if d["apiVersion"].startswith(GATEWAY_API_GROUPS)]
    if not docs:
        return 0
    if not (GATEWAY_API_DIR / "node_modules").is_dir():
        pytest.fail(f"{GATEWAY_API_DIR}/node_modules is missing: run scripts/chart-tests.sh (npm ci)")
    out = subprocess.run(["node", "validate.mjs"], cwd=GATEWAY_API_DIR, input=json.dumps(docs),
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"Gateway API validation failed:\n{out.stdout}{out.stderr}")
    return len(docs)


@functools.cache
def model_fields(package: str, path: str) -> frozenset[str]:
    """The field names of a @kubernetes-models type, read from its TypeScript declaration
    (the validators accept unknown fields; this is what catches a misspelt one)."""
    import re
    text = (GATEWAY_API_DIR / "node_modules" / "@kubernetes-models" / package / f"{path}.d.ts").read_text()
    # The class lists every field, inherited ones too (the interface may extend another).
    block = re.search(r"export declare class \w+ extends Model<[^{]*\{(.*?)\n\}", text, re.S)
    assert block, f"no model class in {package}/{path}.d.ts"
    return frozenset(re.findall(r'^\s*"([A-Za-z0-9]+)"\??:', block.group(1), re.M))


TRUSTED = ["10.42.0.0/16"]


def with_trusted_proxies(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with config.listen.trustedProxies set (an Ingress needs it), unless it is."""
    import copy
    out = copy.deepcopy(values)
    listen = out.setdefault("config", {}).setdefault("listen", {})
    listen.setdefault("trustedProxies", TRUSTED)
    return out
