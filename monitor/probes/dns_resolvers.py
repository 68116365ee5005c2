"""Where a DNS check sends its query: the resolver spec strings of a `dns` check, parsed.

    udp://IP[:53]            plain DNS over UDP (RFC 1035), with injection capture
    tcp://IP[:53]            plain DNS over TCP (RFC 7766)
    tls://NAME-or-IP[:853][#AUTH-NAME]
                             DNS over TLS (RFC 7858). The TLS name sent as SNI and verified is
                             AUTH-NAME if given, else the host; an IP host with no AUTH-NAME is
                             verified against the certificate's IP addresses.
    https://HOST[:443]/PATH  DNS over HTTPS (RFC 8484); GET or POST per the check's doh_method
    system                   the operating system's resolver (getaddrinfo), a comparison point

Pure parsing, no I/O: config validation uses it to report a bad spec at its line, and the
probe uses the same parse so that what was validated is what is measured.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from monitor.redact import redact_url

Transport = Literal["udp", "tcp", "tls", "https", "system"]

DEFAULT_PORTS: dict[str, int] = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}

# A DNS name as the TLS layer will see it (LDH labels); checked here so that a typo in an
# auth name is a config error rather than a certificate mismatch at 3 a.m.
_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?")


@dataclass(frozen=True, slots=True)
class Resolver:
    spec: str  # as configured: the per-resolver result's `target`
    transport: Transport
    host: str = ""  # IP literal (udp/tcp) or IP/name (tls/https); "" for system
    port: int = 0
    auth_name: str | None = None  # TLS name to send and verify (tls/https)
    path: str = ""  # DoH path and query, e.g. "/dns-query"

    @property
    def encrypted(self) -> bool:
        return self.transport in ("tls", "https")

    @property
    def host_is_ip(self) -> bool:
        return _is_ip(self.host)

    @property
    def url(self) -> str:
        """The DoH URL as requested (authority is the TLS name, never the bootstrap IP)."""
        authority = f"[{self.auth_name}]" if ":" in (self.auth_name or "") else self.auth_name
        return f"https://{authority}:{self.port}{self.path}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _valid_name(name: str, what: str, spec: str) -> str:
    if not _HOSTNAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} in resolver {spec!r} is not a valid host name")
    return name.rstrip(".")


def parse_resolver(spec: str) -> Resolver:
    """Parse one resolver spec; ValueError says what is wrong in words an operator can act on."""
    if spec == "system":
        return Resolver(spec=spec, transport="system")
    parts = urlsplit(spec)
    scheme = parts.scheme
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"resolver {spec!r}: expected udp://IP, tcp://IP, tls://HOST, https://HOST/PATH or system")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:  # urlsplit's port parsing: "Port out of range 0-65535"
        raise ValueError(f"resolver {spec!r}: {e}") from None
    if not host:
        raise ValueError(f"resolver {spec!r}: missing host")
    if parts.username or parts.password:
        raise ValueError(f"resolver {redact_url(spec)!r}: credentials in a URL would be shown in metric labels, logs and stored results")
    port = port or DEFAULT_PORTS[scheme]

    if scheme in ("udp", "tcp"):
        # A plain resolver named by a host name would need another resolver to find it;
        # that hidden lookup would blur which resolver answered.
        if not _is_ip(host):
            raise ValueError(f"resolver {spec!r}: {scheme}:// needs an IP address, not a name")
        if parts.path or parts.query or parts.fragment:
            raise ValueError(f"resolver {spec!r}: unexpected path, query or fragment")
        return Resolver(spec=spec, transport=scheme, host=host, port=port)

    if scheme == "tls":
        if parts.path or parts.query:
            raise ValueError(f"resolver {spec!r}: tls:// takes HOST[:PORT][#AUTH-NAME], no path")
        if parts.fragment:
            auth = _valid_name(parts.fragment, "auth name", spec)
        elif _is_ip(host):
            auth = host
        else:
            auth = _valid_name(host, "host", spec)
        return Resolver(spec=spec, transport="tls", host=host, port=port, auth_name=auth)

    # https
    if parts.fragment:
        raise ValueError(f"resolver {spec!r}: a DoH URL takes no #fragment")
    if not _is_ip(host):
        _valid_name(host, "host", spec)
    path = (parts.path or "/dns-query") + (f"?{parts.query}" if parts.query else "")
    return Resolver(spec=spec, transport="https", host=host, port=port, auth_name=host, path=path)
