"""A TCP relay in front of a server that can stop forwarding while keeping every connection
open: what a stateful firewall or NAT that lost its state, or a server that hangs, looks like
from the client. The client's bytes are still acknowledged (by this host's kernel) but no
answer ever comes: no TCP timeout fires, only the client's own bounds can end the wait.

    relay = loop.start(FreezableRelay(("127.0.0.1", pg.port)))
    relay.freeze(); …; relay.thaw()
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.servers.tcp import TcpServer

_CHUNK = 65536


class FreezableRelay(TcpServer):
    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1"):
        super().__init__(self._relay, host=host)
        self.upstream = upstream
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.connections = 0

    def freeze(self) -> None:
        """Stop forwarding in both directions; connections stay open, new ones are accepted."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._flowing.wait()  # a connection made while frozen gets nothing either
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            up_writer.transport.abort()
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Ends at EOF or when the server stops (TcpServer.stop cancels the handlers): a pooled
        # database connection lives for minutes, so no time bound here.
        while data := await reader.read(_CHUNK):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
