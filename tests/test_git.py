"""The git check against git's own smart-HTTP backend (git http-backend as CGI) and SSH
banner servers on loopback: both parts side by side in one result."""

from __future__ import annotations

import tracemalloc

import time
from pathlib import Path

import pytest

from monitor.config import GitCheck
from monitor.probes import probe_git, run_probe
from monitor.probes.git import _parse_advertisement
from tests.conftest import require
from tests.servers import tcp
from tests.servers.git_http import GIT, GitHttpServer, make_repositories
from tests.servers.ssh_banner import OPENSSH, banner
from tests.servers.tcp import TcpServer, closed_port, server_context
from tests.servers.dns_doh_hostile import gzip_bomb


@pytest.fixture(scope="module")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(GIT, "git is not installed (Debian: git)")
    return make_repositories(tmp_path_factory.mktemp("git"))


@pytest.fixture(params=["https", "http"])
async def git_server(request, serve, pki, repositories) -> GitHttpServer:
    context = server_context(pki.valid, alpn=["http/1.1"]) if request.param == "https" else None
    return await serve(GitHttpServer(repositories, ssl_context=context))


@pytest.fixture
async def sshd(serve) -> TcpServer:
    return await serve(TcpServer(banner()))


def git_check(**kw) -> GitCheck:
    return GitCheck(**(dict(name="g", kind="git", interval=60, timeout=2, read_timeout=0.5, vantages=["local"]) | kw))


async def run(check: GitCheck, vantage):
    return await probe_git(check, vantage, deadline=time.monotonic() + check.timeout)


async def test_smart_http_and_ssh_both_work(git_server, sshd, vantage):
    result = await run(git_check(url=git_server.url("/repo.git"), ssh=sshd.address), vantage)
    assert result.ok, result.failure
    http, ssh = result.facts["http"], result.facts["ssh"]
    assert http["ok"] and http["failure"] is None
    assert (http["status_code"], http["first_ref"]) == (200, "HEAD")
    assert http["content_type"] == "application/x-git-upload-pack-advertisement"
    assert http["git_agent"].startswith("git/")
    assert ssh["ok"] and ssh["banner"] == OPENSSH.decode().strip()
    assert set(ssh["phases"]) == {"connect", "ttfb"}
    assert set(result.phases) == set(http["phases"])  # the result's phases are the HTTP part's
    assert git_server.requests[-1].target == "/repo.git/info/refs?service=git-upload-pack"
    assert "git-protocol" not in git_server.requests[-1].headers  # protocol v0, as git clone starts
    assert result.target == f"{git_server.url('/repo.git')} + ssh://{sshd.address}"


async def test_a_gzip_bomb_is_capped_on_the_decoded_bytes(git_server, vantage):
    gzip_bomb()  # made (and cached) before tracing: the server's 64 MiB of zeros is not the probe's
    tracemalloc.start()
    try:
        result = await run(git_check(url=git_server.url("/bomb/repo.git")), vantage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.failure.cls, result.failure.operation) == ("http_protocol_error", "verify")
    assert "no ref advertised in the first" in result.failure.detail
    assert peak < 16 << 20, f"{peak} bytes at peak: the 64 MiB advertisement was inflated"


async def test_ssh_refused_while_https_works(git_server, vantage):
    result = await run(git_check(url=git_server.url("/repo.git"), ssh=f"127.0.0.1:{closed_port()}"), vantage)
    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "connect")
    assert result.facts["http"]["ok"] is True
    assert result.facts["ssh"]["failure"]["class"] == "connection_refused"


@pytest.mark.parametrize(
    "path, cls, operation, words",
    [
        ("/missing.git", "http_status", "http_round_trip", "status 404"),
        ("/empty.git", "http_protocol_error", "verify", "no refs advertised"),
        ("/portal/repo.git", "http_protocol_error", "verify", "not a smart-HTTP git server"),
    ],
)
async def test_smart_http_failures(git_server, sshd, vantage, path, cls, operation, words):
    result = await run(git_check(url=git_server.url(path), ssh=sshd.address), vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, operation)
    assert words in result.failure.detail
    assert result.facts["http"]["ok"] is False and result.facts["ssh"]["ok"] is True


@pytest.mark.parametrize(
    "handler, cls, operation",
    [
        (banner(before=(b"Welcome to the bastion\r\n", b"\r\n")), None, None),
        (banner(b"SSH-1.99-Cisco-1.25\r\n"), None, None),
        (banner(b"SSH-1.5-ancient\r\n"), "http_protocol_error", "read"),
        (banner(b"x" * 400), "http_protocol_error", "read"),  # no line end: not SSH
        (tcp.silent, "generic_timeout_error", "read"),
        (tcp.close_after_first_bytes, "generic_timeout_error", "read"),  # waits for us to speak first
        (tcp.reset_on_accept, "connection_reset", "read"),
    ],
    ids=["pre-banner-lines", "ssh-1.99", "ssh-1.5", "long-junk", "silent", "waits-for-client", "reset"],
)
async def test_ssh_identification(serve, vantage, handler, cls, operation):
    server = await serve(TcpServer(handler))
    result = await run(git_check(ssh=server.address), vantage)
    assert (result.failure.cls if result.failure else None, result.failure.operation if result.failure else None) == (cls, operation)
    assert set(result.phases) == {"connect", "ttfb"}  # only the SSH part: its phases


async def test_ssh_closed_before_identification(serve, vantage):
    async def close_at_once(reader, writer):
        writer.close()

    server = await serve(TcpServer(close_at_once))
    result = await run(git_check(ssh=server.address), vantage)
    assert (result.failure.cls, result.failure.operation) == ("eof_error", "read")


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


SERVICE, FLUSH = pkt(b"# service=git-upload-pack\n"), b"0000"


@pytest.mark.parametrize(
    "body, outcome",
    [
        (SERVICE + FLUSH, None),  # more to read
        (SERVICE + FLUSH + pkt(b"version 1\n"), None),
        (SERVICE + FLUSH + pkt(b"a" * 40 + b" HEAD\0agent=x multi_ack\n"), ("HEAD", "x")),
        (SERVICE + FLUSH + pkt(b"version 1\n") + pkt(b"b" * 64 + b" refs/heads/a\n"), ("refs/heads/a", None)),
        (SERVICE + FLUSH + FLUSH, "no refs advertised"),
        (SERVICE + FLUSH + pkt(b"0" * 40 + b" capabilities^{}\0agent=x\n"), "an empty repository"),
        (SERVICE + pkt(b"not a flush"), "no flush-pkt"),
        (SERVICE + FLUSH + pkt(b"short-id HEAD\n"), "not a ref line"),
        (pkt(b"# service=git-receive-pack\n") + FLUSH, "does not open with"),
        (b"<html>", "not a pkt-line length"),
        (SERVICE + FLUSH + b"0001", "unexpected special pkt-line"),
    ],
)
def test_advertisement_parsing(body, outcome):
    found = _parse_advertisement(body, complete=False)
    if outcome is None or isinstance(outcome, tuple):
        assert found == outcome
    else:
        assert outcome in found.detail and found.cls == "http_protocol_error"


async def test_through_the_runner(vantage):
    result = await run_probe(git_check(ssh=f"127.0.0.1:{closed_port()}"), vantage)
    assert (result.kind, result.failure.cls) == ("git", "connection_refused")
