"""An SSH server as far as the git check looks: it sends its identification line (RFC 4253
§4.2), optionally after other lines, then holds the connection without a key exchange.
`banner(...)` makes the handler; TcpServer(banner(...)) serves it."""

from __future__ import annotations

import asyncio

from tests.servers.tcp import Handler, silent

OPENSSH = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


def banner(identification: bytes = OPENSSH, *, before: tuple[bytes, ...] = ()) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(before) + identification)
        await writer.drain()
        await silent(reader, writer)

    return handler
