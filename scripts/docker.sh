#!/usr/bin/env bash
# Docker helpers (make docker-build | docker-up | docker-test | docker-down).
# Installs and starts the engine when it is missing (Debian's docker.io), uses `docker compose`
# or docker-compose 1.29.2, and builds local stand-in bases when the pinned ones cannot be pulled
# (scripts/docker-lib.sh, DEPOT_BASES=auto|official|standin). Creates docker/.env and
# docker/secrets/ when they are missing (passwords and secrets generated with openssl).
#
#   scripts/docker.sh build [--prebuilt PATH]   the runtime image; PATH: a release `depot` built
#                                               outside the image (.ci/run reuses its own)
#   scripts/docker.sh up | test | down
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/docker-lib.sh
. scripts/docker-lib.sh
ACTION=${1:-up}
shift || true
IMAGE=${DEPOT_IMAGE:-depot:local}
ensure_engine
ensure_compose
COMPOSE=("${COMPOSE_CMD[@]}" --env-file docker/.env -f docker/docker-compose.yml)

prepare() {
  if [ ! -f docker/.env ]; then
    sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(openssl rand -hex 24)/" \
        -e "s/^RABBITMQ_PASSWORD=.*/RABBITMQ_PASSWORD=$(openssl rand -hex 24)/" \
        docker/.env.example >docker/.env
    chmod 600 docker/.env
    echo "created docker/.env with generated passwords"
  fi
  install -d -m 700 docker/secrets
  if [ ! -s docker/secrets/admin_secret ]; then
    openssl rand -base64 48 | tr -d '\n/+=' >docker/secrets/admin_secret
    echo "created docker/secrets/admin_secret"
  fi
  if [ ! -s docker/secrets/jwt_signing_key ]; then
    openssl genpkey -algorithm ed25519 -out docker/secrets/jwt_signing_key
    echo "created docker/secrets/jwt_signing_key"
  fi
  # Bind-mounted as they are: the container's non-root user must be able to read them (the
  # directory itself stays private to you).
  chmod 644 docker/secrets/admin_secret docker/secrets/jwt_signing_key
}

# The Dockerfile's ARGs for the bases ensure_bases chose (none: the pinned defaults).
base_args() {
  BASE_ARGS=()
  [ -n "${DEPOT_RUST_IMAGE:-}" ] && BASE_ARGS+=(--build-arg "RUST_IMAGE=$DEPOT_RUST_IMAGE")
  [ -n "${DEPOT_RUNTIME_IMAGE:-}" ] && BASE_ARGS+=(--build-arg "RUNTIME_IMAGE=$DEPOT_RUNTIME_IMAGE")
  return 0
}

build() {
  local prebuilt=${DEPOT_PREBUILT:-}
  if [ "${1:-}" = --prebuilt ]; then prebuilt=${2:?--prebuilt needs the path of a depot binary}; fi
  ensure_bases
  # The in-image build needs the toolchain image; a prebuilt binary does not.
  [ -n "$prebuilt" ] || ensure_toolchain_image
  base_args
  if [ -n "$prebuilt" ]; then
    [ -x "$prebuilt" ] || die "$prebuilt is not an executable"
    rm -rf docker/prebuilt
    install -D -m 0755 "$prebuilt" docker/prebuilt/depot
    install -d docker/prebuilt/var/lib/depot/data docker/prebuilt/var/lib/depot/artifacts
    BASE_ARGS+=(--build-arg DEPOT_BINARY=prebuilt)
  fi
  docker_build -f docker/Dockerfile --target runtime "${BASE_ARGS[@]}" -t "$IMAGE" .
  rm -rf docker/prebuilt
  docker image inspect "$IMAGE" --format "built $IMAGE: {{.Size}} bytes"
}

# Waits until every running container of the project is healthy (or has no health check):
# `up --wait` of compose v2, which 1.29 lacks.
wait_healthy() {
  local deadline=$((SECONDS + ${DEPOT_UP_TIMEOUT:-240})) ids bad
  while :; do
    ids=$("${COMPOSE[@]}" ps -q)
    bad=$(for id in $ids; do
      docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' "$id"
    done | awk '!(($2 == "running" && ($3 == "healthy" || $3 == "none")) || ($2 == "exited" && $4 == 0 && $1 ~ /migrate/))')
    [ -z "$bad" ] && [ -n "$ids" ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "not healthy after ${DEPOT_UP_TIMEOUT:-240}s:" >&2; echo "$bad" >&2
      "${COMPOSE[@]}" ps >&2; "${COMPOSE[@]}" logs --tail 30 >&2
      return 1
    fi
    sleep 2
  done
}

case "$ACTION" in
  build) build "$@" ;;
  up)
    prepare
    docker image inspect "$IMAGE" >/dev/null 2>&1 || build "$@"
    ensure_bases
    "${COMPOSE[@]}" up -d --no-build --scale api=2 --scale worker=2
    wait_healthy
    "${COMPOSE[@]}" ps
    echo "Depot is behind nginx on http://127.0.0.1:${DEPOT_HTTP_PORT:-8080} (admin secret: docker/secrets/admin_secret)"
    ;;
  test)
    prepare
    ensure_toolchain_image
    base_args
    docker_build -f docker/Dockerfile --target test "${BASE_ARGS[@]}" -t "${DEPOT_TEST_IMAGE:-depot-test:local}" .
    "${COMPOSE[@]}" --profile test run --rm test
    ;;
  down)
    "${COMPOSE[@]}" --profile test down --remove-orphans
    ;;
  *) echo "usage: $0 build [--prebuilt PATH]|up|test|down" >&2; exit 2 ;;
esac
