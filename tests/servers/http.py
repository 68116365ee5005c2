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
and the hostile ones, each wrong in one way:
  /slowloris-headers    a status line, then a header trickled a byte every 50 ms, never ended
  /endless-headers      header lines as fast as the client reads, never a blank line
  /huge-header          one 1 MiB header line, then a normal end and body
  /drip                 Content-Length 1000, then the body a byte every 50 ms
  /reset-mid-body       Content-Length 100000, 1000 bytes, then a TCP reset
  /length-invalid       Content-Length: abc
  /length-conflict      two different Content-Length headers
  /chunked-garbage      Transfer-Encoding: chunked, then a chunk size that is not hex
  /gzip-bomb            Content-Encoding: gzip, ~64 KiB that inflate to 64 MiB
  /informational-flood  "100 Continue" after "100 Continue", as fast as they go, never a final answer
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

from tests.servers.dns_doh_hostile import gzip_bomb
from tests.servers.tcp import HOLD_MAX, TcpServer, reset

_MAX_REQUESTS_PER_CONNECTION = 100
_CHUNK = 64 * 1024
_DRIP = 0.05  # s between two bytes of a trickle
_MAX_HEADER_LINES = 200_000  # what /endless-headers sends at most (~6 MB), if the client keeps reading
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
            case ["slowloris-headers"]:
                writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                await _trickle(writer, b"a" * int(HOLD_MAX / _DRIP))
                return False
            case ["endless-headers"]:
                writer.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(0, _MAX_HEADER_LINES, 64):
                    writer.write(b"".join(b"X-Filler-%d: %s\r\n" % (j, b"f" * 16) for j in range(i, i + 64)))
                    await writer.drain()
                    await asyncio.sleep(0)  # drain() does not yield until the buffers are full: be fair to a client on this loop
                return False
            case ["huge-header"]:
                writer.write(_head(200, [("X-Huge", "h" * (1 << 20)), ("Content-Length", "3")]) + b"ok\n")
                await writer.drain()
            case ["drip"]:
                writer.write(_head(200, [("Content-Length", "1000")]))
                await _trickle(writer, b"d" * 1000)
                return False
            case ["reset-mid-body"]:
                writer.write(_head(200, [("Content-Length", "100000")]) + b"r" * 1000)
                await writer.drain()
                reset(writer)
                return False
            case ["length-invalid"]:
                writer.write(_head(200, [("Content-Length", "abc")]) + b"abc")
                await writer.drain()
                return False
            case ["length-conflict"]:
                writer.write(_head(200, [("Content-Length", "3"), ("Content-Length", "30")]) + b"ok\n")
                await writer.drain()
                return False
            case ["chunked-garbage"]:
                writer.write(_head(200, [("Transfer-Encoding", "chunked")]) + b"5\r\nhello\r\nzz\r\nnot a chunk\r\n")
                await writer.drain()
                return False
            case ["informational-flood"]:
                piece = b"HTTP/1.1 100 Continue\r\n\r\n" * 1000
                until = asyncio.get_running_loop().time() + HOLD_MAX
                while asyncio.get_running_loop().time() < until:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                return False
            case ["gzip-bomb"]:
                bomb = gzip_bomb()
                writer.write(_head(200, [("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))]) + bomb)
                await writer.drain()
            case _:
                await _send(writer, 404, b"no\n", head_only=head_only)
        return True


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """`data` a byte at a time, _DRIP apart: never a pause long enough for a per-read timeout."""
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(_DRIP)


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
