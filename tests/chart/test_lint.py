"""`helm lint --strict` is clean, for the defaults and every ci/ example; values.yaml documents
every key."""

import re

import helm_python as helm
import pytest

from conftest import CHART_DIR, CI_VALUES, load_values


def assert_clean(report):
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], report


def test_lint_strict_defaults():
    assert_clean(helm.lint(str(CHART_DIR), strict=True))


@pytest.mark.parametrize("kube_version", ["v1.24.0", "v1.37.0"])
def test_lint_strict_across_kubernetes_versions(kube_version):
    assert_clean(helm.lint(str(CHART_DIR), strict=True, kube_version=kube_version))


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict_ci_values(path):
    assert_clean(helm.lint(str(CHART_DIR), load_values(path), strict=True))


def test_every_values_key_has_a_comment_right_above():
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    key = re.compile(r"^\s*(- )?[A-Za-z0-9_.\-/]+:(\s|$)")
    undocumented = [
        f"values.yaml:{n + 1}: {line.strip()}"
        for n, line in enumerate(lines)
        if key.match(line) and not (n > 0 and lines[n - 1].strip().startswith("#"))
    ]
    assert not undocumented, "\n".join(undocumented)


def test_chart_metadata():
    with helm.Chart.load(str(CHART_DIR)) as chart:
        meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
