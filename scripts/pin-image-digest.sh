#!/usr/bin/env bash
# Release step: write the published image's digest into the chart's values.yaml
# (image.digest), so the chart pulls the release by digest (checkov CKV_K8S_43).
#
#   scripts/pin-image-digest.sh sha256:<64 hex digits> [path/to/values.yaml]
#
# Take the digest from the registry after the push, e.g. `crane digest IMAGE:TAG` or
# `docker buildx imagetools inspect IMAGE:TAG`.
set -euo pipefail

digest="${1:-}"
values="${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/charts/orchestrator/values.yaml}"
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "usage: $0 sha256:<64 lower-case hex digits> [values.yaml]" >&2
    exit 2
fi
if ! grep -qE '^  digest: ".*"$' "$values"; then
    echo "$values: no \`  digest: \"...\"\` line under image:" >&2
    exit 1
fi
sed -i -E "s|^  digest: \".*\"\$|  digest: \"$digest\"|" "$values"
echo "image.digest = $digest in $values"
