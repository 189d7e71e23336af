#!/usr/bin/env bash
# The scaled topology on loopback, without Docker: nginx (Debian's package) in front of two
# `depot serve` API processes, two `depot worker` processes, on the local PostgreSQL and
# RabbitMQ.
#
#   scripts/cluster.sh run    start it and keep it up until Ctrl-C (make cluster)
#   scripts/cluster.sh test   start it, drive packages through their lifecycle via nginx, check
#                             that both API replicas and both workers took part, stop everything
#                             and check that nothing is left behind (make cluster-test)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
PG=${DEPOT_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
AMQP=${DEPOT_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PROFILE=${CLUSTER_PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

bash scripts/services.sh >/dev/null
if ! command -v nginx >/dev/null 2>&1; then
  echo "installing nginx (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p depot-api --bin depot
else
  cargo build --locked -p depot-api --bin depot
fi
BIN="$TARGET_DIR/$PROFILE/depot"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
DB="depot_cluster_$$"
PREFIX="depot-cluster-$$."
PIDS=()
NGINX_PID=
stop_all() {
  set +e
  [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # nginx quits gracefully (finishing open connections); if that takes more than 5 s, it is
  # told to stop at once.
  if [ -n "$NGINX_PID" ]; then
    for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$NGINX_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  for q in operations operations.retry operations.dead; do rabbitmqctl -q delete_queue "${PREFIX}$q" >/dev/null 2>&1; done
  set -e
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

psql "$PG" -qc "CREATE DATABASE $DB"
export DATABASE_URL="${PG%/*}/$DB" AMQP_URL="$AMQP" DEPOT__QUEUE__QUEUE_PREFIX="$PREFIX" \
  DEPOT_ADMIN_SECRET=${DEPOT_ADMIN_SECRET:-cluster-admin-secret-0123456789abcdef} DEPOT__LOG__FORMAT=json \
  DEPOT__EXECUTOR__SIMULATED_DURATION_MS=${CLUSTER_OPERATION_MS:-300} \
  DEPOT__ARTIFACTS__URL="file://$WORK/artifacts"
"$BIN" migrate up >/dev/null 2>"$WORK/migrate.log"
# One signing key for every replica (each would otherwise make its own, and refuse the others'
# access tokens); nginx on loopback is the trusted proxy that names the client.
DEPOT_JWT_SIGNING_KEY=${DEPOT_JWT_SIGNING_KEY:-$("$BIN" users keygen)}
export DEPOT_JWT_SIGNING_KEY DEPOT__SERVER__TRUSTED_PROXIES=127.0.0.1

API_PORTS=()
for i in 1 2; do
  port=$(free_port)
  API_PORTS+=("$port")
  (cd "$WORK" && exec env DEPOT__SERVER__HOST=127.0.0.1 DEPOT__SERVER__PORT="$port" DEPOT__WORKER__EMBEDDED=false \
    "$BIN" serve >"$WORK/api$i.log" 2>&1) &
  PIDS+=($!)
done
for i in 1 2; do
  (cd "$WORK" && exec "$BIN" worker >"$WORK/worker$i.log" 2>&1) &
  PIDS+=($!)
done
NGINX_PORT=${CLUSTER_PORT:-$(free_port)}
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  upstream depot {
    server 127.0.0.1:${API_PORTS[0]};
    server 127.0.0.1:${API_PORTS[1]};
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /metrics { return 404; }
    location ~ ^/api/v1/packages/[^/]+/artifact\$ {
      client_max_body_size 1g;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_pass http://depot;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Request-Id \$request_id;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
    location / {
      proxy_pass http://depot;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Request-Id \$request_id;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 120s;
    }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;'
for _ in $(seq 1 50); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.1; done
NGINX_PID=$(cat "$WORK/nginx.pid")
BASE="http://127.0.0.1:$NGINX_PORT"
for port in "${API_PORTS[@]}"; do
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null || { echo "an API process did not start"; cat "$WORK"/api*.log; exit 1; }
done
echo "cluster up: nginx $BASE -> API 127.0.0.1:${API_PORTS[0]}, 127.0.0.1:${API_PORTS[1]}; 2 workers; database $DB"

if [ "$MODE" = run ]; then
  echo "admin secret: \$DEPOT_ADMIN_SECRET (as exported); Ctrl-C stops everything"
  wait "${PIDS[0]}"
  exit 0
fi

# --- test: the lifecycle across the cluster ---
N=${CLUSTER_PACKAGES:-12}
KEY=$(curl -fsS -X POST "$BASE/api/v1/api-keys" -H "X-Admin-Secret: $DEPOT_ADMIN_SECRET" -H 'Content-Type: application/json' \
  -d '{"name":"cluster","scopes":["packages:read","packages:write","operations:read"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
# The user the test signs in as (self-registration is off by default).
DEPOT_NEW_USER_PASSWORD="cluster test password" \
  "$BIN" users create --email cluster@example.com --role user >/dev/null
python3 - "$BASE" "$KEY" "$N" <<'PY'
import json, sys, time, urllib.request
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")
def wait(op):
    deadline = time.time() + 60
    while time.time() < deadline:
        _, o = call("GET", f"/api/v1/operations/{op}")
        if o["status"] in ("succeeded", "failed", "cancelled"):
            return o
        time.sleep(0.05)
    raise SystemExit(f"operation {op} did not finish")
ids = []
for i in range(n):
    status, p = call("POST", "/api/v1/packages", {"name": f"cluster-{i}", "version": "1.0.0"})
    assert status == 201, status
    ids.append(p["id"])
for kind in ("download", "activate"):
    ops = []
    for pid in ids:
        status, op = call("POST", f"/api/v1/packages/{pid}/{kind}")
        assert status == 202, status
        ops.append(op["id"])
    for op in ops:
        o = wait(op)
        assert o["status"] == "succeeded", o
for pid in ids:
    _, p = call("GET", f"/api/v1/packages/{pid}")
    assert p["status"] == "active", p
print(f"cluster test: {n} packages created, downloaded and activated through nginx")
# An artifact larger than nginx's default body limit goes in through one replica and comes out
# of both (they share the artifact storage).
import hashlib, os
blob = os.urandom(3 * 1024 * 1024 + 17)
status, p = call("POST", "/api/v1/packages", {"name": "cluster-artifact", "version": "1.0.0"})
req = urllib.request.Request(base + f"/api/v1/packages/{p['id']}/artifact", method="PUT", data=blob,
                             headers={"X-API-Key": key, "Content-Type": "application/octet-stream"})
with urllib.request.urlopen(req, timeout=60) as r:
    stored = json.loads(r.read())
assert stored["status"] == "downloaded" and stored["sha256"] == hashlib.sha256(blob).hexdigest(), stored
for _ in range(4):
    req = urllib.request.Request(base + f"/api/v1/packages/{p['id']}/artifact", headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and r.read() == blob
print(f"cluster test: a {len(blob)}-byte artifact uploaded through nginx and served back by every replica")
# A user signs in on one replica; the access token works on both (nginx alternates).
def anon(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")
creds = {"email": "cluster@example.com", "password": "cluster test password"}
# (Created with `depot users create` above: self-registration is off by default.)
status, tokens = anon("POST", "/api/v1/auth/login", creds)
assert status == 200, status
for _ in range(4):
    status, me = anon("GET", "/api/v1/users/me", token=tokens["access_token"])
    assert status == 200 and me["email"] == creds["email"], (status, me)
print("cluster test: one user's access token accepted by every replica")
PY
# Both API replicas served requests, and both workers ran operations.
for i in 1 2; do
  grep -q '"route":"/api/v1/packages"' "$WORK/api$i.log" || { echo "FAIL: API replica $i served no package request"; exit 1; }
done
for i in 1 2; do
  grep -q 'operation finished' "$WORK/worker$i.log" || { echo "FAIL: worker $i ran no operation"; exit 1; }
done
echo "cluster test: both API replicas and both workers took part"
LEFT=("${PIDS[@]}" "$NGINX_PID")
stop_all
for p in "${LEFT[@]}"; do
  if kill -0 "$p" 2>/dev/null; then echo "FAIL: process $p ($(ps -o args= -p "$p")) is still running"; exit 1; fi
done
echo "cluster: 1 passed, 0 failed"
