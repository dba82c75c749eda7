#!/bin/sh
# Writes placeholder sources for the workspace members named by the given Cargo.toml files,
# so that `cargo build` in the image's dependency layer compiles every third-party crate
# without our sources (which change far more often than Cargo.lock).
#
# Each member gets an empty src/lib.rs, and every target a manifest names, by `path = "..."`
# or by a `[[bin]]`/`[[test]]`/`[[bench]]`/`[[example]]` name without a path, gets a file with
# an empty `main`, because cargo refuses a manifest whose targets are missing.
set -eu

for manifest in "$@"; do
    dir=$(dirname "$manifest")
    mkdir -p "$dir/src"
    : > "$dir/src/lib.rs"
    awk '
        /^\[\[(bin|test|bench|example)\]\]/ { flush(); kind = $0; gsub(/[][]/, "", kind); next }
        /^\[/                               { flush(); kind = ""; next }
        kind != "" && /^[ \t]*name[ \t]*=/  { name = $0; sub(/^[^"]*"/, "", name); sub(/".*$/, "", name) }
        /^[ \t]*path[ \t]*=[ \t]*".*\.rs"/  { p = $0; sub(/^[^"]*"/, "", p); sub(/".*$/, "", p); print p; if (kind != "") explicit = 1 }
        function flush() {
            if (kind != "" && name != "" && !explicit) {
                if (kind == "bin") print "src/bin/" name ".rs"
                else if (kind == "test") print "tests/" name ".rs"
                else if (kind == "bench") print "benches/" name ".rs"
                else print "examples/" name ".rs"
            }
            name = ""; explicit = 0
        }
        END { flush() }
    ' "$manifest" | while read -r target; do
        mkdir -p "$dir/$(dirname "$target")"
        echo 'fn main() {}' > "$dir/$target"
    done
done
