# Sourced by the docker scripts: a running engine, a BuildKit builder, a compose command, and
# the base images (the pinned official ones, or local stand-ins built from Debian's packages
# when no registry can be reached). Everything missing is installed from Debian's packages.

die() { echo "docker: $*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || die "needs $* (no apt-get here: install it yourself)"
  [ "$(id -u)" = 0 ] || die "needs $* installed (run as root, or install it yourself)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; } \
    || die "could not install $*"
}

# The engine: started when it is installed but not running; Debian's docker.io when missing.
ensure_engine() {
  docker info >/dev/null 2>&1 && return 0
  if ! command -v dockerd >/dev/null; then
    echo "installing Docker's engine (Debian's docker.io)"
    apt_install docker.io
  fi
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    echo "starting dockerd (log: /var/log/depot-dockerd.log)"
    nohup dockerd >/var/log/depot-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  die "the Docker engine did not come up (see /var/log/depot-dockerd.log)"
}

# docker_build ARGS...: BuildKit (stages the target does not need are skipped). `docker buildx`
# when present; otherwise a client that still has BuildKit built in (Docker 20.10-22, as Debian's
# docker.io: a newer client without the buildx plug-in has only the legacy builder).
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load "$@"
    return
  fi
  local c major
  for c in docker /usr/bin/docker; do
    command -v "$c" >/dev/null || continue
    major=$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then
      DOCKER_BUILDKIT=1 "$c" build "$@"
      return
    fi
  done
  die "no BuildKit builder: install the buildx plug-in (or Debian's docker.io, whose client has it built in)"
}

# COMPOSE: `docker compose` (v2) where it exists, else docker-compose (1.29.2, Debian's package).
ensure_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
  else
    command -v docker-compose >/dev/null || { echo "installing docker-compose (Debian's package)"; apt_install docker-compose; }
    COMPOSE_CMD=(docker-compose)
  fi
}

# The base images. DEPOT_BASES=official uses the pinned digests (and lets the builds pull
# them), standin builds and uses the local stand-ins, auto (the default) takes the official
# ones when the registry answers and the stand-ins otherwise. Exports the variables the
# Dockerfile's ARGs and the compose file read.
ensure_bases() {
  # Once per run: `up` builds (which chose already) and then starts.
  [ -n "${DEPOT_BASES_CHOSEN:-}" ] && return 0
  local mode=${DEPOT_BASES:-auto}
  if [ "$mode" = auto ]; then
    local probe
    probe=$(grep -m1 -oE 'nginx:[^ ]+@sha256:[0-9a-f]{64}' docker/docker-compose.yml)
    if docker image inspect "$probe" >/dev/null 2>&1 || timeout 60 docker pull -q "$probe" >/dev/null 2>&1; then
      mode=official
    else
      mode=standin
      echo "no registry reachable: building and using the local stand-in bases (the air-gapped build)"
    fi
  fi
  case "$mode" in
    official) ;;
    standin)
      bash scripts/docker-standins.sh
      export DEPOT_RUST_IMAGE=depot-standin/rust:bookworm
      export DEPOT_RUNTIME_IMAGE=depot-standin/distroless-cc:nonroot
      export DEPOT_POSTGRES_IMAGE=depot-standin/postgres:15
      export DEPOT_RABBITMQ_IMAGE=depot-standin/rabbitmq:3.10
      export DEPOT_NGINX_IMAGE=depot-standin/nginx:1.22
      ;;
    *) die "DEPOT_BASES must be auto, official or standin (got $mode)" ;;
  esac
  export DEPOT_BASES_CHOSEN=$mode
}

# The toolchain image, for builds that compile in the image: the official one is pulled by the
# build; the stand-in is built here (it copies this machine's toolchain).
ensure_toolchain_image() {
  ensure_bases
  if [ -n "${DEPOT_RUST_IMAGE:-}" ]; then bash scripts/docker-standins.sh rust; fi
}
