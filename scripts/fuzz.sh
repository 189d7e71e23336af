#!/usr/bin/env bash
# make fuzz: Schemathesis (`--checks all`) against a Depot started here on a free loopback port,
# with a temp SQLite file and the in-process queue (no external services).
#
#   bash scripts/fuzz.sh [extra `st run` options, e.g. --continue-on-failure]
#
# Knobs: FUZZ_SEED (fixed default, so runs are reproducible), FUZZ_MAX_EXAMPLES (per operation
# and phase; 30 gives ~1,200-1,800 cases in 30-40 s on the debug build), FUZZ_TIMEOUT (seconds for the
# whole Schemathesis run, default 1800), FUZZ_PORT (default: a free one), FUZZ_SKIP_BUILD=1 (use
# the existing target/debug/depot), FUZZ_KEEP=1 (keep the temp dir: server log, config, hooks).
# Reports (JSON summary, JUnit, NDJSON of every recorded request) go to target/fuzz-report/.
# Exits non-zero when Schemathesis reports any failure or error.
#
# Note: `--max-time` is a budget that fuzzing and stateful testing *fill* (they repeat until it
# is spent), not a cap; FUZZ_TIMEOUT is the cap.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VENV=target/fuzz-venv
SEED=${FUZZ_SEED:-20261201}
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-30}
TIMEOUT=${FUZZ_TIMEOUT:-1800}
REPORT_DIR=${FUZZ_REPORT_DIR:-target/fuzz-report}
BIN=target/debug/depot

# --- Schemathesis, pinned, in a venv under target/ (git-ignored) ---------------------------------
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# --- The server binary ------------------------------------------------------------------------------
if [ "${FUZZ_SKIP_BUILD:-0}" != "1" ]; then
  cargo build --locked -p depot-api --bin depot
fi
[ -x "$BIN" ] || { echo "fuzz: $BIN is missing (build it, or unset FUZZ_SKIP_BUILD)"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/depot-fuzz.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${FUZZ_KEEP:-0}" = "1" ]; then echo "fuzz: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=${FUZZ_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BASE=http://127.0.0.1:$PORT
ADMIN_SECRET=fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
ROOT=$PWD

# --- Start Depot in the temp dir (its SQLite file lands there) ---------------------------------------
# Registration on (its routes are in the document); the failed-credential throttle and the
# sign-in routes' per-address budgets off (negative cases send junk credentials and sign-ins by
# the hundred from one address, and a throttled run would test the throttle, not the document).
(
  cd "$WORK"
  exec env -u DATABASE_URL -u AMQP_URL -u PORT -u DEPOT_ENV \
    DEPOT__SERVER__HOST=127.0.0.1 DEPOT__SERVER__PORT="$PORT" \
    DEPOT_ADMIN_SECRET="$ADMIN_SECRET" DEPOT__LOG__LEVEL=warn \
    DEPOT__ACCOUNTS__REGISTRATION_ENABLED=true \
    DEPOT__AUTH__FAILED_CREDENTIALS_PER_MINUTE=0 \
    DEPOT__AUTH__SIGN_INS_PER_MINUTE=0 \
    DEPOT__AUTH__REGISTRATIONS_PER_HOUR=0 \
    "$ROOT/$BIN" serve
) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 120); do
  curl -fsS "$BASE/health/live" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "fuzz: the server exited; its log:"; cat "$WORK/server.log"; exit 1; }
  sleep 0.5
done
curl -fsS "$BASE/health/live" >/dev/null || { echo "fuzz: no answer at $BASE/health/live; log:"; cat "$WORK/server.log"; exit 1; }

