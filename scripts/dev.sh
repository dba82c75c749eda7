#!/usr/bin/env bash
# Runs the orchestrator on the local default config (config/orchestrator.yaml:
# in-memory cache, localhost ports, DEV-ONLY secrets) with a demo upstream app.
#
#   scripts/dev.sh      then open http://localhost:8080 (alice / alice-dev-password)
#
# Admin: http://127.0.0.1:9090/readyz and /metrics. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p orchestrator
python3 scripts/dev-upstream.py 8081 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
# Where cargo put it: CARGO_TARGET_DIR when the user's shell sets one.
"${CARGO_TARGET_DIR:-target}/release/orchestrator" run --config config/orchestrator.yaml
