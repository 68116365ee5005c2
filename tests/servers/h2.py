"""An HTTP/2 server over TLS (ALPN h2) on loopback: every request gets 200 and a 3-byte body.
Needs the `h2` package (what httpx's http2 support uses too)."""

from __future__ import annotations

import asyncio
import ssl

import h2.config
import h2.connection
import h2.events

from tests.servers.tcp import TcpServer

_MAX_READS_PER_CONNECTION = 1000


class H2Server(TcpServer):
    def __init__(self, *, ssl_context: ssl.SSLContext, host: str = "127.0.0.1"):
        super().__init__(self._connection, host=host, ssl_context=ssl_context)
        self.requests: list[dict[str, str]] = []  # pseudo-headers included, e.g. ":path"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        for _ in range(_MAX_READS_PER_CONNECTION):
            data = await reader.read(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.requests.append(dict(event.headers))
                    conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "3")])
                    conn.send_data(event.stream_id, b"ok\n", end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()
