#!/usr/bin/env bash
# Prints the current digest of every image tag pinned in docker/ (needs `docker buildx` and
# access to the registries), next to the digest pinned now. Update the pins by hand after
# reviewing what changed: a pin is a decision, not a side effect.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -hoE '(FROM|image:) +[^ ]+@sha256:[0-9a-f]{64}' docker/Dockerfile docker/docker-compose.yml |
  awk '{print $2}' | sort -u | while IFS=@ read -r ref pinned; do
    current=$(docker buildx imagetools inspect "$ref" --format '{{json .Manifest}}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
    if [ "$current" = "$pinned" ]; then state=same; else state=CHANGED; fi
    printf '%-8s %s\n  pinned  %s\n  current %s\n' "$state" "$ref" "$pinned" "$current"
  done
