"""Alertmanager API v2 sink: POST <url>/api/v2/alerts, as Prometheus sends.

Alertmanager keys an alert by its label set, so sending the same alert again only refreshes
it: that is how a firing alert stays firing (re-sent every resend_interval with endsAt a few
of those ahead — if the agent dies, Alertmanager resolves it by itself when endsAt passes)
and how a resolution is said (endsAt = when the episode closed, in the past).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from monitor.alerts.sink import DeliveryFailed, transport_failure
from monitor.model import format_time
from monitor.store.alerts import AlertRecord

API_PATH = "/api/v2/alerts"
# The body of an error answer kept in the log line (Alertmanager explains a refused alert there).
ERROR_BODY_CHARS = 300


class AlertmanagerSink:
    kind = "alertmanager"
    repeats = True  # re-sent while firing

    def __init__(self, url: str, *, valid_for: float, timeout: float):
        self.url = url.rstrip("/")
        self.id = f"alertmanager {self.url}"
        self.valid_for = valid_for  # seconds a firing alert stays valid without another send
        self.timeout = timeout

    def payload(self, alerts: list[AlertRecord], now: datetime) -> list[dict[str, object]]:
        ends = now + timedelta(seconds=self.valid_for)
        return [
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": format_time(a.fired_at),
                "endsAt": format_time(a.resolved_at if a.resolved_at is not None else ends),
            }
            for a in alerts
        ]

    async def send(self, client: httpx.AsyncClient, alerts: list[AlertRecord], now: datetime) -> None:
        try:
            response = await client.post(self.url + API_PATH, json=self.payload(alerts, now), timeout=self.timeout)
        except httpx.HTTPError as e:
            raise DeliveryFailed(transport_failure(e, "")) from None
        if response.status_code // 100 != 2:
            raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:ERROR_BODY_CHARS].strip()}")
