"""Through an egress proxy: set up a tunnel to (host, port) on a socket already connected to
the proxy — HTTP CONNECT (RFC 9110 §9.3.6) or SOCKS5 (RFC 1928, with RFC 1929
username/password). Afterwards the socket carries the tunnel: TLS and application bytes go
over it as over a direct connection.

`open_tunnel` returns the seconds the setup took and what the proxy answered (facts:
`proxy_status` for HTTP, `proxy_reply` for SOCKS5), or raises TunnelError, a NetError that
carries those facts. Its failures have operation `proxy_connect`: `proxy_auth_required` when
the proxy wants credentials it did not get or refuses the ones it got, `proxy_error` when it
refuses otherwise or does not speak the protocol, and the network classes (reset, EOF,
timeout) when the connection to it breaks. A SOCKS5 proxy also says why its own connection to
the target failed (network/host unreachable, refused, TTL expired): that is the target's
failure seen through the tunnel, reported as such with operation `connect`. An HTTP proxy's
error status (500, 502, 503…) does not say so reliably, so it stays proxy_error, with the
status as a fact.

Nothing the target sends after the proxy's answer is consumed here: the CONNECT answer is
read by peeking up to its blank line, so bytes the target sends at once (an SSH banner)
stay in the socket for the caller. SOCKS5 replies have a known length and are read exactly.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
import time
from typing import Any, Awaitable, Callable

from monitor.model import Failure, FailureClass, Operation
from monitor.probes._classify import classify
from monitor.probes._net import NetError
from monitor.vantage import CredentialsUnavailable, Proxy

F = FailureClass

USER_AGENT = "monitor/0.1"
_MAX_HEAD = 16384  # a CONNECT answer is a status line and a few headers
_MAX_READS = 1000  # bounds the loop turns of a peer that trickles bytes; time is bounded by the timeout
_STATUS_LINE = re.compile(r"HTTP/1\.[01] (\d{3})(?: (.*))?")

# RFC 1928 §6 reply codes.
_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
# Replies that report the proxy's own connect to the target: the target's failure, not the proxy's.
_SOCKS_TARGET_FAILURES = {
    3: F.NETWORK_UNREACHABLE,
    4: F.HOST_UNREACHABLE,
    5: F.CONNECTION_REFUSED,
    6: F.GENERIC_TIMEOUT_ERROR,
}
_NO_ACCEPTABLE_METHOD = 0xFF


class TunnelError(NetError):
    """A tunnel that could not be set up; `facts` holds what the proxy answered, if anything."""

    def __init__(self, failure: Failure, elapsed: float, facts: dict[str, Any]):
        super().__init__(failure, elapsed)
        self.facts = facts


class _Refused(Exception):
    """The proxy answered, and the answer ends the attempt with `failure`."""

    def __init__(self, cls: FailureClass, detail: str, operation: Operation = Operation.PROXY_CONNECT):
        super().__init__(detail)
        self.failure = Failure(cls, operation, detail)


Handshake = Callable[..., Awaitable[None]]


async def open_tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int, timeout: float) -> tuple[float, dict[str, Any]]:
    """Ask `proxy`, connected on `sock`, for a tunnel to (host, port); host is a name (the
    proxy resolves it) or an IP literal. Returns (seconds, facts) or raises TunnelError."""
    facts: dict[str, Any] = {}
    try:
        credentials = proxy.credentials()
    except CredentialsUnavailable as e:
        raise TunnelError(Failure(F.PROXY_AUTH_REQUIRED, Operation.PROXY_CONNECT, str(e)), 0.0, facts) from None
    handshake: Handshake = _http_connect if proxy.scheme == "http" else _socks5_connect
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            await handshake(sock, host, port, credentials, facts)
            elapsed = time.perf_counter() - started
    except _Refused as r:
        raise TunnelError(r.failure, time.perf_counter() - started, facts) from None
    except OSError as exc:
        elapsed = time.perf_counter() - started
        cls, detail = classify(exc)
        if isinstance(exc, TimeoutError) and not str(exc):  # our own deadline
            detail = f"no answer from {proxy.url} within {timeout:.3g}s" if timeout > 0 else "no time left before the probe's deadline"
        raise TunnelError(Failure(cls, Operation.PROXY_CONNECT, detail), elapsed, facts) from exc
    return elapsed, facts


# --- HTTP CONNECT -----------------------------------------------------------------------------


async def _http_connect(sock: socket.socket, host: str, port: int, credentials: tuple[str, str] | None, facts: dict[str, Any]) -> None:
    authority = _authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    await asyncio.get_running_loop().sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    head = await _read_head(sock)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    m = _STATUS_LINE.fullmatch(status_line)
    if m is None:
        raise _Refused(F.PROXY_ERROR, f"not an HTTP proxy's answer to CONNECT: {status_line[:80]!r}")
    status, reason = int(m.group(1)), (m.group(2) or "").strip()
    facts["proxy_status"] = status
    if 200 <= status < 300:
        return
    if status in (401, 407):  # only the proxy answers a CONNECT; tinyproxy refuses bad credentials with 401
        why = "refused the credentials" if credentials is not None else "wants credentials (none configured)"
        raise _Refused(F.PROXY_AUTH_REQUIRED, f"proxy {why}: {status} {reason}".rstrip())
    raise _Refused(F.PROXY_ERROR, f"proxy answered CONNECT {authority} with {status} {reason}".rstrip())


async def _read_head(sock: socket.socket) -> bytes:
    """The proxy's answer up to and including its blank line, and not one byte more."""
    head = b""
    for _ in range(_MAX_READS):
        await _readable(sock)
        try:
            peeked = sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        except BlockingIOError:  # readiness without data (spurious): wait again
            continue
        if not peeked:
            raise _Refused(F.EOF_ERROR, "proxy closed the connection before answering CONNECT")
        if not b"HTTP/".startswith((head + peeked)[:5]):  # not HTTP: say so now, not at the timeout
            raise _Refused(F.PROXY_ERROR, f"not an HTTP proxy's answer to CONNECT: {(head + peeked)[:60]!r}")
        seen = head[-3:] + peeked  # the blank line may straddle two reads
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            return head + sock.recv(end + 4 - len(head[-3:]))  # peeked, so all of it is there
        head += sock.recv(len(peeked))
        if len(head) > _MAX_HEAD:
            raise _Refused(F.PROXY_ERROR, f"proxy's answer to CONNECT has no end within {_MAX_HEAD} bytes")
    raise _Refused(F.PROXY_ERROR, f"proxy's answer to CONNECT incomplete after {_MAX_READS} reads")


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


