"""An HTTP/2 server over TLS (ALPN h2) on loopback: every request gets 200 and a 3-byte body.
Needs the `h2` package (what httpx's http2 support uses too).

Hostile behaviours (after a handshake that negotiates h2, so the client speaks HTTP/2):
  "garbage"    a SETTINGS frame of 5 bytes (a multiple of 6 is required), then bytes that are not frames
  "bad_frame"  a valid SETTINGS, then a DATA frame on stream 0 (a connection error, RFC 9113 §6.1)
  "continuation_flood"  the answer's HEADERS without END_HEADERS, then CONTINUATION frames
               that never end the header block (the "CONTINUATION flood" of 2024)
"""

from __future__ import annotations

import asyncio
import ssl

import h2.config
import h2.connection
import h2.events

from tests.servers import tcp
from tests.servers.tcp import TcpServer

_MAX_READS_PER_CONNECTION = 1000
_BAD_SETTINGS = b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5  # length 5, type SETTINGS, stream 0
_DATA_ON_STREAM_0 = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00" + b"oops"  # length 4, type DATA, no flags, stream 0


_CONTINUATIONS = 10_000  # what continuation_flood sends at most (~12 MB), if the client keeps reading


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


class H2Server(TcpServer):
    def __init__(self, *, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", behaviour: str = "ok"):
        super().__init__(self._connection, host=host, ssl_context=ssl_context)
        self.behaviour = behaviour
        self.requests: list[dict[str, str]] = []  # pseudo-headers included, e.g. ":path"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        if self.behaviour == "garbage":
            writer.write(_BAD_SETTINGS + b"HTTP/1.1 200 OK\r\n\r\n\x00\xff not a frame \xff" * 8)
            await writer.drain()
            return await tcp.silent(reader, writer)
        writer.write(conn.data_to_send())
        if self.behaviour == "bad_frame":
            writer.write(_DATA_ON_STREAM_0)
            await writer.drain()
            return await tcp.silent(reader, writer)
        if self.behaviour == "continuation_flood":
            await reader.read(65536)  # the client's preface, SETTINGS and request (stream 1)
            writer.write(_frame(0x1, 0x0, 1, b"\x88"))  # HEADERS ":status 200", no END_HEADERS
            for _ in range(_CONTINUATIONS):
                writer.write(_frame(0x9, 0x0, 1, b"\x40\x01x\x01y" * 200))  # CONTINUATION, literal "x: y"s, never END_HEADERS
                await writer.drain()
                await asyncio.sleep(0)
            return await tcp.silent(reader, writer)
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
