"""The config the chart renders into its ConfigMap is one the orchestrator accepts:
`$ORCHESTRATOR_BIN validate --config FILE` with stand-in files for every `${secret:NAME}`.

The binary comes from the Rust build (e.g. ORCHESTRATOR_BIN=target/debug/orchestrator). Without
it the test is skipped locally and fails under CI, so CI can never pass without running it.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from conftest import CI_VALUES, FULLNAME, load_values, render

SECRET_REF = re.compile(r"\$\{secret:([^}]+)\}")


@pytest.fixture(scope="session")
def orchestrator_bin() -> str:
    path = os.environ.get("ORCHESTRATOR_BIN")
    if not path:
        message = "ORCHESTRATOR_BIN is not set: build the binary and point ORCHESTRATOR_BIN at it (e.g. target/debug/orchestrator)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not os.access(path, os.X_OK):
        pytest.fail(f"ORCHESTRATOR_BIN={path} is not an executable file")
    return path


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def signing_key(algorithm: str) -> str:
    """A PKCS#8 PEM private key of the kind `orchestrator keys generate` prints."""
    if algorithm == "ES256":
        return pem(ec.generate_private_key(ec.SECP256R1()))
    if algorithm == "RS256":
        return pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if algorithm == "EdDSA":
        return pem(ed25519.Ed25519PrivateKey.generate())
    raise AssertionError(f"unknown signing algorithm {algorithm}")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orchestrator.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("orchestrator.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_text(pem(key))
    return cert_file, key_file


def stand_in_secrets(config: dict[str, Any]) -> dict[str, str]:
    """A plausible value for every referenced secret: real keys for signing keys (the binary
    parses them), random strings for the rest."""
    values: dict[str, str] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, (*path, key))
        elif isinstance(node, list):
            for child in node:
                walk(child, path)
        elif isinstance(node, str):
            for name in SECRET_REF.findall(node):
                if path[-1] == "privateKey":
                    values.setdefault(name, "")
                else:
                    values.setdefault(name, secrets.token_urlsafe(24))

    walk(config, ())
    for section in ((config.get("oidcProvider") or {}).get("signingKeys") or []) + (
        (config.get("appGateway") or {}).get("assertionSigningKeys") or []
    ):
        match = SECRET_REF.fullmatch(section.get("privateKey", ""))
        if match:
            values[match.group(1)] = signing_key(section["algorithm"])
    assert all(values.values()), f"no stand-in for {[k for k, v in values.items() if not v]}"
    return values


def validate_rendered(rendered, tmp_path: Path, orchestrator_bin: str) -> subprocess.CompletedProcess:
    """`orchestrator validate` on the rendered config, its mounts moved under `tmp_path`."""
    config = rendered.config()

    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in stand_in_secrets(config).items():
        (secrets_dir / name).write_text(value + "\n")
    # Only the mount points move: everything else is checked as rendered.
    assert config["secretsDir"] == "/etc/orchestrator/secrets"
    config["secretsDir"] = str(secrets_dir)
    tls = config.get("listen", {}).get("tls")
    if tls:
        assert tls == {"certFile": "/etc/orchestrator/tls/tls.crt", "keyFile": "/etc/orchestrator/tls/tls.key"}
        cert_file, key_file = self_signed(tmp_path)
        config["listen"]["tls"] = {"certFile": str(cert_file), "keyFile": str(key_file)}

    templates_dir = (config.get("ui") or {}).get("templatesDir")
    if templates_dir:
        assert templates_dir == "/etc/orchestrator/templates"
        config["ui"]["templatesDir"] = str(materialise_templates(rendered, tmp_path))
    return validate(config, tmp_path, orchestrator_bin)


def materialise_templates(rendered, tmp_path: Path) -> Path:
    """The templates ConfigMap as the kubelet mounts it: one file per key."""
    directory = tmp_path / "templates"
    directory.mkdir()
    for name, text in rendered.get("ConfigMap", f"{FULLNAME}-templates")["data"].items():
        (directory / name).write_text(text)
    return directory


def validate(config: dict[str, Any], tmp_path: Path, orchestrator_bin: str) -> subprocess.CompletedProcess:
    config_file = tmp_path / "orchestrator.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_") or k == "ORCHESTRATOR_BIN"}
    return subprocess.run(
        [orchestrator_bin, "validate", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.name)
def test_rendered_config_passes_orchestrator_validate(path, tmp_path, orchestrator_bin):
    result = validate_rendered(render(load_values(path)), tmp_path, orchestrator_bin)
    assert result.returncode == 0 and "config OK" in result.stdout, (
        f"{path.name}: orchestrator validate exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def test_a_broken_template_in_values_fails_validate_with_its_file_and_line(tmp_path, orchestrator_bin):
    broken = {"ui": {"templates": {"error.html": "<h1>{{ title }}</h1>\n<p>{{ mesage }}</p>\n"}}}
    result = validate_rendered(render(broken), tmp_path, orchestrator_bin)
    assert result.returncode != 0
    assert "ui.templatesDir: error.html" in result.stderr and "line 2" in result.stderr, result.stderr
