"""Timed network primitives: resolve, connect, TLS handshake.

Each takes its clock (time.perf_counter) immediately around the awaited socket operation, with
no other await in between, so a phase measures the network and not our bookkeeping. Each
either returns `(value, seconds)` or raises `NetError`, which carries the Failure (class from
_classify, operation from the primitive) and the time spent until it failed.

The TLS handshake drives an ssl.SSLObject over memory BIOs with loop.sock_sendall/sock_recv
instead of asyncio's transports: we then see every flight (and when the ClientHello left),
and we can still read the chain the server presented after verification failed.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import socket
import ssl
import time
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from cryptography import x509

from monitor.model import Failure, Operation
from monitor.probes._classify import classify
from monitor.vantage import Vantage

_RECV_SIZE = 65536
# Upper bounds on loop turns; time is bounded by the caller's timeout, these only stop a peer
# that keeps feeding bytes that never complete a handshake or a record (one turn = one recv).
_MAX_HANDSHAKE_READS = 1000
_MAX_RECORD_READS = 1000


class NetError(Exception):
    """What went wrong in a primitive, ready to become a ProbeResult's failure.

    `tls` is set by tls_handshake: what was seen before the failure (the presented chain
    when verification failed, and the time since the ClientHello left).
    """

    def __init__(self, failure: Failure, elapsed: float, tls: TLSInfo | None = None):
        super().__init__(f"{failure.operation}: {failure.cls}: {failure.detail}")
        self.failure = failure
        self.elapsed = elapsed
        self.tls = tls


@dataclass(frozen=True)
class TLSInfo:
    """What a TLS handshake showed. `chain_sha256` is the chain as presented, leaf first."""

    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    subject: str | None = None
    issuer: str | None = None
    sans: tuple[str, ...] = ()
    not_after: str | None = None  # ISO 8601 UTC, e.g. 2027-01-31T12:00:00Z
    chain_sha256: tuple[str, ...] = ()
    verified: bool = False
    # Seconds from the ClientHello leaving to the handshake's end (completed or failed): how long
    # a middlebox took to reset or drop, or the server to answer. None if it never left.
    after_client_hello: float | None = None

    def facts(self) -> dict[str, Any]:
        return {
            "tls_version": self.version,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "cert_not_after": self.not_after,
            "chain_sha256": list(self.chain_sha256),
            "verified": self.verified,
        }


class TLSConn:
    """A completed TLS session on a socket, read and written through its memory BIOs."""

    def __init__(self, sock: socket.socket, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, info: TLSInfo):
        self.sock = sock
        self.ssl_object = ssl_object
        self.info = info
        self._incoming = incoming
        self._outgoing = outgoing

    async def recv(self, max_bytes: int) -> bytes:
        """Up to max_bytes of application data; b"" once the peer has closed."""
        loop = asyncio.get_running_loop()
        for _ in range(_MAX_RECORD_READS):
            try:
                data = self.ssl_object.read(max_bytes)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a close without one ("ragged EOF", common with HTTP servers):
                # both end the stream; the protocol's own framing says if anything was cut short.
                return b""
            else:
                return self._received(data, max_bytes)
            await self._flush()  # post-handshake messages (e.g. KeyUpdate) may want an answer
            _feed(self._incoming, await loop.sock_recv(self.sock, _RECV_SIZE))
        raise ssl.SSLError(f"no complete TLS record after {_MAX_RECORD_READS} reads")

    def _received(self, data: bytes, max_bytes: int) -> bytes:
        """`data` and the records already received after it, up to max_bytes.

        SSLObject.read returns one record (at most 16 KiB) per call, and one socket read brings
        up to four: handing them over together costs the caller one parse and one loop turn
        per socket read rather than per record. What stays undecrypted (a partial record, or
        the peer's close) is read by the next call."""
        size = len(data)
        if size >= max_bytes or not (self._incoming.pending or self.ssl_object.pending()):
            return data
        chunks = [data]
        while size < max_bytes and (self._incoming.pending or self.ssl_object.pending()):
            try:
                more = self.ssl_object.read(max_bytes - size)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not more:
                break
            chunks.append(more)
            size += len(more)
        return b"".join(chunks)

    async def send(self, data: bytes) -> None:
        self.ssl_object.write(data)
        await self._flush()

    async def _flush(self) -> None:
        if self._outgoing.pending:
            await asyncio.get_running_loop().sock_sendall(self.sock, self._outgoing.read())


def budget(limit: float, deadline: float) -> float:
    """Seconds a phase may take: its own limit, capped by what is left before `deadline`
    (time.monotonic()). May be <= 0, in which case the phase times out at once."""
    return min(limit, deadline - time.monotonic())


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, vantage: Vantage, timeout: float) -> tuple[list[str], float]:
    """Addresses of `host` from the system resolver, in its order, and the seconds it took.

    A vantage bound to a source address can only use that address family, so only that
    family is asked for. getaddrinfo runs in a worker thread: on timeout we stop waiting for
    it (glibc's own resolv.conf timeouts end the thread). The vantage runs it: a namespace
    vantage asks from inside its namespace, with its resolv.conf.
    """
    family = _family(vantage.bind) if vantage.bind else socket.AF_UNSPEC
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            infos = await vantage.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM)
            elapsed = time.perf_counter() - started
    except OSError as exc:
        raise _net_error(exc, Operation.RESOLVE, started, timeout) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos)), elapsed


