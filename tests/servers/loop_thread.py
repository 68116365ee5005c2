"""Loopback servers on an event loop of their own thread, for synchronous tests that run a
daemon and a Prometheus as subprocesses while the servers answer them.

    with ServerLoop() as loop:
        https = loop.start(HttpServer(ssl_context=...))
        ...                                   # the servers answer until the block ends
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tests.servers.tcp import TcpServer

T = TypeVar("T", bound=TcpServer)
_WAIT = 30.0  # s: the longest a start or stop may take on a loaded machine


class ServerLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self._servers: list[TcpServer] = []

    def __enter__(self) -> ServerLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for server in reversed(self._servers):
                self.run(server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(_WAIT)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(_WAIT)

    def start(self, server: T) -> T:
        self._servers.append(server)
        self.run(server.start())
        return server
