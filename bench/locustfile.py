"""The classic user of an items API: reads /items/1 and checks /health, thinking 1-5 s between.

    locust -f bench/locustfile.py --host http://127.0.0.1:8000 --headless -u 100 -r 20 -t 1m

A 200 whose body carries an "error" object is counted as a failure: status codes alone prove
nothing for an aggregate that degrades into error objects.
"""

from __future__ import annotations

from locust import HttpUser, between, task


class ItemsUser(HttpUser):
    wait_time = between(1, 5)

    @task(3)
    def item(self) -> None:
        with self.client.get("/items/1", name="/items/{id}", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif b'"error"' in response.content:
                response.failure("an item resolved to an error object")
            else:
                response.success()

    @task(1)
    def health(self) -> None:
        self.client.get("/health")