# --- SOCKS5 -------------------------------------------------------------------------------------


async def _socks5_connect(sock: socket.socket, host: str, port: int, credentials: tuple[str, str] | None, facts: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    offered = b"\x00\x02" if credentials is not None else b"\x00"  # no auth; username/password
    await loop.sock_sendall(sock, b"\x05" + bytes([len(offered)]) + offered)
    version, method = await _recv_exactly(sock, 2, "greeting")
    if version != 5:
        raise _Refused(F.PROXY_ERROR, f"not a SOCKS5 proxy (version {version} in its greeting)")
    if method == _NO_ACCEPTABLE_METHOD and credentials is None:
        raise _Refused(F.PROXY_AUTH_REQUIRED, "SOCKS5 proxy wants authentication (no credentials configured)")
    if method not in offered:
        raise _Refused(F.PROXY_ERROR, f"SOCKS5 proxy chose method {method:#04x}, which was not offered")
    if method == 2:
        assert credentials is not None  # offered only with credentials
        await _socks5_login(sock, credentials, facts)

    await loop.sock_sendall(sock, b"\x05\x01\x00" + _socks5_address(host) + port.to_bytes(2, "big"))
    version, reply, _reserved, address_type = await _recv_exactly(sock, 4, "reply")
    if version != 5:
        raise _Refused(F.PROXY_ERROR, f"not a SOCKS5 reply (version {version})")
    facts["proxy_reply"] = reply
    if reply != 0:
        meaning = _SOCKS_REPLIES.get(reply, "unassigned reply code")
        if reply in _SOCKS_TARGET_FAILURES:
            raise _Refused(_SOCKS_TARGET_FAILURES[reply], f"SOCKS5 proxy could not reach {_authority(host, port)}: {meaning} (reply {reply})", Operation.CONNECT)
        raise _Refused(F.PROXY_ERROR, f"SOCKS5 proxy refused CONNECT {_authority(host, port)}: {meaning} (reply {reply})")
    # The bound address and port: read so that the tunnel starts clean; their value is the
    # proxy's outgoing address, not the target's.
    if address_type == 1:
        await _recv_exactly(sock, 4 + 2, "reply")
    elif address_type == 4:
        await _recv_exactly(sock, 16 + 2, "reply")
    elif address_type == 3:
        (length,) = await _recv_exactly(sock, 1, "reply")
        await _recv_exactly(sock, length + 2, "reply")
    else:
        raise _Refused(F.PROXY_ERROR, f"SOCKS5 reply with unknown address type {address_type}")


async def _socks5_login(sock: socket.socket, credentials: tuple[str, str], facts: dict[str, Any]) -> None:
    """RFC 1929 username/password sub-negotiation."""
    user, password = (part.encode() for part in credentials)
    if len(user) > 255 or len(password) > 255:
        raise _Refused(F.PROXY_AUTH_REQUIRED, "SOCKS5 user and password must be at most 255 bytes each")
    await asyncio.get_running_loop().sock_sendall(sock, b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
    _version, status = await _recv_exactly(sock, 2, "authentication")
    facts["proxy_auth_status"] = status
    if status != 0:
        raise _Refused(F.PROXY_AUTH_REQUIRED, f"SOCKS5 proxy refused the credentials (status {status})")


def _socks5_address(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = _ascii_host(host)
        if len(name) > 255:
            raise _Refused(F.PROXY_ERROR, f"host name too long for SOCKS5 ({len(name)} bytes)") from None
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


async def _recv_exactly(sock: socket.socket, n: int, stage: str) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n:  # at most n turns: each read brings at least one byte, or raises
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise _Refused(F.EOF_ERROR, f"SOCKS5 proxy closed the connection during its {stage}")
        data += chunk
    return data


# --- names ----------------------------------------------------------------------------------------


def _ascii_host(host: str) -> bytes:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host.encode("idna")


def _authority(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{_ascii_host(host).decode('ascii')}:{port}"
