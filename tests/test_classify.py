"""The exception -> failure class table. The enumeration tests walk every exception type the
probes can meet (httpx, httpcore, h11 hierarchies; ssl; the OS errors of connect/read/write;
getaddrinfo codes; timeouts) and fail when one of them would come out as internal_error —
e.g. after an httpx upgrade adds a type."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import h11
import httpcore
import httpx
import pytest

from monitor.model import FailureClass as F
from monitor.probes._classify import classify

# Types that only a bug of ours can raise (misusing a response or a stream, or an internal
# retry signal of httpcore's pool that never leaves it): these must stay internal_error.
PROGRAMMING_ERRORS = (httpx.StreamError, httpx.CookieConflict, httpcore.ConnectionNotAvailable)


def exception_types(*modules) -> list[type[BaseException]]:
    found = {
        v
        for m in modules
        for v in vars(m).values()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__.split(".")[0] == m.__name__
    }
    return sorted(found, key=lambda t: f"{t.__module__}.{t.__qualname__}")


def instance(t: type[BaseException]) -> BaseException:
    if t is httpx.HTTPStatusError:
        request = httpx.Request("GET", "http://localhost/")
        return t("boom", request=request, response=httpx.Response(500, request=request))
    try:
        return t("boom")
    except TypeError:  # httpx's stream errors take no message
        return t()


# Bases that are never raised themselves (h11 even refuses to instantiate its own); every
# concrete subclass is enumerated and checked.
ABSTRACT_BASES = (httpx.HTTPError, httpx.RequestError, httpx.TransportError, h11.ProtocolError)
LIBRARY_TYPES = [t for t in exception_types(httpx, httpcore, h11) if t not in ABSTRACT_BASES]


def test_the_enumeration_sees_the_hierarchies():
    names = {t.__name__ for t in LIBRARY_TYPES}
    assert {"ConnectError", "ReadTimeout", "RemoteProtocolError", "TooManyRedirects", "ProxyError"} <= names


@pytest.mark.parametrize("t", [t for t in LIBRARY_TYPES if not issubclass(t, PROGRAMMING_ERRORS)], ids=lambda t: f"{t.__module__.split('.')[0]}.{t.__name__}")
def test_every_library_exception_is_mapped(t):
    cls, detail = classify(instance(t))
    assert cls != F.INTERNAL_ERROR, f"{t} is unmapped"
    assert detail


@pytest.mark.parametrize("t", [t for t in LIBRARY_TYPES if issubclass(t, PROGRAMMING_ERRORS)], ids=lambda t: t.__name__)
def test_programming_errors_stay_internal(t):
    assert classify(instance(t))[0] == F.INTERNAL_ERROR


SSL_TYPES = exception_types(ssl)


@pytest.mark.parametrize("t", SSL_TYPES, ids=lambda t: t.__name__)
def test_every_ssl_exception_is_mapped(t):
    e = t(1, "boom")
    if isinstance(e, ssl.SSLCertVerificationError):
        e.verify_code, e.verify_message = 50, "application verification failure"
    assert classify(e)[0] != F.INTERNAL_ERROR


OS_ERRORS = {
    errno.ECONNREFUSED: F.CONNECTION_REFUSED,
    errno.ECONNRESET: F.CONNECTION_RESET,
    errno.EPIPE: F.CONNECTION_RESET,
    errno.ECONNABORTED: F.CONNECTION_RESET,
    errno.EHOSTUNREACH: F.HOST_UNREACHABLE,
    errno.EHOSTDOWN: F.HOST_UNREACHABLE,
    errno.ENETUNREACH: F.NETWORK_UNREACHABLE,
    errno.ENETDOWN: F.NETWORK_UNREACHABLE,
    errno.EADDRNOTAVAIL: F.NETWORK_UNREACHABLE,
    errno.EPERM: F.NETWORK_UNREACHABLE,
    errno.EACCES: F.NETWORK_UNREACHABLE,
    errno.ETIMEDOUT: F.GENERIC_TIMEOUT_ERROR,
}


@pytest.mark.parametrize("code, expected", OS_ERRORS.items(), ids=lambda v: errno.errorcode.get(v, str(v)))
def test_os_errors(code, expected):
    e = OSError(code, "boom")  # Python picks the subclass: ConnectionRefusedError, TimeoutError…
    cls, detail = classify(e)
    assert cls == expected
    if code != errno.ETIMEDOUT:
        assert detail.startswith(errno.errorcode[code])


GAI_ERRORS = {
    socket.EAI_NONAME: F.DNS_NXDOMAIN_ERROR,
    socket.EAI_NODATA: F.DNS_NO_ANSWER,
    socket.EAI_ADDRFAMILY: F.DNS_NO_ANSWER,
    socket.EAI_AGAIN: F.DNS_TEMPORARY_FAILURE,
    socket.EAI_FAIL: F.DNS_SERVFAIL_ERROR,
    socket.EAI_SYSTEM: F.DNS_SERVFAIL_ERROR,
}


@pytest.mark.parametrize("code, expected", GAI_ERRORS.items())
def test_getaddrinfo_errors(code, expected):
    cls, detail = classify(socket.gaierror(code, "boom"))
    assert cls == expected
    assert detail.startswith("EAI_")


@pytest.mark.parametrize("e", [TimeoutError(), asyncio.TimeoutError(), socket.timeout("timed out")], ids=repr)
def test_timeouts(e):
    assert classify(e) == (F.GENERIC_TIMEOUT_ERROR, str(e) or "timed out")


@pytest.mark.parametrize(
    "code, expected",
    [
        (10, F.SSL_INVALID_CERTIFICATE),  # expired
        (9, F.SSL_INVALID_CERTIFICATE),  # not yet valid
        (7, F.SSL_INVALID_CERTIFICATE),  # bad signature
        (2, F.SSL_UNKNOWN_AUTHORITY),
        (18, F.SSL_UNKNOWN_AUTHORITY),
        (19, F.SSL_UNKNOWN_AUTHORITY),
        (20, F.SSL_UNKNOWN_AUTHORITY),
        (21, F.SSL_UNKNOWN_AUTHORITY),
        (62, F.SSL_INVALID_HOSTNAME),
        (64, F.SSL_INVALID_HOSTNAME),
    ],
)
def test_certificate_verify_codes(code, expected):
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.verify_code, e.verify_message = code, "reason"
    assert classify(e) == (expected, f"reason (verify code {code})")


def test_ssl_eof_and_handshake_failures():
    assert classify(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))[0] == F.EOF_ERROR
    assert classify(ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"))[0] == F.EOF_ERROR
    assert classify(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))[0] == F.SSL_FAILED_HANDSHAKE


def wrapped(outer: BaseException, inner: BaseException, *, suppress: bool = False) -> BaseException:
    """`outer` raised while handling `inner`, as `raise outer from inner` (or `from None`)."""
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from (None if suppress else e)
    except BaseException as caught:
        return caught


def test_innermost_known_cause_wins():
    refused = wrapped(httpx.ConnectError("All connection attempts failed"), ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert classify(refused)[0] == F.CONNECTION_REFUSED
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_code, verify.verify_message = 62, "Hostname mismatch"
    assert classify(wrapped(httpx.ConnectError("x"), wrapped(httpcore.ConnectError("x"), verify)))[0] == F.SSL_INVALID_HOSTNAME


def test_cause_dropped_with_from_none_is_still_found():
    try:
        try:
            try:
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
            except OSError as exc:
                raise httpcore.ReadError("x") from exc  # as our stream raises it
        except httpcore.ReadError as exc:
            raise exc from None  # as httpcore's connection pool re-raises it
    except httpcore.ReadError as exc:
        core = exc
    assert core.__cause__ is None
    assert classify(wrapped(httpx.ReadError("x"), core)) == (F.CONNECTION_RESET, "ECONNRESET: Connection reset by peer")


def test_peer_closing_early_is_eof_not_protocol_error():
    assert classify(httpx.RemoteProtocolError("Server disconnected without sending a response."))[0] == F.EOF_ERROR
    assert classify(h11.RemoteProtocolError("peer closed connection without sending complete message body: incomplete chunked read"))[0] == F.EOF_ERROR
    assert classify(httpx.RemoteProtocolError("illegal status line: bytearray(b'SSH-2.0')"))[0] == F.HTTP_PROTOCOL_ERROR


@pytest.mark.parametrize("e", [ValueError("bug"), KeyError("bug"), OSError(errno.EINVAL, "Invalid argument"), socket.gaierror(socket.EAI_BADFLAGS, "Bad value for ai_flags")], ids=repr)
def test_unknown_is_internal_error(e):
    assert classify(e)[0] == F.INTERNAL_ERROR


def test_detail_is_one_short_line():
    cls, detail = classify(httpx.RemoteProtocolError("illegal\nstatus line " + "x" * 1000))
    assert "\n" not in detail and len(detail) <= 300
