#!/usr/bin/env bash
# Docker Compose helpers (make docker-build | docker-up | docker-test | docker-down).
# Needs a Docker engine with the compose plugin; creates docker/.env and docker/secrets/ when
# they are missing (passwords and secrets generated with openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTION=${1:-up}
COMPOSE=(docker compose --env-file docker/.env -f docker/docker-compose.yml)

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

case "$ACTION" in
  build) docker build -f docker/Dockerfile --target runtime -t "${DEPOT_IMAGE:-depot:local}" . ;;
  up)
    prepare
    "${COMPOSE[@]}" up -d --build --wait
    "${COMPOSE[@]}" ps
    echo "Depot is behind nginx on http://127.0.0.1:${DEPOT_HTTP_PORT:-8080} (admin secret: docker/secrets/admin_secret)"
    ;;
  test)
    prepare
    "${COMPOSE[@]}" --profile test build test
    "${COMPOSE[@]}" --profile test run --rm test
    ;;
  down) "${COMPOSE[@]}" --profile test down --remove-orphans ;;
  *) echo "usage: $0 build|up|test|down" >&2; exit 2 ;;
esac
