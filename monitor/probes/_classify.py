"""Exception -> (FailureClass, detail): the one place that says what a failure was.

The caller knows the operation (the phase it was in); this module only names the class.
Most specific wins: httpx wraps httpcore, which wraps the OSError or SSLError that says what
the network did, so the chain (__cause__, else __context__) is walked and the innermost
exception known here decides. An exception known to nobody is `internal_error` — a bug to fix
here, never a network outcome (tests/test_classify.py enumerates what the probes can see).

Choices worth knowing:
- getaddrinfo's EAI_AGAIN ("temporary failure in name resolution") is `dns_temporary_failure`,
  as OONI spells it: no answer for now — glibc returns it when no server answered within
  resolv.conf's own timeouts (no route, nothing listening) or every one answered SERVFAIL,
  and cannot tell which. Our own deadline expiring is a TimeoutError instead, hence
  `generic_timeout_error`. The dns probe, which sees the wire, tells these apart.
- An HTTP peer closing the connection early ("Server disconnected…", "peer closed connection
  without sending complete message body") is `eof_error`, as OONI names it, not a protocol error.
- EADDRNOTAVAIL (a vantage source address this host does not have) and EPERM/EACCES (a local
  firewall refusing the packet) mean the network is unreachable from this vantage.
"""

from __future__ import annotations

import errno
import socket
import ssl

import dns.exception
import h11
import httpcore
import httpx

from monitor.model import FailureClass as F
from monitor.probes._modzip import BadModuleZip, ZipTooLarge
from monitor.probes._sumdb import SumdbError
from monitor.probes._tlog import InconsistentTiles
from monitor.probes.dns_errors import WrongQueryId
from monitor.redact import redact_text

_DETAIL_MAX = 300
_CHAIN_MAX = 16  # exception chains are short; the bound only guards against a cycle we missed

# OpenSSL X509_V_ERR_* codes carried by ssl.SSLCertVerificationError.verify_code.
_VERIFY_CODES = {
    2: F.SSL_UNKNOWN_AUTHORITY,   # unable to get issuer certificate
    18: F.SSL_UNKNOWN_AUTHORITY,  # self-signed certificate
    19: F.SSL_UNKNOWN_AUTHORITY,  # self-signed certificate in chain
    20: F.SSL_UNKNOWN_AUTHORITY,  # unable to get local issuer certificate
    21: F.SSL_UNKNOWN_AUTHORITY,  # unable to verify the first certificate
    62: F.SSL_INVALID_HOSTNAME,   # hostname mismatch
    64: F.SSL_INVALID_HOSTNAME,   # IP address mismatch (target given as an IP literal)
}  # anything else (9 not yet valid, 10 expired, bad signature…) is ssl_invalid_certificate

_GAI_CODES = {
    socket.EAI_NONAME: F.DNS_NXDOMAIN_ERROR,
    socket.EAI_NODATA: F.DNS_NO_ANSWER,
    socket.EAI_ADDRFAMILY: F.DNS_NO_ANSWER,  # no address in the family the vantage can use
    socket.EAI_AGAIN: F.DNS_TEMPORARY_FAILURE,
    socket.EAI_FAIL: F.DNS_SERVFAIL_ERROR,
    socket.EAI_SYSTEM: F.DNS_SERVFAIL_ERROR,  # the resolver itself failed (e.g. no resolv.conf)
}  # the other EAI codes (BADFLAGS, FAMILY, SERVICE, SOCKTYPE…) mean we called it wrongly

_ERRNOS = {
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
}

_PEER_CLOSED = ("Server disconnected", "peer closed connection without sending complete message body")

