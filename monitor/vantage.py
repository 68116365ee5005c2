"""A vantage: where a probe measures from, and how it gets its sockets there.

Probes never call socket.socket() themselves: they ask the vantage for a socket so that a
source address (`bind`) and a network namespace (`netns`, monitor/netns.py) apply to every
kind of probe alike; name lookups go through the vantage too, so a namespace's resolver is used.
A vantage may send everything through egress proxies (`via`, HTTP CONNECT or SOCKS5): the
probes' connections are then opened by Measurement.open, which connects to the first proxy
with a socket from here and has each proxy in turn set up the tunnel (probes/_proxy_tunnel.py),
so every probe kind that connects through Measurement.open is proxied without knowing it.
The vantage also carries the roots a probe trusts (certifi's Mozilla set plus the configured
extra CA files) because trust is part of the measuring position.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from functools import cached_property
import certifi

from monitor import netns as network_namespaces
from monitor.config import Config, split_proxy_url
from monitor.credentials import CredentialsUnavailable, user_password

__all__ = ["CredentialsUnavailable", "Proxy", "Vantage", "vantages_from_config"]


@dataclass(frozen=True)
class Proxy:
    """One egress proxy. It knows where its credentials are (an environment variable or a
    file holding USER:PASSWORD), never the credentials: they are read at each use and dropped,
    so no repr, log line, result or export can carry them."""

    scheme: str  # http, socks5 (given an address resolved here) or socks5h (given the name)
    host: str
    port: int
    auth_env: str | None = None
    auth_file: str | None = None

    @classmethod
    def from_url(cls, url: str, *, auth_env: str | None = None, auth_file: str | None = None) -> Proxy:
        scheme, host, port = split_proxy_url(url)
        return cls(scheme, host, port, auth_env, auth_file)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def resolves_names(self) -> bool:
        """Whether the proxy is sent the target's name (remote DNS) rather than an address."""
        return self.scheme != "socks5"

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) read now, or None if none are configured."""
        return user_password(env=self.auth_env, file=self.auth_file, what=f"credentials for {self.url}")


@dataclass(frozen=True)
class Vantage:
    name: str
    bind: str | None = None
    extra_ca_files: tuple[str, ...] = field(default=())
    via: tuple[Proxy, ...] = ()  # egress proxies, first hop first
    netns: str | None = None  # network namespace (/run/netns/NAME) its sockets and lookups are made in

    @classmethod
    def local(cls) -> Vantage:
        return cls(name="local")

    def new_socket(self, family: int, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A non-blocking socket of this vantage, bound to its source address if it has one."""
        if self.via and type != socket.SOCK_STREAM:
            # Config validation refuses UDP checks on proxy vantages; a socket here would
            # silently measure from this host instead of from the proxy.
            raise ValueError(f"vantage {self.name!r} sends through a proxy, which carries TCP streams only")
        sock = network_namespaces.new_socket(self.netns, family, type) if self.netns else socket.socket(family, type)
        try:
            sock.setblocking(False)
            if self.bind:
                sock.bind((self.bind, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    async def getaddrinfo(self, host: str, port: int | str | None, *, family: int = 0, type: int = 0) -> list:
        """The system resolver's answer as seen from this vantage (inside its namespace, if any)."""
        if self.netns:
            return await network_namespaces.getaddrinfo(self.netns, host, port, family=family, type=type)
        return await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=type)

    @cached_property
    def verify_context(self) -> ssl.SSLContext:
        """Client context that verifies against certifi plus the extra CA files."""
        ctx = ssl.create_default_context(cafile=certifi.where())
        for path in self.extra_ca_files:
            ctx.load_verify_locations(cafile=path)
        return ctx


def vantages_from_config(config: Config) -> dict[str, Vantage]:
    extra = tuple(config.trust.extra_ca_files)
    return {
        v.name: Vantage(
            name=v.name,
            bind=v.bind,
            extra_ca_files=extra,
            netns=v.netns,
            via=(Proxy.from_url(v.via, auth_env=v.auth_env, auth_file=v.auth_file),) if v.via else (),
        )
        for v in config.vantages
    }
