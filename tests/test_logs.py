"""What a running daemon writes to its log: one line per event, no library chatter at the
default level, JSON objects with --log-format json. Real daemons (tests/daemon_harness.py)
probing real loopback servers."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

from monitor.logs import context, one_line, setup_logging
from tests.daemon_harness import start_daemon
from tests.servers.http import HttpServer
from tests.servers.tcp import closed_port

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


def wait_for(condition, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


async def test_default_level_start_logs_no_library_info(tmp_path: Path, listener: int) -> None:
    async with HttpServer() as server:
        config = (
            'storage: {url: "sqlite:///store.db", flush_interval: 200ms}\n'
            'exporter: {listen: "127.0.0.1:{port}"}\n'
            "defaults: {interval: 1s, timeout: 800ms}\n"
            "checks:\n"
            f'  - {{name: web, kind: http, url: "{server.url("/status/200")}"}}\n'
            f'  - {{name: port, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
        )
        daemon = await asyncio.to_thread(start_daemon, config, tmp_path, log_level="info")
        try:
            await asyncio.to_thread(daemon.wait_for_metric, 'probe_success{check="web"')
            await asyncio.sleep(2.5)  # a few rounds of requests, each of which httpx would log
        finally:
            assert await asyncio.to_thread(daemon.stop) == 0
    lines = daemon.log().splitlines()
    assert len(server.requests) >= 2  # httpx did make requests
    assert any("store schema migrated" in line for line in lines), lines  # our own line for the migration
    foreign = [line for line in lines if " INFO " in line and not re.search(r" INFO monitor[\w.]*: ", line)]
    assert foreign == [], foreign  # no alembic plugins, no httpx per-request, no apscheduler


def test_a_store_outage_is_one_line_per_event(tmp_path: Path, listener: int) -> None:
    dead = f"postgresql+psycopg://monitor@127.0.0.1:{closed_port()}/monitor"
    config = (
        f'storage: {{url: "{dead}", flush_interval: 200ms}}\n'
        'exporter: {listen: "127.0.0.1:{port}"}\n'
        "defaults: {interval: 1s, timeout: 800ms}\n"
        f'checks:\n  - {{name: port, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    daemon = start_daemon(config, tmp_path, log_level="info")
    try:
        wait_for(lambda: "results failed" in daemon.log(), within=20)
    finally:
        assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert any("store unreachable" in line and "Connection refused" in line for line in lines), lines
    assert any(re.search(r"storing \d+ results failed \(connection failed: .* Connection refused Is the server running", line) for line in lines), lines
    assert [line for line in lines if not LINE.match(line)] == []  # psycopg's second line is folded in
    assert not any("Background on this error" in line for line in lines)


def test_json_lines_carry_agent_check_and_vantage(tmp_path: Path, listener: int) -> None:
    config = (
        "agent: json-agent\n"
        'storage: {url: "sqlite:///store.db", flush_interval: 200ms}\n'
        'exporter: {listen: "127.0.0.1:{port}"}\n'
        "defaults: {interval: 1s, timeout: 800ms}\n"
        f'checks:\n  - {{name: port, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    daemon = start_daemon(config, tmp_path, log_level="debug", log_format="json")
    try:
        wait_for(lambda: "result id=" in daemon.log(), within=20)
    finally:
        assert daemon.stop() == 0
    objects = [json.loads(line) for line in daemon.log().splitlines()]  # every line is one object
    assert objects and all({"time", "level", "logger", "message"} <= o.keys() for o in objects)
    assert all(o.get("agent") == "json-agent" for o in objects if o["logger"].startswith("monitor.daemon"))
    result = next(o for o in objects if o["message"].startswith("result id="))
    assert (result["check"], result["vantage"], result["agent"]) == ("port", "local", "json-agent")


def test_formatter_folds_lines_redacts_and_adds_context(capsys) -> None:
    setup_logging("info", "text")
    try:
        with context(check="c1", vantage="v1"):
            logging.getLogger("monitor.test").warning("first\n\tsecond: GET https://u:pw@h.example/x?token=abc&page=2")
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        assert err.endswith("first second: GET https://REDACTED@h.example/x?token=REDACTED&page=2 check=c1 vantage=v1")
        assert one_line("a\r\n  b\n") == "a b"
    finally:
        setup_logging("warning", "text")


def test_libraries_are_quiet_below_debug_and_heard_at_debug(capsys) -> None:
    try:
        setup_logging("info", "text")
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:1/")
        logging.getLogger("alembic.runtime.plugins").info("setup plugin")
        assert capsys.readouterr().err == ""
        setup_logging("debug", "text")
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:1/?sig=zzz")
        assert "HTTP Request: GET http://127.0.0.1:1/?sig=REDACTED" in capsys.readouterr().err
    finally:
        setup_logging("warning", "text")

