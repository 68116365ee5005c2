"""The daemon's small HTTP endpoint: GET /metrics, GET /healthz, GET /readyz, POST /-/reload.

/healthz is liveness: 200 while the writer, the scheduler and the judge do their jobs (a
store outage is not a failure: results spool), 503 when one of them has stopped; one line per
part. /readyz is readiness, as JSON with every part's detail: 200 once results reach the
store, 503 while they spool.

/-/reload is off (403) when no reload hook is given: the daemon gives none when the
listener is reachable beyond loopback, unless exporter.enable_reload says otherwise.

A deliberately tiny HTTP/1.1 server on asyncio: one request per connection, bounded request
head, bounded wait. Pulling a web framework in for three routes would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from monitor.config import split_host_port
from monitor.export.exposition import exposition

log = logging.getLogger(__name__)

MAX_HEAD = 8192
READ_TIMEOUT = 5.0

ReloadHook = Callable[[], Awaitable[tuple[bool, str]]]
# {"status": "ok" | "degraded" | "failing", "ready": bool, "<part>": {"status": …, …}, …}
HealthHook = Callable[[], dict[str, Any]]


def _no_detail() -> dict[str, Any]:
    return {"status": "ok", "ready": True}


class ExporterServer:
    def __init__(self, listen: str, registry: CollectorRegistry, reload: ReloadHook | None, health: HealthHook = _no_detail):
        self.host, self.port = split_host_port(listen)
        self.registry = registry
        self.reload = reload
        self.health = health
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEAD)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("serving /metrics, /healthz%s on http://%s:%d", " and POST /-/reload" if self.reload else " (/-/reload disabled)", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                await self._respond(writer, 431, b"request head too large\n")
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3:
                await self._respond(writer, 400, b"bad request\n")
                return
            method, path = parts[0].decode("latin-1"), parts[1].decode("latin-1").split("?", 1)[0]
            await self._route(writer, method, path)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _route(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        if path == "/metrics" and method in ("GET", "HEAD"):
            await self._metrics(writer, head_only=method == "HEAD")
        elif path == "/healthz" and method in ("GET", "HEAD"):
            report = self.health()
            lines = [report["status"], *(f"{part}: {d['status']}{' (' + d['why'] + ')' if d.get('why') else ''}" for part, d in report.items() if isinstance(d, dict))]
            await self._respond(writer, 503 if report["status"] == "failing" else 200, ("\n".join(lines) + "\n").encode())
        elif path == "/readyz" and method in ("GET", "HEAD"):
            report = self.health()
            body = json.dumps(report, indent=1, sort_keys=True).encode() + b"\n"
            await self._respond(writer, 200 if report["ready"] and report["status"] != "failing" else 503, body, "application/json")
        elif path == "/-/reload":
            if self.reload is None:
                await self._respond(writer, 403, b"reload over HTTP is disabled (exporter.enable_reload); send SIGHUP\n")
                return
            if method != "POST":
                await self._respond(writer, 405, b"use POST\n")
                return
            ok, message = await self.reload()
            await self._respond(writer, 200 if ok else 500, message.encode() + b"\n")
        elif path == "/":
            body = b"<html><body><h1>monitor</h1><a href='/metrics'>/metrics</a> <a href='/healthz'>/healthz</a> <a href='/readyz'>/readyz</a></body></html>\n"
            await self._respond(writer, 200, body, "text/html; charset=utf-8")
        else:
            await self._respond(writer, 404, b"not found\n")

    async def _metrics(self, writer: asyncio.StreamWriter, *, head_only: bool) -> None:
        """The exposition, sent as it is made, so a scrape never holds the whole body (tens of MB
        at thousands of checks); the end of the body is the end of the connection. Made on the
        event loop a chunk at a time, letting due runs start in between: at thousands of checks
        it is seconds of CPU, and on a thread it would contend for the GIL with the loop, which
        then waits a switch interval at each of its thousands of system calls a second."""
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        if head_only:
            await writer.drain()
            return
        for chunk in exposition(self.registry):
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
