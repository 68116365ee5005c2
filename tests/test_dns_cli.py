"""Acceptance through the command line: `monitor probe --once --json` against a local pair of
real resolvers where one lies, and a racing injector in front of the honest one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.servers.dns_hostile import FORGED_ADDRESSES, TRUE_ADDRESSES, HostileDns
from tests.servers.dns_unbound import UNBOUND, Unbound, run_unbound

NAME = "www.example.test"
FORGED = FORGED_ADDRESSES["A"][0]


@pytest.fixture(scope="module")
def resolvers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Unbound, Unbound]]:
    require(UNBOUND, "unbound is not installed (apt-get install unbound)")
    base = tmp_path_factory.mktemp("cli-dns")
    with run_unbound(base / "honest", [f"{NAME}. 300 IN A {TRUE_ADDRESSES['A'][0]}"]) as honest, \
            run_unbound(base / "liar", [f"{NAME}. 300 IN A {FORGED}"]) as liar:
        yield honest, liar


def probe_once(tmp_path: Path, resolvers: list[str]) -> list[dict]:
    config = tmp_path / "config.yaml"
    config.write_text(
        "checks:\n"
        f"  - {{name: gh-dns, kind: dns, query: {NAME}, timeout: 3s, injection_window: 300ms,\n"
        f"     resolvers: {json.dumps(resolvers)}}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "probe", "-c", str(config), "--once", "--json"],
        capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,  # its store and spool land there
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def comparison(results: list[dict]) -> dict:
    [found] = [r for r in results if r["facts"].get("role") == "comparison"]
    return found


def test_lying_resolver_is_reported_with_the_forged_ip(tmp_path, resolvers):
    honest, liar = resolvers
    c = comparison(probe_once(tmp_path, [honest.udp, liar.udp]))
    assert c["check"] == "gh-dns" and c["kind"] == "dns" and c["target"] == NAME
    assert c["facts"]["consistent"] is False
    assert c["facts"]["forged_ips"] == [FORGED]
    assert {"rule": "forged_ip", "resolvers": [liar.udp], "addresses": [FORGED]}.items() <= c["facts"]["reasons"][0].items()
    assert c["verdict"]["name"] == "dns_poisoning"


def test_racing_injector_is_reported(tmp_path, resolvers):
    honest, _ = resolvers
    with HostileDns("inject", upstream=("127.0.0.1", honest.port)) as injector:
        c = comparison(probe_once(tmp_path, [injector.udp, honest.tcp]))
    rules = {r["rule"]: r for r in c["facts"]["reasons"]}
    assert set(rules) >= {"injection", "forged_ip"}
    assert set(rules["injection"]["addresses"]) == {FORGED, TRUE_ADDRESSES["A"][0]}
