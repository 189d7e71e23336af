#!/usr/bin/env bash
# A real S3-compatible server for the tests, on loopback: s3s-fs from crates.io (built once per
# machine into ~/.cargo/bin by `cargo install`; 0.14.1 is the last release for rustc 1.95)
# serving a temporary directory, one subdirectory per bucket.
#
# Sourced by scripts/test.sh:  source scripts/s3.sh; s3_start
# which exports DEPOT_TEST_S3_URL, DEPOT_TEST_S3_BUCKET and the keys the tests' Depot reads
# through its secret store (DEPOT_S3_ACCESS_KEY_ID, DEPOT_S3_SECRET_ACCESS_KEY), and stops the
# server when the calling shell exits. Fails loudly when the server cannot be built or started.

S3S_FS_VERSION=0.14.1

s3_install() {
  if command -v s3s-fs >/dev/null 2>&1 && s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    return 0
  fi
  echo "installing s3s-fs $S3S_FS_VERSION (cargo install, once per machine)" >&2
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet >&2
}

s3_start() {
  s3_install
  S3_ROOT=$(mktemp -d)
  export DEPOT_TEST_S3_BUCKET=depot-test DEPOT_TEST_S3_ROOT=$S3_ROOT
  mkdir -p "$S3_ROOT/$DEPOT_TEST_S3_BUCKET"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export DEPOT_S3_ACCESS_KEY_ID=depot-test-key DEPOT_S3_SECRET_ACCESS_KEY=depot-test-secret-0123456789
  s3s-fs --host 127.0.0.1 --port "$port" --access-key "$DEPOT_S3_ACCESS_KEY_ID" \
    --secret-key "$DEPOT_S3_SECRET_ACCESS_KEY" "$S3_ROOT" >"$S3_ROOT.log" 2>&1 &
  S3_PID=$!
  trap 's3_stop' EXIT
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export DEPOT_TEST_S3_URL="http://127.0.0.1:$port"
      echo "s3s-fs $S3S_FS_VERSION on $DEPOT_TEST_S3_URL (bucket $DEPOT_TEST_S3_BUCKET)" >&2
      return 0
    fi
    kill -0 "$S3_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "s3s-fs did not start:" >&2
  cat "$S3_ROOT.log" >&2
  return 1
}

# Never fails (it runs in the EXIT trap of a `set -e` script, whose status it must not change:
# the killed server's `wait` status is 143).
s3_stop() {
  if [ -n "${S3_PID:-}" ]; then
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
  fi
  if [ -n "${S3_ROOT:-}" ]; then
    rm -rf "$S3_ROOT" "$S3_ROOT.log" || true
  fi
  S3_PID=
  return 0
}
