"""Hostile DoH endpoints on a real TLS socket (HTTP/1.1): the ways a DoH server, or a
middlebox in front of it, answers without a DNS message.

  forbidden   403 with a short text body (a filtering proxy's block page, an API key gone)
  html        200 text/html, a captive portal's page
  oversized   200 application/dns-message with more bytes than any DNS message can have
  gzip_bomb   200 application/dns-message, Content-Encoding: gzip, ~64 KB that inflate to 64 MiB
  brotli      200 application/dns-message, Content-Encoding: br (a coding the client did not offer)
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from functools import cache

from tests.servers.tcp import TcpServer

@cache
def gzip_bomb(inflated: int = 64 << 20) -> bytes:
    """Zeros that gzip ~1000:1: a small body that inflates to `inflated` bytes."""
    return gzip.compress(bytes(inflated), compresslevel=9)


_ANSWERS = {
    "forbidden": (403, "Forbidden", "text/plain", b"blocked by policy\n", ""),
    "html": (200, "OK", "text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Please log in to the Wi-Fi</body></html>\n", ""),
    "oversized": (200, "OK", "application/dns-message", b"\x00" * 70000, ""),
    "gzip_bomb": (200, "OK", "application/dns-message", None, "gzip"),
    "brotli": (200, "OK", "application/dns-message", b"\x1b\x00\x00", "br"),
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
        status, reason, content_type, body, encoding = self.answer
        body = gzip_bomb() if body is None else body
        coding = f"content-encoding: {encoding}\r\n" if encoding else ""
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n{coding}"
            "connection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
