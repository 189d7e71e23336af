#!/usr/bin/env bash
# make coverage: line coverage of the workspace's tests, as an HTML report and a summary figure.
#
# rustc's own instrumentation (-C instrument-coverage; the toolchain ships profiler_builtins)
# and LLVM's tools of the same major version as rustc's LLVM, from Debian's llvm-<major>
# package (installed here when missing; no rustup component or download needed). The suite runs
# as `make test`'s first stage does: SQLite and the in-process queue, the RabbitMQ adapter's
# tests on the local broker. Processes the tests start (the `depot` binary in the CLI and
# scaled-mode tests) are measured too.
#
#   bash scripts/coverage.sh        # report in target/coverage/html/index.html
#
# The instrumented build has its own target directory (target/coverage/build), so it does not
# disturb the normal one; the first run builds everything once (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA=llvm-profdata-$LLVM_MAJOR
COV=llvm-cov-$LLVM_MAJOR
if ! command -v "$COV" >/dev/null 2>&1; then
  echo "installing llvm-$LLVM_MAJOR (Debian package) for $COV and $PROFDATA" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "llvm-$LLVM_MAJOR" >/dev/null
fi

OUT=$PWD/target/coverage
rm -rf "$OUT/profraw" "$OUT/html"
mkdir -p "$OUT/profraw"
export CARGO_TARGET_DIR=$OUT/build
export RUSTFLAGS="-C instrument-coverage"
export LLVM_PROFILE_FILE="$OUT/profraw/%p-%m.profraw"
export DEPOT_PG_URL=${DEPOT_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export DEPOT_AMQP_URL=${DEPOT_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
bash scripts/services.sh
unset DATABASE_URL AMQP_URL PORT DEPOT_ENV

# The objects to map the counters to: every test binary, and the `depot` binary the tests run.
cargo build --locked -p depot-api --bin depot
mapfile -t OBJECTS < <(
  DEPOT_TEST_AMQP_URL= DEPOT_TEST_POSTGRES_URL= cargo test --workspace --locked --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
)
OBJECTS+=("$CARGO_TARGET_DIR/debug/depot")
DEPOT_TEST_AMQP_URL= DEPOT_TEST_POSTGRES_URL= cargo test --workspace --locked

"$PROFDATA" merge -sparse "$OUT"/profraw/*.profraw -o "$OUT/merged.profdata"
ARGS=(--instr-profile "$OUT/merged.profdata" --ignore-filename-regex '(/\.cargo/registry/|/rustc/|/tests/|/examples/|/target/)')
for o in "${OBJECTS[@]}"; do ARGS+=(--object "$o"); done
"$COV" show "${ARGS[@]}" --format=html --output-dir "$OUT/html" >/dev/null
"$COV" report "${ARGS[@]}" --summary-only >"$OUT/summary.txt"
tail -n 1 "$OUT/summary.txt" | awk '{printf "coverage: %s of lines (%s of regions, %s of functions); report: target/coverage/html/index.html\n", $10, $4, $7}'
