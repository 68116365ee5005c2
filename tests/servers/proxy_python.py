"""Proxies in Python for the behaviours Debian's proxies will not show on demand: an HTTP
proxy (CONNECT and forward GET) and a SOCKS5 proxy that tunnel like real ones — with
credentials if given — or misbehave as told. Each records what it was asked, so a test can
see the name it was sent (remote DNS), the credentials and where the client came from.

HttpProxy behaviours:   "tunnel" (CONNECT, and forward for absolute-URI requests),
                        "status" (answer every request with `status`),
                        "close" (read the request, close without a word: mid-handshake),
                        "junk" (answer with bytes that are not HTTP),
                        "lie" (200 to CONNECT, then read what comes and close: no tunnel),
                        "endless_head" (a 200 whose header lines never end),
                        "drip" (the answer a byte every 50 ms, never complete).
Socks5Proxy behaviours: "tunnel", "reply" (answer CONNECT with reply code `reply`),
                        "close" (read the greeting, close), "not_socks" (answer as HTTP would),
                        "wrong_version" (a SOCKS4 version byte in the greeting's answer),
                        "bad_address_type" (success, bound address of an unknown type 7).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urlsplit

from tests.servers.proxy_relay import relay
from tests.servers.tcp import HOLD_MAX, TcpServer

_DRIP = 0.05  # s between two bytes of a trickled answer
_MAX_HEAD_LINES = 100_000  # what endless_head sends at most, if the client keeps reading

_REASONS = {200: "Connection established", 403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway"}


@dataclass
class Asked:
    """One request a proxy received."""

    peer: str  # the client's address
    target: str = ""  # host:port asked for (SOCKS5: as sent; a name means remote DNS)
    address_type: int | None = None  # SOCKS5 ATYP: 1 IPv4, 3 name, 4 IPv6
    credentials: tuple[str, str] | None = None
    method: str = ""
    lines: list[str] = field(default_factory=list)  # HTTP request head


class HttpProxy(TcpServer):
    def __init__(self, behaviour: str = "tunnel", *, status: int = 502, credentials: tuple[str, str] | None = None, host: str = "127.0.0.1"):
        super().__init__(self._serve_one, host=host)
        self.behaviour = behaviour
        self.status = status
        self.credentials = credentials
        self.asked: list[Asked] = []

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")[:-2]
        method, target, _version = lines[0].split(" ", 2)
        asked = Asked(peer=writer.get_extra_info("peername")[0], target=target, method=method, lines=lines, credentials=_basic(lines))
        self.asked.append(asked)
        if self.behaviour == "close":
            writer.close()
            return
        if self.behaviour == "junk":
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            await writer.drain()
            return
        if self.behaviour == "status":
            return await _answer(writer, self.status)
        if self.behaviour == "lie":
            await _answer(writer, 200, close=False)
            await reader.read(65536)  # what the client sends into the "tunnel"; then close (FIN, nothing unread)
            return
        if self.behaviour == "endless_head":
            writer.write(b"HTTP/1.1 200 Connection established\r\n")
            for i in range(0, _MAX_HEAD_LINES, 64):
                writer.write(b"".join(b"X-Filler-%d: %s\r\n" % (j, b"f" * 16) for j in range(i, i + 64)))
                await writer.drain()
                await asyncio.sleep(0)  # fair to a client on this loop
            return
        if self.behaviour == "drip":
            for byte in b"HTTP/1.1 200 Connection established\r\n" + b"X" * int(HOLD_MAX / _DRIP):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(_DRIP)
            return
        if self.credentials is not None and asked.credentials != self.credentials:
            return await _answer(writer, 407, [("Proxy-Authenticate", 'Basic realm="test"')])
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            except OSError:
                return await _answer(writer, 502)
            await _answer(writer, 200, close=False)
            await relay(reader, writer, *upstream)
            return
        await self._forward(reader, writer, method, target, lines)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, target: str, lines: list[str]) -> None:
        """A forward proxy's GET: the absolute URI's origin gets the request in origin form."""
        url = urlsplit(target)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        except OSError:
            return await _answer(writer, 502)
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-authorization:", "proxy-connection:"))]
        upstream_writer.write(("\r\n".join([f"{method} {path or '/'} HTTP/1.1", *kept]) + "\r\n\r\n").encode("latin-1"))
        await relay(reader, writer, upstream_reader, upstream_writer)


class Socks5Proxy(TcpServer):
    def __init__(self, behaviour: str = "tunnel", *, reply: int = 1, credentials: tuple[str, str] | None = None, host: str = "127.0.0.1"):
        super().__init__(self._serve_one, host=host)
        self.behaviour = behaviour
        self.reply = reply
        self.credentials = credentials
        self.asked: list[Asked] = []

    def url(self, scheme: str = "socks5h") -> str:
        return f"{scheme}://{self.address}"

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked = Asked(peer=writer.get_extra_info("peername")[0])
        self.asked.append(asked)
        _version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if self.behaviour == "close":
            writer.close()
            return
        if self.behaviour == "not_socks":
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            return
        if self.behaviour == "wrong_version":
            writer.write(b"\x04\x00")
            await writer.drain()
            return
        if self.credentials is None:
            writer.write(b"\x05\x00")
        elif 2 not in methods:
            writer.write(b"\x05\xff")  # no acceptable method
            await writer.drain()
            return
        else:
            writer.write(b"\x05\x02")
            _sub_version, user_length = await reader.readexactly(2)
            user = (await reader.readexactly(user_length)).decode()
            (password_length,) = await reader.readexactly(1)
            asked.credentials = (user, (await reader.readexactly(password_length)).decode())
            accepted = asked.credentials == self.credentials
            writer.write(b"\x01\x00" if accepted else b"\x01\x01")
            await writer.drain()
            if not accepted:
                return
        _version, _command, _reserved, asked.address_type = await reader.readexactly(4)
        if asked.address_type == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            host = str(ipaddress.ip_address(await reader.readexactly(4 if asked.address_type == 1 else 16)))
        port = int.from_bytes(await reader.readexactly(2), "big")
        asked.target = f"{host}:{port}"
        if self.behaviour == "reply":
            writer.write(bytes([5, self.reply, 0, 1, 0, 0, 0, 0, 0, 0]))
            await writer.drain()
            return
        if self.behaviour == "bad_address_type":
            writer.write(bytes([5, 0, 0, 7, 0, 0, 0, 0, 0, 0]))
            await writer.drain()
            return
        try:
            upstream = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(bytes([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]))  # connection refused
            await writer.drain()
            return
        bound = upstream[1].get_extra_info("sockname")
        writer.write(bytes([5, 0, 0, 1]) + ipaddress.ip_address(bound[0]).packed + bound[1].to_bytes(2, "big"))
        await writer.drain()
        await relay(reader, writer, *upstream)


def _basic(lines: list[str]) -> tuple[str, str] | None:
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "proxy-authorization" and value.strip().startswith("Basic "):
            user, _, password = base64.b64decode(value.strip()[6:]).decode().partition(":")
            return user, password
    return None


async def _answer(writer: asyncio.StreamWriter, status: int, headers: Sequence[tuple[str, str]] = (), *, close: bool = True) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{k}: {v}" for k, v in headers)]
    if close:
        lines += ["Content-Length: 0", "Connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
