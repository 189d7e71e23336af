#!/usr/bin/env bash
# The container smoke test (part of .ci/run): build the image, bring the compose stack up, run a
# package lifecycle, an artifact round trip and API-key checks through nginx, check how the
# Depot containers run (uid 65532, no shell, read-only root file system), that every health
# check turned healthy, that ports are published on 127.0.0.1 only and containers sit only on
# the project's networks; then bring it all down and check nothing is left.
#
#   scripts/docker-smoke.sh [--prebuilt PATH]   PATH: a release binary to put in the image
#                                               instead of compiling in it (.ci/run passes its own)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/docker-lib.sh
. scripts/docker-lib.sh
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME_SMOKE:-depot-smoke}
export DEPOT_HTTP_PORT=${DEPOT_SMOKE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
export DEPOT_IMAGE=${DEPOT_IMAGE:-depot:local}
P=$COMPOSE_PROJECT_NAME
T0=$SECONDS
fail() { echo "FAIL: $*" >&2; exit 1; }

ensure_engine
ensure_compose
down() {
  "${COMPOSE_CMD[@]}" --env-file docker/.env -f docker/docker-compose.yml --profile test down -v --remove-orphans >/dev/null 2>&1 || true
}
trap 'rc=$?; [ $rc -ne 0 ] && down; exit $rc' EXIT

bash scripts/docker.sh build "$@"
T_BUILD=$SECONDS
bash scripts/docker.sh up
T_UP=$SECONDS
echo "docker smoke: image built in $((T_BUILD - T0)) s, stack healthy $((T_UP - T_BUILD)) s after up"

BASE=http://127.0.0.1:$DEPOT_HTTP_PORT
SECRET=$(cat docker/secrets/admin_secret)
python3 - "$BASE" "$SECRET" <<'PY'
import hashlib, json, os, sys, time, urllib.error, urllib.request
base, secret = sys.argv[1], sys.argv[2]
def call(method, path, body=None, headers=None, raw=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, method=method, data=data, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
# API keys: the admin secret creates one; it works, a wrong one and a missing one do not, and a
# read-only key cannot write.
s, b = call("POST", "/api/v1/api-keys", {"name": "smoke", "scopes": ["packages:read", "packages:write", "operations:read"]},
            {"X-Admin-Secret": secret})
assert s == 201, (s, b)
key = json.loads(b)["key"]
s, b = call("POST", "/api/v1/api-keys", {"name": "smoke-ro", "scopes": ["packages:read"]}, {"X-Admin-Secret": secret})
assert s == 201, (s, b)
ro = json.loads(b)["key"]
K = {"X-API-Key": key}
assert call("GET", "/api/v1/packages", headers=K)[0] == 200
assert call("GET", "/api/v1/packages", headers={"X-API-Key": key[:-4] + "AAAA"})[0] == 401
assert call("GET", "/api/v1/packages")[0] == 401
assert call("POST", "/api/v1/packages", {"name": "smoke-ro", "version": "1.0.0"}, {"X-API-Key": ro})[0] == 403
assert call("GET", "/api/v1/api-keys", headers={"X-Admin-Secret": "x" * 40})[0] == 401
print("docker smoke: API keys created, accepted, refused when wrong, missing or short of a scope")
def wait(op):
    deadline = time.time() + 90
    while time.time() < deadline:
        o = json.loads(call("GET", f"/api/v1/operations/{op}", headers=K)[1])
        if o["status"] in ("succeeded", "failed", "cancelled"):
            return o
        time.sleep(0.1)
    raise SystemExit(f"operation {op} did not finish")
ids = []
for i in range(6):
    s, b = call("POST", "/api/v1/packages", {"name": f"smoke-{i % 3}", "version": f"1.{i}.0"}, K)
    assert s == 201, (s, b)
    ids.append(json.loads(b)["id"])
for kind in ("download", "activate"):
    ops = []
    for pid in ids:
        s, b = call("POST", f"/api/v1/packages/{pid}/{kind}", headers=K)
        assert s == 202, (s, b)
        ops.append(json.loads(b)["id"])
    for op in ops:
        o = wait(op)
        assert o["status"] == "succeeded", o
for name in ("smoke-0", "smoke-1", "smoke-2"):
    s, b = call("GET", f"/api/v1/package-names/{name}", headers=K)
    assert s == 200, (s, b)
    view = json.loads(b)
    active = [v for v in view["versions"] if v["status"] == "active"]
    assert len(active) == 1 and view["active"]["id"] == active[0]["id"], view
print("docker smoke: 6 packages of 3 names downloaded and activated through nginx, one active per name")
blob = os.urandom(2 * 1024 * 1024 + 5)
s, b = call("POST", "/api/v1/packages", {"name": "smoke-artifact", "version": "1.0.0"}, K)
pid = json.loads(b)["id"]
s, b = call("PUT", f"/api/v1/packages/{pid}/artifact", headers={**K, "Content-Type": "application/octet-stream"}, raw=blob)
assert s == 200 and json.loads(b)["sha256"] == hashlib.sha256(blob).hexdigest(), (s, b)
for _ in range(4):
    s, b = call("GET", f"/api/v1/packages/{pid}/artifact", headers=K)
    assert s == 200 and b == blob, s
print(f"docker smoke: a {len(blob)}-byte artifact uploaded through nginx and served back by the replicas")
PY

ids=$(docker ps -aq --filter "label=com.docker.compose.project=$P")
[ -n "$ids" ] || fail "no containers of project $P"
for id in $ids; do
  read -r name service state health user ro <<<"$(docker inspect -f '{{.Name}} {{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{if .Config.User}}{{.Config.User}}{{else}}root{{end}} {{.HostConfig.ReadonlyRootfs}}' "$id")"
  case "$service" in
    api|worker|migrate)
      [ "$user" = 65532:65532 ] || fail "$name runs as $user, not 65532:65532"
      [ "$ro" = true ] || fail "$name has a writable root file system"
      if [ "$state" = running ]; then
        for sh in /bin/sh sh /bin/bash busybox; do
          if docker exec "$id" "$sh" -c true >/dev/null 2>&1; then fail "$name has a shell ($sh)"; fi
        done
      fi
      ;;
  esac
  case "$service" in
    migrate) [ "$state" = exited ] || fail "$name is $state" ;;
    worker) [ "$state" = running ] || fail "$name is $state" ;;
    *) [ "$state" = running ] && [ "$health" = healthy ] || fail "$name is $state / health $health" ;;
  esac
  # Published ports: loopback only.
  if docker port "$id" | grep -vE -- '-> 127\.0\.0\.1:[0-9]+$' | grep -q .; then
    fail "$name publishes a port beyond 127.0.0.1: $(docker port "$id" | tr '\n' ' ')"
  fi
  # Networks: only the ones this project created.
  for net in $(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$id"); do
    proj=$(docker network inspect -f '{{index .Labels "com.docker.compose.project"}}' "$net")
    [ "$proj" = "$P" ] || fail "$name is on network $net, which this project did not create"
  done
done
echo "docker smoke: Depot containers run as 65532:65532, read-only, without a shell; every health check healthy; ports on 127.0.0.1 only; project networks only"
# Both workers ran operations.
for id in $(docker ps -q --filter "label=com.docker.compose.project=$P" --filter "label=com.docker.compose.service=worker"); do
  docker logs "$id" 2>&1 | grep -q 'operation finished' || fail "worker $(docker inspect -f '{{.Name}}' "$id") ran no operation"
done
echo "docker smoke: both workers ran operations"

down
left=$(docker ps -aq --filter "label=com.docker.compose.project=$P")
[ -z "$left" ] || fail "containers left after down: $left"
left=$(docker network ls -q --filter "label=com.docker.compose.project=$P")
[ -z "$left" ] || fail "networks left after down: $left"
left=$(docker volume ls -q --filter "label=com.docker.compose.project=$P")
[ -z "$left" ] || fail "volumes left after down: $left"
echo "docker smoke: passed in $((SECONDS - T0)) s; nothing of project $P left"
