"""Secrets never leave the process. A proxy password (auth_env and auth_file), a bearer token
(auth: bearer_env) and a token in a query string are used against real loopback servers, and
then searched for — byte for byte — in the JSON output, every log line (at debug), the stored
results (the SQLite files) and /metrics of a running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from monitor.redact import redact_text, redact_url
from tests.daemon_harness import start_daemon
from tests.servers.http import HttpServer
from tests.servers.proxy_python import HttpProxy

PROXY_PASSWORD = "pr0xy-pa55-d0nt-leak"
BEARER = "b3arer-t0ken-d0nt-leak"
QUERY_TOKEN = "qu3ry-t0ken-d0nt-leak"
SECRETS = (PROXY_PASSWORD, BEARER, QUERY_TOKEN)


def config(tmp_path: Path, proxy: HttpProxy, server: HttpServer) -> str:
    auth_file = tmp_path / "proxy.auth"
    auth_file.write_text(f"alice:{PROXY_PASSWORD}\n")
    return (
        "agent: secrets\n"
        'storage: {url: "sqlite:///store.db", flush_interval: 200ms}\n'
        'exporter: {listen: "127.0.0.1:{port}"}\n'
        "vantages:\n"
        "  - {name: local}\n"
        f'  - {{name: corp-env, via: "{proxy.url}", auth_env: TEST_PROXY_AUTH}}\n'
        f'  - {{name: corp-file, via: "{proxy.url}", auth_file: "{auth_file}"}}\n'
        "defaults: {interval: 2s, timeout: 1500ms, vantages: [local, corp-env, corp-file]}\n"
        "checks:\n"
        f'  - {{name: api, kind: http, url: "{server.url("/status/200")}?token={QUERY_TOKEN}&page=2", auth: {{bearer_env: TEST_BEARER}}}}\n'
    )


ENV = {"TEST_PROXY_AUTH": f"alice:{PROXY_PASSWORD}", "TEST_BEARER": BEARER}


def leaked(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def stored_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))


async def test_probe_once_json_logs_and_store_hold_no_secret(tmp_path: Path) -> None:
    async with HttpProxy(credentials=("alice", PROXY_PASSWORD)) as proxy, HttpServer() as server:
        (tmp_path / "cfg.yaml").write_text(config(tmp_path, proxy, server).replace("{port}", "9464"))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "probe", "-c", "cfg.yaml", "--once", "--json", "--log-level", "debug",
            cwd=tmp_path, env={**os.environ, **ENV}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert [(r["vantage"], r["ok"]) for r in results] == [("local", True), ("corp-env", True), ("corp-file", True)], err.decode()
    # The secrets were used: the proxy was sent the password, the server the token and bearer.
    assert {a.credentials for a in proxy.asked} == {("alice", PROXY_PASSWORD)}
    assert all(r.headers.get("authorization") == f"Bearer {BEARER}" and QUERY_TOKEN in r.target for r in server.requests)
    assert results[0]["target"].endswith("?token=REDACTED&page=2")
    assert leaked(out) == [] and leaked(err) == [] and leaked(stored_bytes(tmp_path)) == []


async def test_a_running_daemon_shows_no_secret(tmp_path: Path) -> None:
    async with HttpProxy(credentials=("alice", PROXY_PASSWORD)) as proxy, HttpServer() as server:
        daemon = await asyncio.to_thread(start_daemon, config(tmp_path, proxy, server), tmp_path, log_level="debug", env=ENV)
        try:
            # A probe's own series (the scheduler's skipped-runs counter names the vantage from the start).
            metrics = await asyncio.to_thread(daemon.wait_for_metric, 'page=2",vantage="corp-file"')
            await asyncio.sleep(1.0)
        finally:
            assert await asyncio.to_thread(daemon.stop) == 0
    assert 'target="http://127.0.0.1' in metrics and "token=REDACTED" in metrics
    assert leaked(metrics) == [] and leaked(daemon.log()) == [] and leaked(stored_bytes(tmp_path)) == []


@pytest.mark.parametrize(
    "url,shown",
    [
        ("https://example.net/x", "https://example.net/x"),
        ("https://alice:pw@example.net/x", "https://REDACTED@example.net/x"),
        ("https://example.net/x?go-get=1&page=2", "https://example.net/x?go-get=1&page=2"),
        ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&X-Amz-Expires=60",
         "https://b.s3.amazonaws.com/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60"),
        ("https://h/?access_token=a&api_key=b&apikey=c&password=d&sig=e", "https://h/?access_token=REDACTED&api_key=REDACTED&apikey=REDACTED&password=REDACTED&sig=REDACTED"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_in_prose() -> None:
    text = "Redirect response '302 Found' for url 'https://h.example/a?token=x1'\nnext: socks5h://u:p@proxy:1080"
    assert redact_text(text) == "Redirect response '302 Found' for url 'https://h.example/a?token=REDACTED'\nnext: socks5h://REDACTED@proxy:1080"
