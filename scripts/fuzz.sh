#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints the
# executions and findings of each. Not part of scripts/test.sh (CI): fuzzing
# is open-ended; the crash inputs it finds are kept as regression tests.
#
#   scripts/fuzz.sh [seconds-per-target]     (default 60)
#
# Needs cargo-fuzz (installed here when missing, from crates.io) and a
# nightly toolchain for libFuzzer's instrumentation; without nightly it uses
# the stable compiler with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
secs="${1:-60}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz() { cargo +nightly fuzz "$@"; }
else
    fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

# No unsafe code in the workspace: skip AddressSanitizer (faster builds and runs).
fuzz build -s none
status=0
summary=()
for target in $(fuzz list); do
    mkdir -p "corpus/$target" "seeds/$target"
    log="$(mktemp)"
    if fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result="ok"
    else
        result="FINDING (see fuzz/artifacts/$target)"
        status=1
        tail -n 40 "$log"
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    summary+=("$(printf '%-16s %10s execs in %ss: %s' "$target" "${runs:-?}" "$secs" "$result")")
    rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit "$status"
