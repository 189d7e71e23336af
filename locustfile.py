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
