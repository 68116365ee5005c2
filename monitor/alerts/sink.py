"""What every sink is to the engine: an id (its key in an alert's deliveries), a kind and a URL
safe to show (logs, the metric's `url` label), whether it is re-sent while an alert fires, and
`send`, which raises DeliveryFailed with a reason that carries no secret."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import httpx

from monitor.store.alerts import AlertRecord


USER_AGENT = "monitor/0.1"


class DeliveryFailed(Exception):
    pass


class Sink(Protocol):
    id: str
    kind: str
    url: str
    repeats: bool

    async def send(self, client: httpx.AsyncClient, alerts: list[AlertRecord], now: datetime) -> None: ...


def transport_failure(e: httpx.HTTPError, url: str) -> str:
    """Why a request got no answer; `url` (which may hold a secret in its path) is cut out."""
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    text = str(e).replace(url, "<url>") if url else str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
