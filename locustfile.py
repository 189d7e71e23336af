"""Load tests for Depot (https://locust.io).

    make locust                      # headless, fixed time, CSV + HTML under bench/reports/
    locust -f locustfile.py --host http://127.0.0.1:8000   # the web UI

Credentials come from the environment:

    DEPOT_ADMIN_SECRET   the admin secret: the setup step creates the API keys and the packages
                         the users need, and the key-management user uses it
    DEPOT_API_KEY        optional: a key with packages:read, packages:write, operations:read
                         (otherwise the setup step creates one)
    LOCUST_SEED_PACKAGES packages created for browsing (default 200)

User classes and their share of the simulated users:

    PasswordClient   (3)  GET /api/v1/passwords, passwords and passphrases
    Browser          (4)  list packages (with filters, following the next cursor), get one
                          (sometimes conditionally, If-None-Match -> 304)
    LifecycleUser    (2)  create -> download -> activate, polling each operation until final
    AccountUser      (1)  registers once, then /users/me with its access token and a token
                          refresh now and then (needs accounts.registration_enabled, off by
                          default; without it these users stay idle)
    KeyAdmin         (1)  API-key management at a low rate: create, get, rotate, revoke, delete
    Prober           (1)  /health/live and /health/ready, as an orchestrator does
"""

import os
import random
import time
import uuid

import requests
from locust import HttpUser, between, events, task

ADMIN_SECRET = os.environ.get("DEPOT_ADMIN_SECRET", "")
SEED = int(os.environ.get("LOCUST_SEED_PACKAGES", "200"))
WRITER_SCOPES = ["packages:read", "packages:write", "operations:read"]
FINAL = {"succeeded", "failed", "cancelled"}

# Filled by the setup step, shared by every user of this process.
shared = {"key": os.environ.get("DEPOT_API_KEY", ""), "package_ids": []}


@events.test_start.add_listener
def setup(environment, **_kwargs):
    """Creates what the users need: an API key (unless given) and packages to browse."""
    host = environment.host.rstrip("/")
    if not shared["key"]:
        if not ADMIN_SECRET:
            raise SystemExit("set DEPOT_ADMIN_SECRET (or DEPOT_API_KEY) for the load test")
        r = requests.post(
            f"{host}/api/v1/api-keys",
            headers={"X-Admin-Secret": ADMIN_SECRET},
            json={"name": "locust", "scopes": WRITER_SCOPES, "expires_in_days": 1},
            timeout=30,
        )
        r.raise_for_status()
        shared["key"] = r.json()["key"]
    headers = {"X-API-Key": shared["key"]}
    run = uuid.uuid4().hex[:8]
    for i in range(SEED):
        r = requests.post(
            f"{host}/api/v1/packages",
            headers=headers,
            json={"name": f"seed-{run}-{i:04d}", "version": "1.0.0", "description": "load-test seed"},
            timeout=30,
        )
        r.raise_for_status()
        shared["package_ids"].append(r.json()["id"])


def key_headers():
    return {"X-API-Key": shared["key"]}


class PasswordClient(HttpUser):
    """A client of the original password service: the same query, many times."""

    weight = 3
    wait_time = between(0.1, 0.5)

    @task(5)
    def password(self):
        self.client.get(
            "/api/v1/passwords?password_length=16&password_numbers=true"
            "&password_lower_case_chars=true&password_upper_case_chars=true"
            "&password_special_symbols=true",
            name="/api/v1/passwords",
        )

    @task(1)
    def passphrase(self):
        self.client.get("/api/v1/passwords?mode=passphrase&words=6", name="/api/v1/passwords (passphrase)")


