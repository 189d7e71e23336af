#!/usr/bin/env bash
# The air-gapped build: local stand-ins for the pinned base images, for a Docker engine that can
# reach Debian's package mirrors but no container registry. Built from Debian bookworm's packages:
#   depot-standin/debian:bookworm        debootstrap --variant=minbase, imported
#   depot-standin/distroless-cc:nonroot  glibc + CA certificates, no shell  (runtime stage)
#   depot-standin/postgres:15            POSTGRES_USER / _PASSWORD / _DB as the official image
#   depot-standin/rabbitmq:3.10          RABBITMQ_DEFAULT_USER / _PASS as the official image
#   depot-standin/nginx:1.22
#   depot-standin/rust:bookworm          only with `rust` named (or DEPOT_STANDIN_RUST=1): this
#                                        machine's Rust toolchain copied in, for the in-image build
# Usage: scripts/docker-standins.sh [base runtime postgres rabbitmq nginx rust]  (default: all but
# rust). An image that exists is kept; DEPOT_STANDIN_REBUILD=1 builds again.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/docker-lib.sh
. scripts/docker-lib.sh
ensure_engine
WANT=("$@")
if [ ${#WANT[@]} -eq 0 ]; then
  WANT=(base runtime postgres rabbitmq nginx)
  [ "${DEPOT_STANDIN_RUST:-0}" = 1 ] && WANT+=(rust)
fi
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${DEPOT_STANDIN_WORK:-/var/tmp/depot-standins}

have() { [ "${DEPOT_STANDIN_REBUILD:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

base() {
  have depot-standin/debian:bookworm && return 0
  command -v debootstrap >/dev/null || { echo "installing debootstrap"; apt_install debootstrap; }
  echo "debootstrap bookworm (minbase) from $MIRROR"
  rm -rf "$WORK/rootfs" && mkdir -p "$WORK"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  local r=$WORK/rootfs
  cat >"$r/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
  # As Debian's own container images: no service starts inside a build, no documentation.
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" && chmod 755 "$r/usr/sbin/policy-rc.d"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    >"$r/etc/dpkg/dpkg.cfg.d/docker-minimal"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* "$r"/usr/share/man/*
  tar -C "$r" -c . | docker import -c 'CMD ["bash"]' - depot-standin/debian:bookworm >/dev/null
  rm -rf "$r"
  echo "built depot-standin/debian:bookworm"
}

standin() { # standin TAG DOCKERFILE
  have "$1" && return 0
  echo "building $1 (docker/standins/$2)"
  docker_build -q -f "docker/standins/$2" -t "$1" docker/standins >/dev/null
}

rust() {
  have depot-standin/rust:bookworm && return 0
  local sysroot
  sysroot=$(rustc --print sysroot) || die "the rust stand-in copies this machine's toolchain: no rustc here"
  echo "building depot-standin/rust:bookworm (toolchain from $sysroot, $(rustc --version))"
  # The context is the sysroot (documentation left out) with the Dockerfile beside it.
  tar -c -C "$sysroot" --exclude=./share/doc . -C "$PWD/docker/standins" rust.Dockerfile |
    docker_build -q -f rust.Dockerfile -t depot-standin/rust:bookworm - >/dev/null
}

for w in "${WANT[@]}"; do
  case "$w" in
    base) base ;;
    runtime) base; standin depot-standin/distroless-cc:nonroot distroless.Dockerfile ;;
    postgres) base; standin depot-standin/postgres:15 postgres.Dockerfile ;;
    rabbitmq) base; standin depot-standin/rabbitmq:3.10 rabbitmq.Dockerfile ;;
    nginx) base; standin depot-standin/nginx:1.22 nginx.Dockerfile ;;
    rust) base; rust ;;
    *) die "unknown stand-in $w" ;;
  esac
done