async def connect(ip: str, port: int, vantage: Vantage, timeout: float) -> tuple[socket.socket, float]:
    """A connected non-blocking TCP socket from the vantage, and the seconds connect took."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        sock = vantage.new_socket(_family(ip))
    except OSError as exc:  # e.g. the vantage's source address is not on this host
        raise _net_error(exc, Operation.CONNECT, started, timeout) from exc
    try:
        # Requests go out in one write; without Nagle a follow-up write (a POST body) is not
        # held back waiting for an ACK. curl sets this too.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            await loop.sock_connect(sock, (ip, port))
            elapsed = time.perf_counter() - started
    except OSError as exc:
        sock.close()
        raise _net_error(exc, Operation.CONNECT, started, timeout) from exc
    except BaseException:
        sock.close()
        raise
    return sock, elapsed


async def tls_handshake(
    sock: socket.socket,
    server_hostname: str | None,
    ssl_context: ssl.SSLContext,
    alpn: Sequence[str],
    timeout: float,
) -> tuple[TLSConn, float]:
    """Handshake on a connected socket, verifying with `ssl_context`; the caller keeps the socket.

    `server_hostname` is sent as SNI (unless it is an IP literal) and checked against the
    certificate. None sends no SNI; the chain is then verified against the same roots but no
    name is checked, since there is none to check.
    """
    loop = asyncio.get_running_loop()
    context = ssl_context if server_hostname is not None else _without_name_check(ssl_context)
    # ALPN is a context-wide setting in Python; wrap_bio copies it into the new connection,
    # and nothing runs between the two lines, so concurrent handshakes cannot see each other's.
    context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    hello_sent: float | None = None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            for _ in range(_MAX_HANDSHAKE_READS):
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                if outgoing.pending:
                    await loop.sock_sendall(sock, outgoing.read())
                    if hello_sent is None:
                        hello_sent = time.perf_counter()
                _feed(incoming, await loop.sock_recv(sock, _RECV_SIZE))
            else:
                raise ssl.SSLError(f"handshake unfinished after {_MAX_HANDSHAKE_READS} reads")
            if outgoing.pending:  # our last flight (Finished) is part of the handshake, as in curl
                await loop.sock_sendall(sock, outgoing.read())
            ended = time.perf_counter()
    except OSError as exc:
        failed = time.perf_counter()
        _send_alert(sock, outgoing)
        info = _tls_info(tls, verified=False, after_client_hello=_since(hello_sent, failed))
        raise _net_error(exc, Operation.TLS_HANDSHAKE, started, timeout, info) from exc
    verified = context.verify_mode == ssl.CERT_REQUIRED
    info = _tls_info(tls, verified=verified, after_client_hello=_since(hello_sent, ended))
    return TLSConn(sock, tls, incoming, outgoing, info), ended - started


# ---------------------------------------------------------------------------------------------


def _net_error(exc: OSError, operation: Operation, started: float, timeout: float, tls: TLSInfo | None = None) -> NetError:
    elapsed = time.perf_counter() - started
    cls, detail = classify(exc)
    if isinstance(exc, TimeoutError) and not str(exc):  # our own deadline: say which
        detail = f"no answer within {timeout:.3g}s" if timeout > 0 else "no time left before the probe's deadline"
    return NetError(Failure(cls, operation, detail), elapsed, tls)


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def _feed(incoming: ssl.MemoryBIO, data: bytes) -> None:
    """Hand received bytes to OpenSSL; an empty read is the peer's EOF, which OpenSSL then
    reports as SSLEOFError (mid-handshake) or as a clean close (after close_notify)."""
    if data:
        incoming.write(data)
    else:
        incoming.write_eof()


def _since(mark: float | None, now: float) -> float | None:
    return None if mark is None else now - mark


def _send_alert(sock: socket.socket, outgoing: ssl.MemoryBIO) -> None:
    """A failed handshake leaves OpenSSL's alert in the BIO; real clients send it, so do we.
    One non-blocking send, no waiting: the failure is already measured."""
    if outgoing.pending:
        with contextlib.suppress(OSError):
            sock.send(outgoing.read())


_NAMELESS: weakref.WeakKeyDictionary[ssl.SSLContext, ssl.SSLContext] = weakref.WeakKeyDictionary()


def _without_name_check(context: ssl.SSLContext) -> ssl.SSLContext:
    """A context with the same roots that checks the chain but no host name (cached).

    Python refuses a handshake without server_hostname on a context that checks host names,
    and an SSLContext cannot be copied, so the roots are carried over by value.
    """
    if not context.check_hostname:
        return context
    derived = _NAMELESS.get(context)
    if derived is None:
        derived = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        derived.check_hostname = False
        derived.verify_mode = ssl.CERT_REQUIRED
        derived.verify_flags = context.verify_flags
        derived.minimum_version = context.minimum_version
        roots = context.get_ca_certs(binary_form=True)
        if roots:
            derived.load_verify_locations(cadata=b"".join(roots))
        _NAMELESS[context] = derived
    return derived


def _presented_chain(tls: ssl.SSLObject) -> list[bytes]:
    """The chain the server sent (DER, leaf first), readable even after verification failed.

    Public since Python 3.13; 3.11 and 3.12 have it on the private _sslobj, as Certificate objects.
    """
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return list(public() or [])
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in tls._sslobj.get_unverified_chain() or []]


def _tls_info(tls: ssl.SSLObject, *, verified: bool, after_client_hello: float | None) -> TLSInfo:
    chain = _presented_chain(tls)
    cipher = tls.cipher()
    return TLSInfo(
        version=tls.version(),
        cipher=cipher[0] if cipher else None,
        alpn=tls.selected_alpn_protocol(),
        chain_sha256=tuple(_sha256(der) for der in chain),
        verified=verified,
        after_client_hello=after_client_hello,
        **(_leaf_fields(chain[0]) if chain else {}),
    )


# A prober meets the same few certificates over and over: what it reads from them is kept,
# keyed by their DER bytes (the certificate itself, so a changed certificate is a new key),
# instead of being parsed again on every handshake. Bounded, least recently used first out.
_CERTIFICATES_KEPT = 1024


@functools.lru_cache(maxsize=_CERTIFICATES_KEPT)
def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@functools.lru_cache(maxsize=_CERTIFICATES_KEPT)
def _leaf_fields(der: bytes) -> dict[str, Any]:
    """Subject, issuer, SANs and expiry of the leaf. A certificate OpenSSL accepted but
    cryptography cannot parse leaves these empty rather than failing the probe.
    Cached: callers unpack the dict and must not change it."""
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
                str(ip) for ip in san.get_values_for_type(x509.IPAddress)
            )
        except x509.ExtensionNotFound:
            sans = ()
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "sans": sans,
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    except ValueError:
        return {}
