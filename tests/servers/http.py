"""A small HTTP/1.1 server (plain or TLS) with routes for each behaviour an HTTP probe must
tell apart. It keeps connections alive (unless asked to close) and records every request it saw.

Routes:
  /status/CODE          CODE with a 3-byte body
  /redirect/N           302 to /redirect/N-1, and /redirect/0 to /status/200 (N+1 redirects)
  /redirect-loop        302 to itself
  /redirect-to?url=U    302 to U (e.g. an ftp:// URL)
  /slow                 headers and 10 of 100 bytes, then nothing until the client leaves
  /big/N                N bytes with Content-Length
  /chunked/N            N bytes, chunked, no length announced
  /truncated            Content-Length 100, 10 bytes, then close
  /close                close without answering
  /junk                 bytes that are not HTTP
  anything else         404

`python -m tests.servers.http --cert C --key K` serves HTTPS on 127.0.0.1 for bench/ and
prints the port; it stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from tests.servers.tcp import HOLD_MAX, TcpServer

_MAX_REQUESTS_PER_CONNECTION = 100
_CHUNK = 64 * 1024
_REASONS = {200: "OK", 204: "No Content", 302: "Found", 404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


class HttpServer(TcpServer):
    def __init__(self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        super().__init__(self._connection, host=host, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context else "http"
        self.requests: list[Request] = []

    def url(self, path: str, host: str | None = None) -> str:
        """URL of `path` on this server; `host` replaces the address in the URL (for SNI/Host)."""
        return f"{self.scheme}://{host or self.address.rsplit(':', 1)[0]}:{self.port}{path}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            head = await reader.readuntil(b"\r\n\r\n")
            request = _parse(head)
            self.requests.append(request)
            length = int(request.headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            if not await self._respond(request, reader, writer) or request.headers.get("connection") == "close":
                return

    async def _respond(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        path, _, query = req.target.partition("?")
        head_only = req.method == "HEAD"
        match path.strip("/").split("/"):
            case ["status", code]:
                await _send(writer, int(code), b"ok\n", head_only=head_only)
            case ["redirect", n]:
                to = f"/redirect/{int(n) - 1}" if int(n) > 0 else "/status/200"
                await _send(writer, 302, b"", location=to)
            case ["redirect-loop"]:
                await _send(writer, 302, b"", location="/redirect-loop")
            case ["redirect-to"]:
                await _send(writer, 302, b"", location=parse_qs(query)["url"][0])
            case ["slow"]:
                writer.write(_head(200, [("Content-Length", "100")]) + b"x" * 10)
                await writer.drain()
                await asyncio.wait_for(reader.read(), HOLD_MAX)
                return False
            case ["big", n]:
                writer.write(_head(200, [("Content-Length", n)]))
                await _body(writer, int(n), chunked=False)
            case ["chunked", n]:
                writer.write(_head(200, [("Transfer-Encoding", "chunked")]))
                await _body(writer, int(n), chunked=True)
            case ["truncated"]:
                writer.write(_head(200, [("Content-Length", "100")]) + b"x" * 10)
                await writer.drain()
                return False
            case ["close"]:
                return False
            case ["junk"]:
                writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01 not http\r\n\r\n")
                await writer.drain()
                return False
            case _:
                await _send(writer, 404, b"no\n", head_only=head_only)
        return True


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return Request(method, target, headers)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, *, location: str | None = None, head_only: bool = False) -> None:
    headers = [("Content-Length", str(len(body))), ("Content-Type", "text/plain")]
    if location:
        headers.append(("Location", location))
    writer.write(_head(status, headers) + (b"" if head_only else body))
    await writer.drain()


async def _body(writer: asyncio.StreamWriter, size: int, *, chunked: bool) -> None:
    """`size` bytes in 64 KiB pieces; a client that stops reading ends it with a reset."""
    for offset in range(0, size, _CHUNK):
        piece = b"x" * min(_CHUNK, size - offset)
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _main() -> None:
    parser = argparse.ArgumentParser(description="HTTPS test server on 127.0.0.1 (for bench/)")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    async with HttpServer(ssl_context=context) as server:
        print(server.port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    asyncio.run(_main())