class Browser(HttpUser):
    """Someone looking around the registry: lists, filters, pages, opens packages."""

    weight = 4
    wait_time = between(0.2, 1.0)

    def on_start(self):
        self.etags = {}

    @task(3)
    def list_packages(self):
        with self.client.get(
            "/api/v1/packages?limit=50", headers=key_headers(), name="/api/v1/packages?limit=50", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return
            cursor = r.json().get("next_cursor")
        if cursor and random.random() < 0.5:
            self.client.get(
                f"/api/v1/packages?limit=50&cursor={cursor}",
                headers=key_headers(),
                name="/api/v1/packages?limit=50&cursor=",
            )

    @task(1)
    def filter_packages(self):
        self.client.get(
            "/api/v1/packages?name=seed-&sort=name&limit=20",
            headers=key_headers(),
            name="/api/v1/packages?name=&sort=name",
        )

    @task(6)
    def get_package(self):
        if not shared["package_ids"]:
            return
        pid = random.choice(shared["package_ids"])
        headers = key_headers()
        etag = self.etags.get(pid)
        if etag and random.random() < 0.5:
            headers["If-None-Match"] = etag
        with self.client.get(
            f"/api/v1/packages/{pid}", headers=headers, name="/api/v1/packages/{id}", catch_response=True
        ) as r:
            if r.status_code in (200, 304):
                if "ETag" in r.headers:
                    self.etags[pid] = r.headers["ETag"]
                r.success()
            else:
                r.failure(f"status {r.status_code}")


class LifecycleUser(HttpUser):
    """A release pipeline: registers a package, downloads it, activates it, and waits."""

    weight = 2
    wait_time = between(0.5, 2.0)

    def wait_operation(self, op, name):
        deadline = time.time() + 120
        while time.time() < deadline:
            r = self.client.get(f"/api/v1/operations/{op['id']}", headers=key_headers(), name="/api/v1/operations/{id}")
            if r.status_code == 200 and r.json()["status"] in FINAL:
                status = r.json()["status"]
                if status != "succeeded":
                    events.request.fire(
                        request_type="OPERATION", name=name, response_time=0, response_length=0,
                        exception=Exception(f"operation {status}"), context={},
                    )
                return status
            time.sleep(float(r.headers.get("Retry-After", "1")) / 4)
        return "timeout"

    @task
    def lifecycle(self):
        start = time.time()
        r = self.client.post(
            "/api/v1/packages",
            headers=key_headers(),
            json={"name": f"lc-{uuid.uuid4().hex}", "version": "1.0.0"},
            name="/api/v1/packages (create)",
        )
        if r.status_code != 201:
            return
        pid = r.json()["id"]
        for step in ("download", "activate"):
            r = self.client.post(
                f"/api/v1/packages/{pid}/{step}",
                headers={**key_headers(), "Idempotency-Key": str(uuid.uuid4())},
                name=f"/api/v1/packages/{{id}}/{step}",
            )
            if r.status_code != 202 or self.wait_operation(r.json(), step) != "succeeded":
                return
        events.request.fire(
            request_type="LIFECYCLE", name="create -> download -> activate",
            response_time=(time.time() - start) * 1000, response_length=0, exception=None, context={},
        )


_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        print(f"locustfile: {message}")


class AccountUser(HttpUser):
    """A person signed in with a user account: uses its access token, refreshes it sometimes."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self):
        email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        password = uuid.uuid4().hex
        self.tokens = None
        with self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password},
            name="/api/v1/auth/register",
            catch_response=True,
        ) as r:
            # Registration is off by default: this user class then has nothing to do (start
            # Depot with DEPOT__ACCOUNTS__REGISTRATION_ENABLED=true to load it).
            if r.status_code == 403 and "registration_disabled" in r.text:
                r.success()
                _warn_once("registration is off on this Depot: AccountUser users stay idle")
                return
            # Registrations are limited per client address (auth.registrations_per_hour, 10 by
            # default): every locust user comes from one address. Start Depot with
            # DEPOT__AUTH__REGISTRATIONS_PER_HOUR=0 and DEPOT__AUTH__SIGN_INS_PER_MINUTE=0 to
            # load sign-in from one machine.
            if r.status_code == 429:
                r.success()
                _warn_once("this address used up its registrations: further AccountUser users stay idle")
                return
        r = self.client.post("/api/v1/auth/login", json={"email": email, "password": password}, name="/api/v1/auth/login")
        self.tokens = r.json() if r.status_code == 200 else None

    @task(5)
    def me(self):
        if self.tokens:
            self.client.get(
                "/api/v1/users/me",
                headers={"Authorization": f"Bearer {self.tokens['access_token']}"},
                name="/api/v1/users/me",
            )

    @task(1)
    def refresh(self):
        if self.tokens:
            r = self.client.post(
                "/api/v1/auth/refresh", json={"refresh_token": self.tokens["refresh_token"]}, name="/api/v1/auth/refresh"
            )
            if r.status_code == 200:
                self.tokens = r.json()


class KeyAdmin(HttpUser):
    """An operator managing API keys, rarely."""

    weight = 1
    wait_time = between(5, 10)

    @task
    def manage_a_key(self):
        if not ADMIN_SECRET:
            return
        admin = {"X-Admin-Secret": ADMIN_SECRET}
        r = self.client.post(
            "/api/v1/api-keys",
            headers=admin,
            json={"name": "locust-admin", "scopes": ["packages:read"], "expires_in_days": 1},
            name="/api/v1/api-keys (create)",
        )
        if r.status_code != 201:
            return
        kid = r.json()["id"]
        self.client.get(f"/api/v1/api-keys/{kid}", headers=admin, name="/api/v1/api-keys/{id}")
        r = self.client.post(f"/api/v1/api-keys/{kid}/rotate", headers=admin, json={}, name="/api/v1/api-keys/{id}/rotate")
        new = r.json()["id"] if r.status_code == 201 else None
        self.client.get("/api/v1/api-keys?limit=20", headers=admin, name="/api/v1/api-keys")
        if new:
            self.client.post(f"/api/v1/api-keys/{new}/revoke", headers=admin, name="/api/v1/api-keys/{id}/revoke")
        for k in filter(None, [kid, new]):
            self.client.delete(f"/api/v1/api-keys/{k}", headers=admin, name="/api/v1/api-keys/{id} (delete)")


class Prober(HttpUser):
    """What a load balancer and an orchestrator do: liveness and readiness probes."""

    weight = 1
    wait_time = between(0.5, 1.5)

    @task(3)
    def live(self):
        self.client.get("/health/live")

    @task(1)
    def ready(self):
        self.client.get("/health/ready")
