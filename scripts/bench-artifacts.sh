#!/usr/bin/env bash
# `make bench`, artifacts: Depot serving a package's bytes next to Debian's nginx serving the same
# file from the same disk, in the same run (wrk, GET of a 64 KiB and a 16 MiB artifact), and the
# server's memory while a 1 GiB artifact is uploaded and downloaded (peak RSS growth, from
# /proc/<pid>/status VmHWM after resetting it). Then the same downloads with the artifacts on an
# S3-compatible server (s3s-fs on loopback, scripts/s3.sh). Throughput below its target is
# reported (BELOW); memory past its bound, a non-2xx answer or a panic fail the run.
#
#   BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=16 BENCH_SKIP_BUILD=1 bash scripts/bench-artifacts.sh
#   BENCH_BIN=/path/to/another/depot (a build to compare; implies BENCH_SKIP_BUILD)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-2}
BIG_MIB=${BENCH_BIG_MIB:-1024}

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a system nginx on :80; the bench runs its own.
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
fi

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  [ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release --locked -p depot-api --bin depot
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/depot"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SECRET=bench-admin-secret-0123456789abcdef

start_depot() { # dir artifacts-url [extra env...] -> sets BASE, DEPOT_PID
  local dir=$1 url=$2 port
  shift 2
  port=$(free_port)
  mkdir -p "$dir"
  (
    cd "$dir"
    exec env -u DATABASE_URL -u AMQP_URL -u PORT \
      DEPOT__SERVER__HOST=127.0.0.1 DEPOT__SERVER__PORT="$port" DEPOT__LOG__LEVEL=warn \
      DEPOT_ADMIN_SECRET="$SECRET" DEPOT__ARTIFACTS__URL="$url" \
      DEPOT__ARTIFACTS__MAX_BYTES=$(((BIG_MIB + 1) * 1048576)) "$@" \
      "$BIN" serve >"$dir/depot.log" 2>&1
  ) &
  DEPOT_PID=$!
  PIDS+=("$DEPOT_PID")
  BASE="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do
    curl -fsS "$BASE/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "$BASE/health/ready" >/dev/null || { echo "depot did not start:"; cat "$dir/depot.log"; exit 1; }
  KEY=$(curl -fsS -X POST "$BASE/api/v1/api-keys" -H "X-Admin-Secret: $SECRET" \
    -H 'Content-Type: application/json' \
    -d '{"name":"bench","scopes":["packages:read","packages:write"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
}

publish() { # name file -> the package id
  local id
  id=$(curl -fsS -X POST "$BASE/api/v1/packages" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"version\":\"1.0.0\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -fsS -o /dev/null -X PUT "$BASE/api/v1/packages/$id/artifact" -H "X-API-Key: $KEY" \
    -H 'Content-Type: application/octet-stream' -T "$2"
  echo "$id"
}

# wrk's throughput: "requests/s MiB/s"
throughput() { # url [header]
  local args=(-t"$THREADS" -c"$CONNS" -d"${SECONDS_PER}s")
  [ -n "${2:-}" ] && args+=(-H "$2")
  wrk "${args[@]}" "$1" | awk '
    /^Requests\/sec:/ {rps = $2}
    /^Transfer\/sec:/ {v = $2; if (v ~ /GB$/) {sub(/GB$/, "", v); v *= 1024} else if (v ~ /MB$/) {sub(/MB$/, "", v)} else if (v ~ /KB$/) {sub(/KB$/, "", v); v /= 1024}; mib = v}
    /Non-2xx or 3xx responses:/ {bad = $NF}
    END {printf "%s %s %s\n", rps, mib, bad + 0}'
}

kib() { awk "/^$1:/ {print \$2}" "/proc/$2/status"; }

echo "artifacts bench: wrk -t$THREADS -c$CONNS -d${SECONDS_PER}s x $ROUNDS rounds, release build, $(nproc) cores, nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')"
head -c 65536 /dev/urandom >"$WORK/small.bin"
head -c $((16 * 1048576)) /dev/urandom >"$WORK/medium.bin"
head -c $((BIG_MIB * 1048576)) /dev/urandom >"$WORK/big.bin"

start_depot "$WORK/fs" "file://$WORK/fs/artifacts"
FS_BASE=$BASE FS_KEY=$KEY

# Memory first, on a fresh process: peak RSS growth over the upload, then over the download.
before=$(kib VmRSS "$DEPOT_PID")
echo 5 >"/proc/$DEPOT_PID/clear_refs"
big=$(publish big "$WORK/big.bin")
up_peak=$(kib VmHWM "$DEPOT_PID")
after_up=$(kib VmRSS "$DEPOT_PID")
echo 5 >"/proc/$DEPOT_PID/clear_refs"
curl -fsS -o "$WORK/big.out" "$BASE/api/v1/packages/$big/artifact" -H "X-API-Key: $KEY"
down_peak=$(kib VmHWM "$DEPOT_PID")
cmp -s "$WORK/big.bin" "$WORK/big.out" || { echo "FAIL: the 1 GiB artifact came back different"; exit 1; }
rm -f "$WORK/big.out"
UP_GROWTH=$(((up_peak - before) / 1024))
DOWN_GROWTH=$(((down_peak - after_up) / 1024))

small=$(publish small "$WORK/small.bin")
medium=$(publish medium "$WORK/medium.bin")
# nginx serves the very files Depot keeps (its workers run as another user: let them read).
chmod a+rx "$WORK" "$WORK/fs"
chmod -R a+rX "$WORK/fs/artifacts"
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/fs/artifacts/packages;
  }
}
EOF
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=("$!")
for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/$small/artifact" 2>/dev/null && break; sleep 0.1; done

printf '\n%-26s %12s %10s %12s %10s\n' "GET artifact" "req/s" "MiB/s" "nginx MiB/s" "vs nginx"
FAIL=0
# Depot and nginx alternate, ROUNDS times each (the machine's speed drifts within a run); the
# figures are each side's median, the ratio the median of the rounds' ratios.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
row() { # label depot-url nginx-url target%
  local d n ratio drps=() dmib=() nmib=() ratios=() bad=0
  for _ in $(seq 1 "$ROUNDS"); do
    d=$(throughput "$2" "X-API-Key: $KEY")
    n=$(throughput "$3")
    read -r r m b <<<"$d"
    drps+=("$r") dmib+=("$m") bad=$((bad + b))
    read -r _ m b <<<"$n"
    nmib+=("$m") bad=$((bad + b))
    ratios+=("$(awk -v a="${dmib[-1]}" -v b="$m" 'BEGIN { printf "%.1f", 100 * a / b }')")
  done
  ratio=$(printf '%s\n' "${ratios[@]}" | median | awk '{printf "%.0f", $1}')
  local verdict=ok
  [ "$ratio" -ge "$4" ] || verdict=BELOW
  printf '%-26s %12.0f %10.1f %12.1f %9s%% (target %s%%: %s; rounds %s)\n' "$1" \
    "$(printf '%s\n' "${drps[@]}" | median)" "$(printf '%s\n' "${dmib[@]}" | median)" \
    "$(printf '%s\n' "${nmib[@]}" | median)" "$ratio" "$4" "$verdict" "$(IFS=/; echo "${ratios[*]}")"
  if [ "$bad" != 0 ]; then echo "FAIL: $bad non-2xx answers"; FAIL=1; fi
}
row "64 KiB (filesystem)" "$BASE/api/v1/packages/$small/artifact" "http://127.0.0.1:$NGINX_PORT/$small/artifact" 70
row "16 MiB (filesystem)" "$BASE/api/v1/packages/$medium/artifact" "http://127.0.0.1:$NGINX_PORT/$medium/artifact" 80

printf '\n%-26s %10s\n' "1 GiB, server RSS growth" "MiB"
for spec in "upload|$UP_GROWTH" "download|$DOWN_GROWTH"; do
  IFS='|' read -r label mib <<<"$spec"
  if [ "$mib" -le 32 ]; then verdict=ok; else verdict=BELOW; FAIL=1; fi
  printf '%-26s %10s (target <= 32: %s)\n' "$label" "$mib" "$verdict"
done

# Object storage: the same downloads through the S3 adapter.
if [ -z "${BENCH_SKIP_S3:-}" ]; then
  # shellcheck source=scripts/s3.sh
  source scripts/s3.sh
  s3_start
  trap 'cleanup; s3_stop' EXIT
  start_depot "$WORK/s3" "s3://$DEPOT_TEST_S3_BUCKET/bench" \
    DEPOT__ARTIFACTS__S3_ENDPOINT="$DEPOT_TEST_S3_URL" DEPOT__ARTIFACTS__S3_ALLOW_HTTP=true
  s_small=$(publish small "$WORK/small.bin")
  s_medium=$(publish medium "$WORK/medium.bin")
  printf '\n%-26s %12s %10s\n' "GET artifact (S3 adapter)" "req/s" "MiB/s"
  for spec in "64 KiB|$s_small" "16 MiB|$s_medium"; do
    IFS='|' read -r label id <<<"$spec"
    read -r rps mib bad <<<"$(throughput "$BASE/api/v1/packages/$id/artifact" "X-API-Key: $KEY")"
    printf '%-26s %12.0f %10.1f\n' "$label (s3s-fs)" "$rps" "$mib"
    [ "$bad" = 0 ] || { echo "FAIL: $bad non-2xx answers"; FAIL=1; }
  done
fi
for log in "$WORK"/*/depot.log; do
  if grep -q panicked "$log"; then echo "the server panicked:"; cat "$log"; FAIL=1; fi
done
exit "$FAIL"