# Library exceptions by type, checked in order after the OS/TLS ones above.
_BY_TYPE: tuple[tuple[tuple[type[BaseException], ...], F], ...] = (
    ((httpx.TimeoutException, httpcore.TimeoutException), F.GENERIC_TIMEOUT_ERROR),
    # DNS wire input (dnspython's hierarchy): a wrong id first, then every way bytes can fail
    # to be the reply (FormError: ShortHeader, TrailingJunk, BadPointer…; BadResponse).
    ((WrongQueryId,), F.DNS_REPLY_WITH_WRONG_QUERY_ID),
    ((dns.exception.Timeout,), F.GENERIC_TIMEOUT_ERROR),
    ((dns.exception.DNSException,), F.DNS_MALFORMED),
    ((httpx.ProxyError, httpcore.ProxyError), F.PROXY_ERROR),
    # A network error with no lower cause recorded: the connection broke, we cannot say how.
    ((httpx.NetworkError, httpcore.NetworkError), F.CONNECTION_RESET),
    (
        (
            httpx.ProtocolError, httpcore.ProtocolError, h11.ProtocolError,
            httpx.UnsupportedProtocol, httpcore.UnsupportedProtocol,  # e.g. a redirect to ftp://
            httpx.TooManyRedirects, httpx.DecodingError, httpx.InvalidURL,
        ),
        F.HTTP_PROTOCOL_ERROR,
    ),
    ((httpx.HTTPStatusError,), F.HTTP_STATUS),
    # What the goproxy probe finds wrong in a module zip or a checksum database's answer.
    ((ZipTooLarge,), F.RESPONSE_TOO_LARGE),  # before BadModuleZip, its base
    ((BadModuleZip,), F.BAD_MODULE_ZIP),
    ((SumdbError, InconsistentTiles), F.SUMDB_VERIFICATION_FAILED),
)


def classify(exc: BaseException) -> tuple[F, str]:
    """The failure class of `exc` and a one-line detail for humans."""
    for e in reversed(_chain(exc)):
        found = _classify_one(e)
        if found is not None:
            return found[0], _clip(found[1])
    return F.INTERNAL_ERROR, _clip(f"unclassified {type(exc).__name__}: {exc}")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps, outermost first.

    __context__ is followed even when suppressed: httpcore's connection pool re-raises with
    `raise exc from None`, which drops the __cause__ pointing at the OSError; the same
    OSError is still the __context__, and it is the most specific account of what happened.
    """
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(seen) < _CHAIN_MAX and not any(e is s for s in seen):
        seen.append(e)
        e = e.__cause__ if e.__cause__ is not None else e.__context__
    return seen


def _classify_one(e: BaseException) -> tuple[F, str] | None:
    # SSLError and gaierror are OSErrors, and TimeoutError is one too: order matters here.
    if isinstance(e, ssl.SSLCertVerificationError):
        code = e.verify_code
        return _VERIFY_CODES.get(code, F.SSL_INVALID_CERTIFICATE), f"{e.verify_message} (verify code {code})"
    if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return F.EOF_ERROR, _text(e)
    if isinstance(e, ssl.SSLError):
        return F.SSL_FAILED_HANDSHAKE, _text(e)
    if isinstance(e, socket.gaierror):
        name = _name_of(e.errno, "EAI_")
        return _GAI_CODES.get(e.errno, F.INTERNAL_ERROR), f"{name}: {e.strerror}"
    if isinstance(e, TimeoutError):
        return F.GENERIC_TIMEOUT_ERROR, str(e) or "timed out"
    if isinstance(e, OSError):
        detail = f"{errno.errorcode.get(e.errno, 'errno ' + str(e.errno))}: {e.strerror or e}"
        return _ERRNOS.get(e.errno, F.INTERNAL_ERROR), detail
    if isinstance(e, (httpx.RemoteProtocolError, httpcore.RemoteProtocolError, h11.RemoteProtocolError)):
        if str(e).startswith(_PEER_CLOSED):
            return F.EOF_ERROR, _text(e)
    for types, cls in _BY_TYPE:
        if isinstance(e, types):
            return cls, _text(e)
    return None


def _name_of(code: int | None, prefix: str) -> str:
    for name in dir(socket):
        if name.startswith(prefix) and getattr(socket, name) == code:
            return name
    return f"{prefix}{code}"


def _text(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _clip(s: str) -> str:
    s = " ".join(redact_text(s).split())  # an exception's text may quote a URL with a token
    return s if len(s) <= _DETAIL_MAX else s[: _DETAIL_MAX - 1] + "…"
