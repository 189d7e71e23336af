#!/usr/bin/env bash
# Lifecycle throughput in scaled mode: `depot serve` (API + outbox relay, no embedded worker) and
# BENCH_WORKERS `depot worker` processes on PostgreSQL + RabbitMQ (local), simulated executor at
# zero delay. Prints packages/s for create → download → activate, each operation awaited on its
# event stream. Part of `make bench`.
#
# Defaults: one worker process (on 2 cores a second one only adds scheduling) running up to 128
# operations at once (BENCH_WORKER_CONCURRENCY; as many as packages in flight, so no operation
# waits for a free slot), 128 packages in flight, and PostgreSQL over loopback without TLS
# (sslmode=disable: on one machine TLS protects nothing and costs about a tenth of the
# throughput; DEPOT_PG_URL overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${DEPOT_PG_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
AMQP=${DEPOT_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PORT=${BENCH_PORT:-18090}
WORKERS=${BENCH_WORKERS:-1}
N=${BENCH_LIFECYCLE_PACKAGES:-4000}
C=${BENCH_LIFECYCLE_CONCURRENCY:-128}
WORKER_CONCURRENCY=${BENCH_WORKER_CONCURRENCY:-128}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bash scripts/services.sh >/dev/null
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release --locked -p depot-api --bin depot --example lifecycle
DB=depot_bench_$$
psql "$PG" -qc "CREATE DATABASE $DB"
# Same server, the bench's own database, the URL's options (e.g. ?sslmode=disable) kept.
PG_PATH=${PG%%\?*}
PG_QUERY=${PG#"$PG_PATH"}
DB_URL="${PG_PATH%/*}/$DB$PG_QUERY"
PREFIX="depot-bench-$$."
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  for q in operations operations.retry operations.dead; do
    rabbitmqctl -q delete_queue "${PREFIX}$q" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
export DATABASE_URL="$DB_URL" AMQP_URL="$AMQP" DEPOT__QUEUE__QUEUE_PREFIX="$PREFIX" DEPOT__LOG__LEVEL=warn \
  DEPOT__EXECUTOR__SIMULATED_DURATION_MS=0 DEPOT__EXECUTOR__SIMULATED_STEPS=1 \
  DEPOT__DATABASE__MAX_CONNECTIONS=20 DEPOT__OPERATIONS__MAX_EVENT_STREAMS=1024 DEPOT_ADMIN_SECRET=bench-admin-secret-0123456789abcdef \
  DEPOT__OPERATIONS__MAX_EVENT_STREAMS_PER_PRINCIPAL=1024
# (One key drives the whole load, each operation awaited on its event stream: the per-principal
# share of streams, 8 by default, is lifted for it.)
"$TARGET_DIR/release/depot" migrate up >/dev/null
(cd "$WORK" && exec env DEPOT__SERVER__HOST=127.0.0.1 DEPOT__SERVER__PORT="$PORT" DEPOT__WORKER__EMBEDDED=false \
  "$TARGET_DIR/release/depot" serve >"$WORK/api.log" 2>&1) &
PIDS+=($!)
for i in $(seq 1 "$WORKERS"); do
  (cd "$WORK" && exec env DEPOT__WORKER__CONCURRENCY="$WORKER_CONCURRENCY" "$TARGET_DIR/release/depot" worker >"$WORK/worker$i.log" 2>&1) &
  PIDS+=($!)
done
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fsS "$BASE/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
KEY=$(curl -fsS -X POST "$BASE/api/v1/api-keys" -H "X-Admin-Secret: $DEPOT_ADMIN_SECRET" -H 'Content-Type: application/json' \
  -d '{"name":"bench","scopes":["packages:read","packages:write","operations:read"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
echo "lifecycle (scaled: PostgreSQL + RabbitMQ, 1 API + $WORKERS worker process(es)), $N packages, $C at a time:"
"$TARGET_DIR/release/examples/lifecycle" "$BASE" "$KEY" "$N" "$C" | awk '/^lifecycle/ {printf "  cold (empty tables): %s packages/s (%s failed)\n", $4, $5} /^latency/ {print "    " $0}'
# Steady state: PostgreSQL plans a prepared statement once per connection, and on tables that
# were empty when it did (no statistics yet: autovacuum analyzes within its first minute) some
# plans are sequential scans that stay cached. ANALYZE, as autovacuum would, then measure again.
psql "$DB_URL" -qc "ANALYZE"
"$TARGET_DIR/release/examples/lifecycle" "$BASE" "$KEY" "$N" "$C" | awk '/^lifecycle/ {printf "  steady (after ANALYZE): %s packages/s (%s failed)\n", $4, $5} /^latency/ {print "    " $0}'
# How many package updates PostgreSQL made in place (HOT: no new index entries). A status
# change stays HOT only while no index covers `status` (see migration m20261204_000012).
psql "$DB_URL" -Atc "SELECT '  package updates: ' || n_tup_upd || ', in place (HOT): ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'packages'"
