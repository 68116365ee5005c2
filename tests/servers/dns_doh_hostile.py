"""Hostile DoH endpoints on a real TLS socket (HTTP/1.1): the ways a DoH server, or a
middlebox in front of it, answers without a DNS message.

  forbidden   403 with a short text body (a filtering proxy's block page, an API key gone)
  html        200 text/html, a captive portal's page
  oversized   200 application/dns-message with more bytes than any DNS message can have
"""

from __future__ import annotations

import asyncio
import ssl

from tests.servers.tcp import TcpServer

_ANSWERS = {
    "forbidden": (403, "Forbidden", "text/plain", b"blocked by policy\n"),
    "html": (200, "OK", "text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Please log in to the Wi-Fi</body></html>\n"),
    "oversized": (200, "OK", "application/dns-message", b"\x00" * 70000),
}


class HostileDoh(TcpServer):
    def __init__(self, behaviour: str, ssl_context: ssl.SSLContext):
        self.answer = _ANSWERS[behaviour]
        self.requests = 0
        super().__init__(self._connection, ssl_context=ssl_context)

    def url(self, host: str = "127.0.0.1", path: str = "/dns-query") -> str:
        return f"https://{host}:{self.port}{path}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                await reader.readexactly(int(value))
        status, reason, content_type, body = self.answer
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
