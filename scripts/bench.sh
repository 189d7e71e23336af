#!/usr/bin/env bash
# `make bench`: starts the release binary (embedded mode: SQLite + in-process queue) on a free
# loopback port and drives each endpoint with wrk, printing requests/s and p50/p99 next to the
# same server's /health/live measured in the same run. The ratio is the figure that matters.
#
#   BENCH_SECONDS=10 BENCH_CONNECTIONS=32 BENCH_THREADS=2 make bench
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
PORT=${BENCH_PORT:-18080}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --locked -p depot-api --bin depot --example lifecycle

WORK=$(mktemp -d)
LOG="$WORK/depot.log"
cleanup() {
  if [ -n "${PID:-}" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/depot"
(
  cd "$WORK"
  exec env -u DATABASE_URL -u AMQP_URL -u PORT \
    DEPOT__SERVER__HOST=127.0.0.1 DEPOT__SERVER__PORT="$PORT" DEPOT__LOG__LEVEL=warn \
    DEPOT_ADMIN_SECRET="${DEPOT_ADMIN_SECRET:-bench-admin-secret-0123456789abcdef}" \
    DEPOT__API_KEYS__USAGE_RETENTION_DAYS=1 \
    DEPOT__EXECUTOR__SIMULATED_DURATION_MS=0 DEPOT__EXECUTOR__SIMULATED_STEPS=1 \
    DEPOT__WORKER__CONCURRENCY=64 DEPOT__OPERATIONS__MAX_EVENT_STREAMS_PER_PRINCIPAL=256 \
    ${BENCH_EXTRA_ENV:-} \
    "$BIN" serve >"$LOG" 2>&1
) &
PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -fsS "$BASE/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BASE/health/live" >/dev/null || { echo "depot did not start:"; cat "$LOG"; exit 1; }

ADMIN_SECRET=${DEPOT_ADMIN_SECRET:-bench-admin-secret-0123456789abcdef}
BENCH_API_KEY=$(curl -fsS -X POST "$BASE/api/v1/api-keys" -H "X-Admin-Secret: $ADMIN_SECRET" \
  -H 'Content-Type: application/json' \
  -d '{"name":"bench","scopes":["packages:read","packages:write","operations:read","passwords:generate"]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export BENCH_API_KEY

# 60 packages, so that "list 50" returns a full page.
for i in $(seq 1 60); do
  BENCH_PACKAGE_ID=$(curl -fsS -X POST "$BASE/api/v1/packages" -H "X-API-Key: $BENCH_API_KEY" \
    -H 'Content-Type: application/json' -d "{\"name\":\"bench-$i\",\"version\":\"1.0.0\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
done
export BENCH_PACKAGE_ID

# Endpoints: "name|path|header" (header optional, e.g. "X-API-Key: dpk_…"). Components add
# theirs in bench/endpoints.sh.
ENDPOINTS=("health_live|/health/live|" "health_ready|/health/ready|")
if [ -f bench/endpoints.sh ]; then
  # shellcheck source=/dev/null
  BASE="$BASE" source bench/endpoints.sh
fi

to_ms() { # wrk prints 812.00us, 1.23ms or 1.02s
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else print v }'
}

run_one() { # name path [header]
  local name=$1 path=$2 header=${3:-}
  local out rps p50 p99 non2xx
  local args=(-t"$THREADS" -c"$CONNS" -d"${SECONDS_PER}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  out=$(wrk "${args[@]}" "$BASE$path")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  echo "$name $rps $p50 $p99 ${non2xx:-0}"
}

echo
echo "Depot bench: wrk -t$THREADS -c$CONNS -d${SECONDS_PER}s per endpoint, release build, $(nproc) cores, embedded mode"
RESULTS=()
LIVE_RPS=
for spec in "${ENDPOINTS[@]}"; do
  IFS='|' read -r name path header <<<"$spec"
  line=$(run_one "$name" "$path" "$header")
  RESULTS+=("$line")
  [ "$name" = health_live ] && LIVE_RPS=$(awk '{print $2}' <<<"$line")
done
printf '\n%-28s %12s %10s %10s %10s %8s\n' endpoint "req/s" "p50 ms" "p99 ms" "vs live" "non-2xx"
for line in "${RESULTS[@]}"; do
  read -r name rps p50 p99 bad <<<"$line"
  ratio=$(awk -v a="$rps" -v b="$LIVE_RPS" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }')
  printf '%-28s %12.0f %10s %10s %10s %8s\n' "$name" "$rps" "$p50" "$p99" "$ratio" "$bad"
done
if grep -q "panicked" "$LOG"; then echo "the server panicked during the bench:"; cat "$LOG"; exit 1; fi
for line in "${RESULTS[@]}"; do
  read -r name _ _ _ bad <<<"$line"
  if [ "${bad:-0}" != 0 ]; then echo "FAIL: $name answered $bad non-2xx responses"; exit 1; fi
done

# End-to-end lifecycle throughput (create → download → activate, simulated executor at zero
# delay), embedded mode. The worker runs up to 64 operations at once (set above), as many as
# packages in flight, so no operation waits for a free slot.
LIFECYCLE_N=${BENCH_LIFECYCLE_PACKAGES:-1000}
echo
echo "lifecycle (embedded: SQLite + in-process queue), $LIFECYCLE_N packages, 64 at a time:"
"${CARGO_TARGET_DIR:-$PWD/target}/release/examples/lifecycle" "$BASE" "$BENCH_API_KEY" "$LIFECYCLE_N" 64 |
  awk '/^lifecycle/ {printf "  %s packages/s (%s failed)\n", $4, $5} /^latency/ {print "    " $0}'
