"""checkov on the rendered chart: no finding left unexplained. The findings the chart decides
against are skipped on the objects with their reasons (values.yaml explains each), and a digest
in image.digest clears CKV_K8S_43."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CHART_DIR, REPO_ROOT, load_values, render

# scripts/chart-tests.sh installs it into .venv-checkov (and says where in CHECKOV).
CHECKOV = Path(os.environ.get("CHECKOV", REPO_ROOT / ".venv-checkov" / "bin" / "checkov"))
DIGEST = "sha256:" + "a" * 64


def checkov(rendered, tmp_path):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(rendered.docs))
    out = subprocess.run([str(CHECKOV), "-f", str(path), "--framework", "kubernetes", "--compact", "-o", "json"],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    report = report[0] if isinstance(report, list) else report
    return report["results"]


def failed(results):
    return sorted(f"{f['check_id']} {f['resource']}" for f in results["failed_checks"])


@pytest.fixture(scope="module", autouse=True)
def installed():
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run scripts/chart-tests.sh (tests/chart/checkov-requirements.txt)")


@pytest.mark.parametrize("name", ["default", "networkpolicy", "ingress-alb", "gateway-envoy", "autoscaling"])
def test_no_unexplained_findings(name, tmp_path):
    values = load_values(CHART_DIR / "ci" / f"{name}-values.yaml")
    results = checkov(render(values), tmp_path)
    assert failed(results) == []
    skipped = {s["check_id"]: s["check_result"].get("suppress_comment", "") for s in results["skipped_checks"]}
    # Every skip says why.
    assert skipped and all(len(reason) > 20 for reason in skipped.values()), skipped


def test_a_digest_clears_the_digest_finding(tmp_path):
    results = checkov(render({"image": {"digest": DIGEST}}), tmp_path)
    assert failed(results) == []
    workload = [s for s in results["skipped_checks"] if s["resource"].startswith("StatefulSet.")]
    assert "CKV_K8S_43" not in {s["check_id"] for s in workload}
    assert {"CKV_K8S_11", "CKV_K8S_15"} <= {s["check_id"] for s in workload}


def test_the_skips_are_real_findings(tmp_path):
    """Without the chart's reasons checkov reports them: the skips are not blanket silence."""
    r = render()
    for doc in r.docs:
        for k in [k for k in (doc["metadata"].get("annotations") or {}) if k.startswith("checkov.io/skip")]:
            del doc["metadata"]["annotations"][k]
    ids = {f["check_id"] for f in checkov(r, tmp_path)["failed_checks"]}
    assert {"CKV_K8S_11", "CKV_K8S_15", "CKV_K8S_43"} <= ids


def test_the_release_step_pins_the_digest(tmp_path):
    """scripts/pin-image-digest.sh writes image.digest into values.yaml, and the chart then
    pulls by digest with nothing left for CKV_K8S_43."""
    script = REPO_ROOT / "scripts" / "pin-image-digest.sh"
    values = tmp_path / "values.yaml"
    values.write_text((CHART_DIR / "values.yaml").read_text())
    assert subprocess.run([str(script), "sha256:nope", str(values)], capture_output=True).returncode == 2
    subprocess.run([str(script), DIGEST, str(values)], check=True, capture_output=True)
    pinned = yaml.safe_load(values.read_text())
    assert pinned["image"]["digest"] == DIGEST
    r = render({"image": pinned["image"]})
    assert r.container()["image"].endswith("@" + DIGEST)
    results = checkov(r, tmp_path)
    assert failed(results) == []
    assert "CKV_K8S_43" not in {s["check_id"] for s in results["skipped_checks"]}
