"""`netns:` vantages: a probe's sockets and lookups are made inside the named namespace.

The namespaces are made by the tests (tests/servers/vantage_lab.py) and always deleted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import TcpCheck, load_config_text
from monitor.model import FailureClass, Operation, ProbeResult
from monitor.probes import _net
from monitor.probes.tcp import probe_tcp
from monitor.vantage import Vantage, vantages_from_config
from tests.conftest import require
from tests.servers.vantage_lab import Lab, NamespaceDns, ip, lab_unavailable


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    made = Lab()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port on the host's loopback that refuses connections (bound, never listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def tcp(target: str, vantage: Vantage) -> ProbeResult:
    check = TcpCheck(name="t", kind="tcp", target=target, interval=10.0, timeout=2.0, vantages=[vantage.name])
    return await probe_tcp(check, vantage, deadline=time.monotonic() + check.timeout)


def outcome(result: ProbeResult) -> tuple[FailureClass, Operation] | None:
    return (result.failure.cls, result.failure.operation) if result.failure else None


async def test_sockets_are_made_inside_the_namespace(lab: Lab, refusing_port: int) -> None:
    ns = lab.namespace("a")
    lab.listen(ns, "127.0.0.1", refusing_port)  # the namespace's own loopback
    inside = await tcp(f"127.0.0.1:{refusing_port}", Vantage(name="lab", netns=ns))
    outside = await tcp(f"127.0.0.1:{refusing_port}", Vantage.local())
    assert inside.ok, inside.failure
    assert outcome(outside) == (FailureClass.CONNECTION_REFUSED, Operation.CONNECT)


async def test_lookups_use_the_namespace_resolver_and_leave_the_host_files_alone(lab: Lab) -> None:
    ns = lab.namespace("a")
    host_resolv_conf = Path("/etc/resolv.conf").read_text()
    lab.etc(ns, "resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    lab.etc(ns, "nsswitch.conf", "hosts: files dns\n")
    lab.etc(ns, "hosts", "127.0.0.1 localhost\n")
    server = NamespaceDns(lab.listen(ns, "127.0.0.1", 53, socket.SOCK_DGRAM), {"target.vantage.test": "198.18.0.7"})
    with server:
        ips, _ = await _net.resolve("target.vantage.test", Vantage(name="lab", netns=ns), 3.0)
    assert ips == ["198.18.0.7"]
    assert "target.vantage.test" in server.asked
    # The bind mounts were the lookup thread's only: the host still reads its own file.
    assert Path("/etc/resolv.conf").read_text() == host_resolv_conf


async def test_a_missing_namespace_is_the_vantage_failure_not_a_bug() -> None:
    vantage = Vantage(name="lab", netns="mon-no-such-namespace")
    by_address = await tcp("198.18.0.1:80", vantage)
    # localhost: should the lookup ever fall back to the host, it would answer, and this fail.
    by_name = await tcp("localhost:80", vantage)
    assert outcome(by_address) == (FailureClass.NETWORK_UNREACHABLE, Operation.CONNECT)
    assert outcome(by_name) == (FailureClass.NETWORK_UNREACHABLE, Operation.RESOLVE)
    assert "'mon-no-such-namespace' unavailable" in by_address.failure.detail
    assert "/run/netns/mon-no-such-namespace does not exist" in by_name.failure.detail


async def test_a_recreated_namespace_is_entered_afresh(lab: Lab, refusing_port: int) -> None:
    ns = lab.namespace("a")  # loopback up: nothing listens, so connects are refused
    vantage = Vantage(name="lab", netns=ns)
    assert outcome(await tcp(f"127.0.0.1:{refusing_port}", vantage)) == (FailureClass.CONNECTION_REFUSED, Operation.CONNECT)
    ip("netns", "del", ns)
    ip("netns", "add", ns)  # a new namespace under the same name; its loopback is down
    again = await tcp(f"127.0.0.1:{refusing_port}", vantage)
    assert outcome(again) == (FailureClass.NETWORK_UNREACHABLE, Operation.CONNECT), again.failure


async def test_a_deleted_namespace_is_let_go(lab: Lab) -> None:
    a, b = lab.namespace("a"), lab.namespace("b")
    _, end_in_b = lab.link(a, "198.18.1.1/30", b, "198.18.1.2/30")
    vantage = Vantage(name="lab", netns=a)
    assert outcome(await tcp("198.18.1.2:9", vantage)) == (FailureClass.CONNECTION_REFUSED, Operation.CONNECT)
    ip("netns", "del", a)
    # Our thread inside keeps namespace a, and so the veth pair, alive...
    assert end_in_b in ip("-n", b, "link", "show")
    gone = await tcp("198.18.1.2:9", vantage)
    assert outcome(gone) == (FailureClass.NETWORK_UNREACHABLE, Operation.CONNECT)
    # ...until the next use finds it deleted and lets go; the kernel then dismantles it.
    for _ in range(100):
        if end_in_b not in ip("-n", b, "link", "show"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{end_in_b} still in {b}: namespace {a} kept alive")


def test_without_cap_sys_admin_the_vantage_fails_as_network_unreachable(lab: Lab, tmp_path: Path) -> None:
    require(shutil.which("setpriv"), "needs setpriv (util-linux) to drop capabilities")
    ns = lab.namespace("a")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"vantages: [{{name: lab, netns: {ns}}}]\n"
        "defaults: {interval: 10s, timeout: 2s, vantages: [lab]}\n"
        "checks:\n"
        "  - {name: by-address, kind: tcp, target: '198.18.0.1:80'}\n"
        "  - {name: by-name, kind: tcp, target: 'localhost:80'}\n"
    )
    # Root without any capability: setns(2) is refused.
    done = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m", "monitor", "probe", "-c", str(config), "--once", "--json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    failures = {r["check"]: r["failure"] for r in map(json.loads, done.stdout.splitlines())}
    assert {check: (f["class"], f["operation"]) for check, f in failures.items()} == {
        "by-address": ("network_unreachable", "connect"),
        "by-name": ("network_unreachable", "resolve"),
    }
    assert all("setns: Operation not permitted" in f["detail"] for f in failures.values()), failures


def test_config_vantages_carry_their_namespace() -> None:
    config = load_config_text("vantages: [{name: lab, netns: mon-lab}, {name: local}]\n")
    vantages = vantages_from_config(config)
    assert (vantages["lab"].netns, vantages["local"].netns) == ("mon-lab", None)