# --- An all-scopes API key to fuzz with, and a decoy for key-mutating requests ------------------
create_key() {
  curl -fsS -X POST "$BASE/api/v1/api-keys" \
    -H "X-Admin-Secret: $ADMIN_SECRET" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"scopes\":[\"packages:read\",\"packages:write\",\"packages:admin\",\"operations:read\",\"passwords:generate\",\"api_keys:admin\",\"users:admin\"],\"never_expires\":true}"
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
KEY_JSON=$(create_key fuzz)
DECOY_JSON=$(create_key fuzz-decoy)
export FUZZ_API_KEY FUZZ_KEY_ID FUZZ_DECOY_ID
FUZZ_API_KEY=$(json_field key <<<"$KEY_JSON")
FUZZ_KEY_ID=$(json_field id <<<"$KEY_JSON")
FUZZ_DECOY_ID=$(json_field id <<<"$DECOY_JSON")

# --- Hooks: keep the harness from testing itself --------------------------------------------------
cat >"$WORK/hooks.py" <<'EOF'
import datetime
import os
import uuid

import schemathesis

_KEY_ID = os.environ["FUZZ_KEY_ID"]
_DECOY_ID = os.environ["FUZZ_DECOY_ID"]


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    # 1. The run authenticates with one API key. Schemathesis harvests ids from GET
    #    /api/v1/api-keys and would revoke, rotate, renew or delete that very key (every later
    #    request would then be a 401); such a request targets a decoy key instead.
    params = case.path_parameters
    if (
        params
        and params.get("id") == _KEY_ID
        and path.startswith("/api/v1/api-keys/{id}")
        and case.method.upper() != "GET"
    ):
        params["id"] = _DECOY_ID
    # 5. Stateful links fill `{id}` from an operation's `package_id`, which is null for a
    #    name-level operation (a prune): the path then says "None", which is no UUID and no
    #    value the schema allows. Such a link names no package: it gets a random id instead
    #    (a schema-valid request for a package that does not exist, answered 404).
    if params:
        for name, value in list(params.items()):
            if value is None or value == "None":
                params[name] = str(uuid.uuid4())
    # 2. An Idempotency-Key may not be reused for a different request (422); the generator
    #    repeats the same UUIDs across cases, so every well-formed key gets a fresh one.
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and _is_uuid(headers[name]):
                headers[name] = str(uuid.uuid4())
    # 3. A cursor is opaque and valid only when the service issued it, which no schema can
    #    describe: schema-valid (positive) cases leave it out; negative cases still send junk.
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if case.query and "cursor" in case.query and positive:
        del case.query["cursor"]
    # 4. A key's `expires_at` must lie in the future (within 3650 days): a rule on the clock,
    #    which a schema cannot state (the field's description does). Schema-valid cases get an
    #    instant a day ahead; negative cases keep what they were given.
    if (
        positive
        and case.method.upper() == "POST"
        and path in ("/api/v1/api-keys", "/api/v1/api-keys/{id}/renew")
        and isinstance(case.body, dict)
        and isinstance(case.body.get("expires_at"), str)
    ):
        tomorrow = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        case.body["expires_at"] = tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ")
EOF

cat >"$WORK/schemathesis.toml" <<EOF
hooks = "$WORK/hooks.py"

[headers]
X-API-Key = "\${FUZZ_API_KEY}"

# No crash cache (it would write .schemathesis/ here and replay old crashes first, so a seed
# would no longer name one run).
[cache]
enabled = false

# Nor Hypothesis' example database, for the same reason.
[generation]
database = "none"

# Answers a schema-valid request may legitimately get: the defaults plus 412 (a stale If-Match).
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

# GET /api/v1/passwords has rules between its parameters that no schema states (a parameter of
# the other mode, every character class off, minimums that do not fit the length, exclusions
# that empty a class): the operation's description lists them, and they answer 422 naming the
# field. Only for this operation, a schema-valid request may get that 422.
[[operations]]
include-name = "GET /api/v1/passwords"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "422", "429"]

# GET /api/v1/packages: sorting or filtering by version needs "name", and "version" is a cargo
# version requirement, a grammar no pattern states exactly; both answer 422 naming the field,
# as the parameters' descriptions say. Only for this operation, a schema-valid request may get
# that 422.
[[operations]]
include-name = "GET /api/v1/packages"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]

# POST /api/v1/package-names/{name}/prune: "keep" is optional in the schema, and required while
# retention is off (packages.keep_versions = 0, as here): a 422 naming "keep", as its
# description says. Only for this operation, a schema-valid request may get that 422.
[[operations]]
include-name = "POST /api/v1/package-names/{name}/prune"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]

# PUT /api/v1/packages/{id}/artifact: the bytes are checked against what the package declares
# (sha256, size_bytes) and what Content-Digest says, which no schema can state: a generated body
# or digest that does not match answers 422 naming the field, as the operation documents. Only
# for this operation, a schema-valid request may get that 422.
[[operations]]
include-name = "PUT /api/v1/packages/{id}/artifact"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "413", "422", "429", "5xx"]

# PUT /api/v1/packages/{id}/signature: the body is a minisign signature by a key trusted for the
# name (none is configured here), which no schema can state: a generated string answers 422
# naming "signature", one past 4096 bytes 413, as the operation documents. Only for this
# operation, a schema-valid request may get those.
[[operations]]
include-name = "PUT /api/v1/packages/{id}/signature"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "413", "422", "429", "5xx"]

# The defaults plus 412: RFC 9110 §13.2.1 evaluates preconditions before the content is read,
# so a wrong If-Match answers 412 even when the body is invalid too.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429", "5xx"]
EOF

# --- Run ----------------------------------------------------------------------------------------------
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
CMD=("$VENV/bin/st" --config-file "$WORK/schemathesis.toml" run "$BASE/api/v1/openapi.json"
     --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --no-color
     --report json,junit,ndjson --report-dir "$REPORT_DIR" "$@")
echo "fuzz: schemathesis $ST_VERSION against $BASE (seed $SEED, max examples $MAX_EXAMPLES)"
echo "fuzz: ${CMD[*]}"
status=0
# Hypothesis keeps its own files (constants, unicode data) in the temp dir, not in the repo.
HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis" timeout "$TIMEOUT" "${CMD[@]}" || status=$?

kill -0 "$SERVER_PID" 2>/dev/null || { echo "fuzz: the server died during the run; its log:"; tail -50 "$WORK/server.log"; status=1; }

# --- Summary from the JSON report --------------------------------------------------------------------
REPORT_JSON=$(ls -t "$REPORT_DIR"/json-*.json 2>/dev/null | head -1 || true)
if [ -n "$REPORT_JSON" ]; then
  python3 - "$REPORT_JSON" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
t = r["test_cases"]
n = sum(f["count"] for f in r["failures"])
print(f"fuzz: {t['generated']} test cases generated, {n} unique failures, {len(r['errors'])} errors "
      f"(stop reason: {r.get('stop_reason')})")
for f in r["failures"]:
    print(f"fuzz:   {f['code']} {f['title']}: {f['count']} ({', '.join(f['operations'])})")
print(f"fuzz: reports in {sys.argv[1].rsplit('/', 1)[0]}")
sys.exit(1 if n or r["errors"] else 0)
EOF
else
  echo "fuzz: no JSON report was written"
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (exit $status)"
  exit 1
fi
echo "fuzz: passed"
