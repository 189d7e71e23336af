#!/usr/bin/env bash
# make locust: runs locustfile.py headless for a fixed time against a running Depot and writes
# CSV + HTML reports, plus a README with the exact command, the machine and the settings.
#
#   LOCUST_HOST=http://127.0.0.1:8000 DEPOT_ADMIN_SECRET=… make locust
#
# Knobs: LOCUST_USERS (50), LOCUST_SPAWN_RATE (10), LOCUST_TIME (60s), LOCUST_NAME (run name,
# the report directory under bench/reports/), LOCUST_NOTES (free text for the README: how the
# server was started). Locust comes pinned from PyPI into .venv-locust/.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${LOCUST_HOST:-http://127.0.0.1:8000}
USERS=${LOCUST_USERS:-50}
RATE=${LOCUST_SPAWN_RATE:-10}
TIME=${LOCUST_TIME:-60s}
NAME=${LOCUST_NAME:-$(date -u +%Y%m%d-%H%M%S)}
OUT=bench/reports/$NAME
VENV=.venv-locust
if [ ! -x "$VENV/bin/locust" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check locust==2.47.0
fi
curl -fsS "$HOST/health/ready" >/dev/null || { echo "no Depot answering at $HOST (start one: make run, make cluster)"; exit 1; }
[ -n "${DEPOT_ADMIN_SECRET:-}${DEPOT_API_KEY:-}" ] || { echo "set DEPOT_ADMIN_SECRET (or DEPOT_API_KEY)"; exit 1; }
mkdir -p "$OUT"
CMD=("$VENV/bin/locust" -f locustfile.py --headless --host "$HOST" -u "$USERS" -r "$RATE" -t "$TIME"
     --csv "$OUT/locust" --html "$OUT/report.html" --only-summary --stop-timeout 10)
echo "${CMD[*]}"
status=0
"${CMD[@]}" 2>"$OUT/locust.log" || status=$?
{
  echo "# Locust run \`$NAME\`"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Command: \`LOCUST_HOST=$HOST LOCUST_USERS=$USERS LOCUST_SPAWN_RATE=$RATE LOCUST_TIME=$TIME make locust\`"
  echo "  (runs \`locust -f locustfile.py --headless --host $HOST -u $USERS -r $RATE -t $TIME --csv … --html …\`)"
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB; Locust ran on the same machine, competing for the CPU"
  echo "- Locust $("$VENV/bin/locust" --version 2>&1 | awk '{print $2}'), Depot $(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo "- Server: ${LOCUST_NOTES:-(not described)}"
  echo "- Exit status of locust: $status (non-zero when any request failed)"
  echo
  echo "## Aggregated (from locust_stats.csv)"
  echo
  python3 - "$OUT/locust_stats.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| type | name | requests | failures | median ms | p95 ms | p99 ms | req/s |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['Type']} | {r['Name']} | {r['Request Count']} | {r['Failure Count']} | {r['Median Response Time']} | "
          f"{r['95%']} | {r['99%']} | {float(r['Requests/s']):.1f} |")
PY
} >"$OUT/README.md"
echo "reports in $OUT"
exit $status
