#!/usr/bin/env bash
# The whole test suite, as the README's test command runs it:
#   1. every crate's tests (domain unit tests; API tests on a temp SQLite file + in-process queue;
#      the RabbitMQ adapter's tests on the real broker),
#   2. the store adapters' tests (crates/store/tests) and the API tests again on PostgreSQL (a
#      fresh database per test), the API tests also on RabbitMQ (unique queues) and the
#      artifact tests also on S3-compatible object storage (s3s-fs on loopback, scripts/s3.sh),
#      on PostgreSQL and on SQLite.
# PostgreSQL and RabbitMQ must be reachable; this fails loudly when they are not.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEPOT_PG_URL=${DEPOT_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export DEPOT_AMQP_URL=${DEPOT_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

bash scripts/services.sh

# Keep environment overrides of a developer's shell out of the tests' settings.
unset DATABASE_URL AMQP_URL PORT DEPOT_ENV

echo "=== 1/2: all crates (SQLite + in-process queue; RabbitMQ adapter on the real broker)"
DEPOT_TEST_AMQP_URL= DEPOT_TEST_POSTGRES_URL= cargo test --workspace --locked

echo "=== 2/2: the store adapters' tests and the API tests on PostgreSQL + RabbitMQ (and S3)"
# A real S3-compatible server for the object-storage tests (built once per machine).
# shellcheck source=scripts/s3.sh
source scripts/s3.sh
s3_start
DEPOT_TEST_POSTGRES_URL="$DEPOT_PG_URL" \
  cargo test --locked -p depot-store --test store -- --include-ignored
DEPOT_TEST_POSTGRES_URL="$DEPOT_PG_URL" DEPOT_TEST_AMQP_URL="$DEPOT_AMQP_URL" \
  cargo test --locked -p depot-api --test api -- --include-ignored
# The object-storage API test on SQLite too (the run above has it on PostgreSQL).
DEPOT_TEST_POSTGRES_URL= DEPOT_TEST_AMQP_URL= \
  cargo test --locked -p depot-api --test api -- --ignored object_storage_
