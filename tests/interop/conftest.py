"""Starts the real orchestrator binary with an OIDC provider on free loopback ports."""

import json
import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (outgoing connections draw from that one),
    never the same twice in a run."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 2048:
        low = 32768
    start = max(1024, low - 12000)
    for _ in range(200):
        port = random.randrange(start, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str:
    path = os.environ.get("ORCHESTRATOR_BIN")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("ORCHESTRATOR_BIN is not set (scripts/test.sh sets it)")
        pytest.skip("ORCHESTRATOR_BIN is not set")
    return path


def run_cli(*args: str, stdin: str = "") -> str:
    out = subprocess.run([binary(), *args], input=stdin, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


CLIENT_SECRET = "interop-client-secret"
PASSWORD = "interop-password"


@pytest.fixture(scope="session")
def provider():
    """An orchestrator running only the OIDC provider; yields its issuer and client settings."""
    port, admin = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="interop-"))
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "signing-key.pem").write_text(run_cli("keys", "generate", "--algorithm", "ES256"))
    (secrets / "rsa-key.pem").write_text(run_cli("keys", "generate", "--algorithm", "RS256"))
    (secrets / "client-secret").write_text(CLIENT_SECRET + "\n")
    pw_hash = run_cli("hash-password", stdin=PASSWORD + "\n").strip()
    issuer = f"http://127.0.0.1:{port}/idp"
    redirect = "http://127.0.0.1:1/callback"
    config = tmp / "orchestrator.yaml"
    config.write_text(
        f"""
listen: {{address: "127.0.0.1:{port}"}}
admin: {{address: "127.0.0.1:{admin}"}}
secretsDir: {secrets}
log: {{format: json}}
oidcProvider:
  issuer: {issuer}
  signingKeys:
    - {{id: es-1, algorithm: ES256, privateKey: "${{secret:signing-key.pem}}"}}
    - {{id: rs-old, algorithm: RS256, privateKey: "${{secret:rsa-key.pem}}"}}
  clients:
    - clientId: confidential
      clientSecret: "${{secret:client-secret}}"
      redirectUris: ["{redirect}"]
      postLogoutRedirectUris: ["http://127.0.0.1:1/bye"]
      grantTypes: [authorization_code, refresh_token, client_credentials]
    - clientId: public-spa
      redirectUris: ["{redirect}"]
  users:
    - username: carol
      passwordHash: "{pw_hash}"
      claims: {{email: carol@example.com, email_verified: true, name: Carol, groups: [ops]}}
"""
    )
    proc = start(config, tmp, admin)
    yield {"issuer": issuer, "redirect_uri": redirect, "client_secret": CLIENT_SECRET, "password": PASSWORD}
    stop(proc)


def start(config: Path, tmp: Path, admin: int) -> subprocess.Popen:
    """Runs the binary with `config` and waits (bounded) until /readyz says ready."""
    log = open(tmp / "stdout.log", "w")
    proc = subprocess.Popen([binary(), "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{admin}/readyz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("orchestrator did not get ready:\n" + (tmp / "stdout.log").read_text())
        time.sleep(0.02)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


NODE_OP = Path(__file__).resolve().parent.parent / "fixtures" / "node-op"


@pytest.fixture(scope="session")
def federated():
    """Our provider with panva's oidc-provider (tests/fixtures/node-op) as its only upstream."""
    if not (NODE_OP / "node_modules" / "oidc-provider").exists():
        pytest.fail("the node OP fixture is not installed: npm ci in tests/fixtures/node-op (scripts/test.sh does)")
    port, admin = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port}/idp"
    node = subprocess.Popen(
        ["node", "op.mjs", f"{issuer}/upstreams/corp/callback"],
        cwd=NODE_OP,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = node.stdout.readline()
    if not line:
        node.kill()
        pytest.fail("the node OP did not start")
    upstream = json.loads(line)["issuer"]
    tmp = Path(tempfile.mkdtemp(prefix="interop-fed-"))
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "signing-key.pem").write_text(run_cli("keys", "generate", "--algorithm", "ES256"))
    redirect = "http://127.0.0.1:1/callback"
    config = tmp / "orchestrator.yaml"
    config.write_text(
        f"""
listen: {{address: "127.0.0.1:{port}"}}
admin: {{address: "127.0.0.1:{admin}"}}
secretsDir: {secrets}
log: {{format: json}}
oidcProvider:
  issuer: {issuer}
  signingKeys:
    - {{id: es-1, algorithm: ES256, privateKey: "${{secret:signing-key.pem}}"}}
  clients:
    - clientId: app
      clientSecret: app-secret
      redirectUris: ["{redirect}"]
  upstreams:
    - name: corp
      issuer: {upstream}
      clientId: gateway
      clientSecret: gateway-secret
      scopes: [openid, email, profile, groups]
      claims: {{email: email, name: name, groups: groups}}
      groups: {{include: ["eng*"], prefix: "corp:"}}
"""
    )
    proc = start(config, tmp, admin)
    yield {"issuer": issuer, "redirect_uri": redirect, "upstream": upstream}
    stop(proc)
    node.kill()
