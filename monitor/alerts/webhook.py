"""Generic JSON webhook sink: one POST when alerts fire and one when they resolve.

The body is Alertmanager's webhook shape, close enough for receivers that read it
(`status`, `alerts[].labels/annotations/startsAt/endsAt`), plus the agent and the episode id:

    {"version": "1", "sender": "monitor", "agent": "probe-hk-1", "sent_at": "…Z",
     "alerts": [{"status": "firing", "labels": {…}, "annotations": {…},
                 "startsAt": "…Z", "endsAt": null, "episode_id": "…"}]}

Authentication, both optional: `Authorization: Bearer <token>` (token_env / token_file), and
`X-Monitor-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` (secret_env / secret_file),
as GitHub signs its webhooks; `sent_at` in the signed body lets a receiver refuse replays.
Secrets are read at each send and never kept, logged or stored; the URL (whose path may be a
secret too, as with chat webhooks) is shown as scheme://host:port only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from monitor.alerts.sink import USER_AGENT, DeliveryFailed, transport_failure
from monitor.config import WebhookConfig
from monitor.model import format_time
from monitor.store.alerts import AlertRecord
from monitor import credentials

SIGNATURE_HEADER = "X-Monitor-Signature-256"


class _HideWebhookURLs(logging.Filter):
    """httpx logs every request's URL at INFO. A webhook's URL may be a secret itself (chat
    webhooks carry their token in the path), so on httpx's log its requests show as
    scheme://host:port/<hidden>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.urls:
            record.args = tuple(self._shown(a) for a in record.args)
        return True

    def _shown(self, arg: object) -> object:
        text = str(arg)
        for url in self.urls:
            if text.startswith(url):
                parts = urlsplit(url)
                return f"{parts.scheme}://{parts.netloc}/<hidden>"
        return arg


_HIDDEN = _HideWebhookURLs()
logging.getLogger("httpx").addFilter(_HIDDEN)


class SecretUnavailable(DeliveryFailed):
    """A configured token or key could not be read; the message names its source only."""


def read_secret(env: str | None, file: str | None, what: str) -> str | None:
    """The secret now (monitor.credentials: env or the file's first line); None if neither is configured."""
    try:
        value = credentials.read_secret(env=env, file=file, what=f"webhook {what}")
    except credentials.CredentialsUnavailable as e:
        raise SecretUnavailable(str(e)) from None
    if value is not None and not value.strip():
        raise SecretUnavailable(f"webhook {what}: {f'environment variable {env}' if env else file} is empty")
    return value.strip() if value is not None else None


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    kind = "webhook"
    repeats = False  # one notification per transition

    def __init__(self, config: WebhookConfig, *, agent: str, timeout: float):
        self.config = config
        self.agent = agent
        self.timeout = timeout
        parts = urlsplit(config.url)
        self.url = f"{parts.scheme}://{parts.netloc}"  # what logs and labels may show
        _HIDDEN.urls.add(config.url)
        # Told apart by the whole URL (a new URL is a new receiver), named without it.
        self.id = f"webhook {self.url} {hashlib.sha256(config.url.encode()).hexdigest()[:12]}"

    def body(self, alerts: list[AlertRecord], now: datetime) -> bytes:
        document = {
            "version": "1", "sender": "monitor", "agent": self.agent, "sent_at": format_time(now),
            "alerts": [
                {
                    "status": "firing" if a.firing else "resolved", "labels": a.labels, "annotations": a.annotations,
                    "startsAt": format_time(a.fired_at), "endsAt": format_time(a.resolved_at) if a.resolved_at else None,
                    "episode_id": a.episode_id,
                }
                for a in alerts
            ],
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    async def send(self, client: httpx.AsyncClient, alerts: list[AlertRecord], now: datetime) -> None:
        body = self.body(alerts, now)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        token = read_secret(self.config.token_env, self.config.token_file, "token")
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        secret = read_secret(self.config.secret_env, self.config.secret_file, "secret")
        if secret is not None:
            headers[SIGNATURE_HEADER] = signature(secret, body)
        try:
            response = await client.post(self.config.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise DeliveryFailed(transport_failure(e, self.config.url)) from None
        if response.status_code // 100 != 2:
            raise DeliveryFailed(f"HTTP {response.status_code}")
