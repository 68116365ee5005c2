"""A Go module proxy for tests (GOPROXY protocol over HTTP/1.1, plain or TLS, on loopback),
the modules it serves, and the hostile zips a proxy can send.

The server answers from a route table, so a test can serve any body at any path; it can
also serve a TestLog as a checksum database, at its root (/lookup, /tile, /latest) or
proxied under /sumdb/<name>/ as module proxies do. Every request path is recorded.

Hashes here are computed independently of monitor (dirhash Hash1 written out again).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Callable

from tests.servers.goproxy_sumdb import TestLog
from tests.servers.tcp import TcpServer

_MAX_REQUESTS_PER_CONNECTION = 100
_MAX_ENDLESS_BYTES = 64 << 20
_REASONS = {200: "OK", 404: "Not Found", 410: "Gone", 500: "Internal Server Error"}


@dataclass
class Response:
    status: int
    body: bytes = b""
    # Seconds to wait after the headers before sending the body (a slow proxy).
    delay: float = 0.0
    # A Content-Length that lies about the body (None: the body's true length).
    content_length: int | None = None
    # Send the body over and over, chunked, never ending (an endless @v/list): at most
    # _MAX_ENDLESS_BYTES, and only while the client reads.
    endless: bool = False
    # Send the body chunked, this many bytes a chunk (0: whole, with a Content-Length).
    chunk_size: int = 0

    def __post_init__(self) -> None:
        # The chunked coding made now, not while a request waits (nor while a test traces memory).
        self.chunked_body = _chunked(self.body, self.chunk_size) if self.chunk_size else b""


Route = Response | Callable[[], Response]


def escape(s: str) -> str:
    """The proxy protocol's case encoding: each upper-case letter becomes '!' + lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), s)


def h1(files: dict[bytes, bytes]) -> str:
    """dirhash.Hash1: SHA-256 over "<hex sha256(content)>  <name>\\n", names sorted."""
    lines = b"".join(hashlib.sha256(files[n]).hexdigest().encode() + b"  " + n + b"\n" for n in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(lines).digest()).decode()


@dataclass
class Module:
    path: str
    version: str
    files: dict[str, bytes] = field(default_factory=dict)  # relative to the module root

    def __post_init__(self) -> None:
        self.files.setdefault("go.mod", f"module {self.path}\n\ngo 1.22\n".encode())

    @property
    def prefix(self) -> str:
        return f"{self.path}@{self.version}/"

    @property
    def gomod(self) -> bytes:
        return self.files["go.mod"]

    def zip_bytes(self) -> bytes:
        return make_zip({self.prefix + name: data for name, data in self.files.items()})

    @property
    def zip_h1(self) -> str:
        return h1({(self.prefix + n).encode(): d for n, d in self.files.items()})

    @property
    def gomod_h1(self) -> str:
        return h1({b"go.mod": self.gomod})

    def info(self, version: str | None = None) -> bytes:
        return json.dumps({"Version": version or self.version, "Time": "2026-01-02T03:04:05Z"}).encode()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 2, 3, 4, 6)), data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def with_declared_size(zip_data: bytes, name: str, size: int) -> bytes:
    """The zip with entry `name` claiming `size` uncompressed bytes (local and central
    headers), its data untouched: a bomb that lies about its size, or one that announces it."""
    data = bytearray(zip_data)
    cd_size, cd_offset = struct.unpack_from("<LL", data, len(data) - 22 + 12)
    pos = cd_offset
    while pos < cd_offset + cd_size:
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        if data[pos + 46 : pos + 46 + name_len] == name.encode():
            struct.pack_into("<L", data, pos + 24, size)
            local = struct.unpack_from("<L", data, pos + 42)[0]
            struct.pack_into("<L", data, local + 22, size)
            return bytes(data)
        pos += 46 + name_len + extra_len + comment_len
    raise KeyError(name)


class GoproxyServer(TcpServer):
    """HTTP/1.1 with keep-alive, answering GET from `routes` (exact paths), then from the logs."""

    def __init__(self, *, ssl_context=None, host: str = "127.0.0.1"):
        super().__init__(self._connection, host=host, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context else "http"
        self.routes: dict[str, Route] = {}
        self.log: TestLog | None = None  # served at the root, as sum.golang.org
        self.proxied_logs: dict[str, TestLog] = {}  # served under /sumdb/<name>/
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def serve_module(self, module: Module, *, listed: list[str] | None = None) -> None:
        """The five GOPROXY routes for `module`."""
        base = f"/{escape(module.path)}/@v/"
        v = escape(module.version)
        self.routes[base + "list"] = Response(200, "".join(f"{x}\n" for x in (listed or [module.version])).encode())
        self.routes[f"/{escape(module.path)}/@latest"] = Response(200, module.info())
        self.routes[f"{base}{v}.info"] = Response(200, module.info())
        self.routes[f"{base}{v}.mod"] = Response(200, module.gomod)
        self.routes[f"{base}{v}.zip"] = Response(200, module.zip_bytes())

    def route(self, path: str) -> Response:
        found = self.routes.get(path)
        if found is not None:
            return found() if callable(found) else found
        if self.log is not None and (path == "/latest" or path.startswith(("/lookup/", "/tile/"))):
            return Response(*self.log.handle(path[1:]))
        m = re.fullmatch(r"/sumdb/([^/]+)/(.*)", path)
        if m and m.group(1) in self.proxied_logs:
            if m.group(2) == "supported":
                return Response(200)
            return Response(*self.proxied_logs[m.group(1)].handle(m.group(2)))
        return Response(404, b"not found\n")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            self.requests.append(target)
            response = self.route(target)
            reason = _REASONS.get(response.status, "Status")
            length = len(response.body) if response.content_length is None else response.content_length
            chunked = response.endless or response.chunk_size > 0
            framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
            writer.write(
                f"HTTP/1.1 {response.status} {reason}\r\n{framing}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            await writer.drain()
            if response.delay:
                await asyncio.sleep(response.delay)
            if response.endless:
                await _endless(writer, response.body)
                return
            if response.chunk_size:
                writer.write(response.chunked_body)
                await writer.drain()
                continue
            writer.write(response.body)
            await writer.drain()
            if response.content_length is not None and response.content_length != len(response.body):
                return  # the framing is broken: this connection carries nothing more


def _chunked(body: bytes, size: int) -> bytes:
    """`body` in chunked transfer coding, `size` bytes a chunk."""
    pieces = (body[i : i + size] for i in range(0, len(body), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def _endless(writer: asyncio.StreamWriter, piece: bytes) -> None:
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    for _ in range(_MAX_ENDLESS_BYTES // len(piece)):  # until the client stops reading (a reset), or the bound
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)  # drain() does not yield until the buffers are full: be fair to the client
