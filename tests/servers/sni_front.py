"""An SNI filter in Python, as a middlebox in front of a real TLS server: it reads the
client's first TLS record, and when the ClientHello names a blocked server it answers with a
TCP reset (SO_LINGER 0 — what iptables' `REJECT --reject-with tcp-reset` does on a string
match) — or with `drop`, swallows it and stays silent; any other connection is relayed to
the backend untouched. With `residual` it also
imitates residual blocking: for that many seconds after a trigger every new connection is
reset on its first bytes, whatever its SNI.

`python -m tests.servers.sni_front --host IP --cert C --key K` serves plain TLS (presenting
C, keeping each session open) on IP for the network-namespace lab (tests/servers/sni_netns.py),
prints its port and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

from tests.servers import tcp
from tests.servers.proxy_relay import relay
from tests.servers.tcp import TcpServer, reset

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0


class SniFilter(TcpServer):
    def __init__(self, backend_port: int, blocked: set[str], *, drop: bool = False, residual: float = 0.0, host: str = "127.0.0.1"):
        super().__init__(self._filter, host=host)
        self._backend_port = backend_port
        self._drop = drop
        self._blocked = blocked
        self._residual = residual
        self._residual_until = 0.0
        self.seen: list[str | None] = []  # the SNI of each ClientHello, in order (None: no SNI)

    async def _filter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = await _first_record(reader)
        sni = server_name(record)
        self.seen.append(sni)
        now = asyncio.get_running_loop().time()
        if sni in self._blocked or now < self._residual_until:
            if sni in self._blocked:
                self._residual_until = now + self._residual
            if self._drop:
                await tcp.silent(reader, writer)
                return
            reset(writer)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._backend_port)
        upstream_writer.write(record)
        await relay(reader, writer, upstream_reader, upstream_writer)


async def _first_record(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    return header + await reader.readexactly(int.from_bytes(header[3:5], "big"))


def server_name(record: bytes) -> str | None:
    """The SNI of a ClientHello record (RFC 8446 §4.1.2, RFC 6066 §3); None if it has none."""
    if len(record) < 9 or record[0] != _HANDSHAKE or record[5] != _CLIENT_HELLO:
        return None
    body = record[9:]  # after the record header (5) and the handshake header (4)
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # legacy_session_id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher_suites
    pos += 1 + body[pos]  # legacy_compression_methods
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= end:  # each turn advances at least 4 bytes
        kind = int.from_bytes(body[pos : pos + 2], "big")
        size = int.from_bytes(body[pos + 2 : pos + 4], "big")
        pos += 4
        if kind == _SERVER_NAME:  # list length (2), name type (1), name length (2), name
            length = int.from_bytes(body[pos + 3 : pos + 5], "big")
            return body[pos + 5 : pos + 5 + length].decode("ascii")
        pos += size
    return None


async def _serve_tls(host: str, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with TcpServer(tcp.hold_open, host=host, ssl_context=context) as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="TLS server for the SNI namespace lab; prints its port")
    parser.add_argument("--host", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(_serve_tls(args.host, args.cert, args.key))
