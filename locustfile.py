"""Load tests for Depot (https://locust.io).

    locust -f locustfile.py --host http://127.0.0.1:8000

Starts small: components add their user classes here as they land.
"""

from locust import HttpUser, between, task


class Prober(HttpUser):
    """What a load balancer and an orchestrator do: liveness and readiness probes."""

    wait_time = between(0.5, 1.5)

    @task(3)
    def live(self):
        self.client.get("/health/live")

    @task(1)
    def ready(self):
        self.client.get("/health/ready")


class PasswordClient(HttpUser):
    """A client of the original password service: the same query, many times."""

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
