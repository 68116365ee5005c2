"""pytest fixtures over the loopback servers (pki, vantage, serve, listener, and the Debian proxies tiny and socks), loaded for every test
module through `pytest_plugins` in tests/conftest.py."""

from __future__ import annotations

import socket
from typing import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from monitor.vantage import Vantage
from tests.conftest import require
from tests.servers.certs import Pki, make_pki
from tests.servers.proxy_debian import DebianProxy, dante, missing, tinyproxy
from tests.servers.tcp import TcpServer

Serve = Callable[[TcpServer], Awaitable[TcpServer]]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def vantage(pki: Pki) -> Vantage:
    """The local vantage, trusting the test CA besides certifi's roots."""
    return Vantage(name="local", extra_ca_files=(str(pki.ca_path),))


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a server for this test: `server = await serve(HttpServer(...))`; stopped at the end."""
    started: list[TcpServer] = []

    async def start(server: TcpServer) -> TcpServer:
        started.append(server)
        return await server.start()

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts (the kernel completes handshakes from the backlog)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianProxy]:
    """tinyproxy (Debian) on loopback, with a throwaway config: an HTTP CONNECT proxy."""
    reason = missing("tinyproxy")
    require(reason is None, reason or "")
    with tinyproxy(tmp_path_factory.mktemp("tinyproxy")) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianProxy]:
    """dante (Debian) on loopback, with a throwaway config: a SOCKS5 proxy."""
    reason = missing("danted")
    require(reason is None, reason or "")
    with dante(tmp_path_factory.mktemp("dante")) as proxy:
        yield proxy
