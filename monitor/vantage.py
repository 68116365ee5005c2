"""A vantage: where a probe measures from, and how it gets its sockets there.

Probes never call socket.socket() themselves: they ask the vantage for a socket so that a
source address (`bind`), and later an egress proxy or a network namespace, apply to every
kind of probe alike. The vantage also carries the roots a probe trusts (certifi's Mozilla
set plus the configured extra CA files) because trust is part of the measuring position.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from functools import cached_property

import certifi

from monitor.config import Config


@dataclass(frozen=True)
class Vantage:
    name: str
    bind: str | None = None
    extra_ca_files: tuple[str, ...] = field(default=())

    @classmethod
    def local(cls) -> Vantage:
        return cls(name="local")

    def new_socket(self, family: int, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A non-blocking socket of this vantage, bound to its source address if it has one."""
        sock = socket.socket(family, type)
        try:
            sock.setblocking(False)
            if self.bind:
                sock.bind((self.bind, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    @cached_property
    def verify_context(self) -> ssl.SSLContext:
        """Client context that verifies against certifi plus the extra CA files."""
        ctx = ssl.create_default_context(cafile=certifi.where())
        for path in self.extra_ca_files:
            ctx.load_verify_locations(cafile=path)
        return ctx


def vantages_from_config(config: Config) -> dict[str, Vantage]:
    extra = tuple(config.trust.extra_ca_files)
    return {v.name: Vantage(name=v.name, bind=v.bind, extra_ca_files=extra) for v in config.vantages}
