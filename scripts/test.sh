#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then
# runs formatting and lint checks and every test (Rust workspace, chart, image).
#
#   scripts/test.sh
#
# Needs: the Rust toolchain (with cargo-nextest if present, else cargo test),
# python3, node + npm. Installs: redis-server, haproxy, nginx, caddy, chromium and
# chromium-driver (Debian), the node OP fixture
# (npm ci), the chart tools (pip, into .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# 1. System packages.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
# Forward auth is tested behind real ingress proxies: NGINX (auth_request, as
# ingress-nginx renders it) and Caddy (forward_auth).
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
# The real-browser tests: Debian's headless Chromium driven through chromedriver.
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Redis tests start their own servers on free ports; a packaged service is not needed.

# 2. The independent OpenID Provider the gateway is tested against (panva's oidc-provider).
step "node OP fixture"
(cd tests/fixtures/node-op && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# 3. Rust: format, lint, build, test.
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "unused dependencies (cargo machete)"
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
cargo machete
step "licenses, bans, sources (cargo deny)"
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --quiet
# Advisories need the RustSec database from GitHub: checked only when asked
# (this build environment reaches package registries only).
# deny reads the whole graph, every platform's crates too: fetch them first
# (a build fetches only this platform's), then check without the network.
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
if [[ "${ORCHESTRATOR_DENY_ADVISORIES:-0}" == 1 ]]; then
    cargo deny check advisories
fi
step "cargo doc"
# Private items too: the modules' docs are the map of the code.
RUSTDOCFLAGS="-D warnings -A rustdoc::private-intra-doc-links" \
    cargo doc --workspace --no-deps --document-private-items --locked --quiet
step "cargo build"
cargo build --workspace --locked
export ORCHESTRATOR_BIN="$PWD/target/debug/orchestrator"
# Here the browser is installed: a browser test that cannot start it fails.
export ORCHESTRATOR_REQUIRE_BROWSER=1
step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

# 4. Chart and image (creates .venv with the chart tools).
step "chart and image tests"
scripts/chart-tests.sh

# 5. Interop: the OIDC provider driven by well-known Python client libraries.
step "interop tests (Authlib, PyJWT)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
.venv/bin/python -m pytest -q -p no:cacheprovider tests/interop
