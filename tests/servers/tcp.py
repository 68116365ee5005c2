"""Real TCP (and TLS) servers on loopback for tests, plus the hostile behaviours a probe must
classify: reset on accept, reset after the first bytes (how SNI filters act), close after
the first bytes, silence, junk, a TLS alert, a TLS handshake that drips, a closed port and
a port whose accept queue is full.

A server runs in the test's event loop, listens on port 0 and tracks its connections, so
stop() ends every one of them — no handler outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from typing import Awaitable, Callable

from tests.servers.certs import CertFiles

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

HOLD_MAX = 10.0  # s: the longest any handler waits for a client; tests end well before


class TcpServer:
    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        self._handler = handler
        self._host = host
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpServer:
        self._server = await asyncio.start_server(self._serve, self._host, 0, ssl=self._ssl)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        """host:port as a check's target spells it."""
        return f"[{self._host}]:{self.port}" if ":" in self._host else f"{self._host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or misbehaved: what hostile tests are about
        except asyncio.CancelledError:
            pass  # stop(): ending normally keeps Python 3.11's start_server callback from logging it
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


# --- behaviours ------------------------------------------------------------------------------


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER {on, 0}: the kernel sends RST instead of FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def reset_on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    reset(writer)


async def reset_after_first_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read what the client sends first (a ClientHello, a request line), then RST — as an
    SNI or keyword filter does."""
    await reader.read(1)
    reset(writer)


async def close_after_first_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read what the client sends first, then close cleanly (FIN): an EOF where an answer was
    due. (Closing with the client's bytes unread would make the kernel send RST instead.)"""
    await reader.read(65536)
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, never speak; hold the connection until the client leaves."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), HOLD_MAX)


hold_open = silent  # for TLS servers: after the handshake, keep the session until the client leaves


async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer with bytes that are neither TLS nor HTTP."""
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not what you asked for\r\n\r\n")
    await writer.drain()
    await silent(reader, writer)


async def tls_alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the ClientHello, answer with a fatal TLS alert (handshake_failure), as a server
    with nothing in common with the client, or a middlebox refusing the name, does."""
    await _tls_record(reader)
    writer.write(b"\x15\x03\x03\x00\x02\x02\x28")
    await writer.drain()
    await silent(reader, writer)


async def tls_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the ClientHello, announce a 16 KiB handshake record, then send it a byte every
    50 ms: each byte arrives well within any per-read timeout, the handshake never ends."""
    await _tls_record(reader)
    writer.write(b"\x16\x03\x03\x40\x00")
    for _ in range(int(HOLD_MAX / 0.05)):
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"\x02")


async def _tls_record(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    return header + await reader.readexactly(int.from_bytes(header[3:5], "big"))


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on: bound to get it from the kernel, then closed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def full_backlog(host: str = "127.0.0.1"):
    """A listening port whose accept queue is full and never drained, so a new SYN goes
    unanswered and connect() hangs: a connect timeout without leaving loopback. Yields the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # backlog 0 admits one or two pending connections; fill them
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            fillers.append(f)
            with contextlib.suppress(BlockingIOError):
                f.connect((host, port))
        yield port
    finally:
        for f in fillers:
            f.close()
        listener.close()


def server_context(leaf: CertFiles, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server-side context presenting `leaf`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
