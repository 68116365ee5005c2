"""The SNI-filter lab with the kernel's own tools: a network namespace made for the test,
joined to this one by a veth pair on a 198.18.0.0/15 /30, with a TLS server inside and an
iptables string match on the blocked name -> `REJECT --reject-with tcp-reset` in its INPUT
chain. A ClientHello naming that server is answered with a RST by the kernel; the server
never sees it. Other names, and no name, reach the server.

Needs root, ip and iptables with the xt_string match (checked by `lab_unavailable`).
The namespace and the veth pair are deleted on exit whatever happened.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.servers.certs import CertFiles

REPO = Path(__file__).resolve().parents[2]
_LAB_NET = ipaddress.ip_network("198.18.0.0/15")


@dataclass(frozen=True)
class SniLab:
    netns: str
    server_ip: str
    port: int


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the SNI namespace lab needs root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the SNI namespace lab needs {tool} (Debian: iproute2, iptables)"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def sni_reset_lab(blocked: str, leaf: CertFiles) -> Iterator[SniLab]:
    tag = secrets.token_hex(4)
    netns, outside, inside = f"mon-sni-{tag}", f"vso{tag}", f"vsi{tag}"
    base = _LAB_NET.network_address + 4 * secrets.randbelow(_LAB_NET.num_addresses // 4)  # a random /30
    host_ip, server_ip = str(base + 1), str(base + 2)
    server: subprocess.Popen[str] | None = None
    try:
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", netns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", outside)
        _run("ip", "link", "set", outside, "up")
        _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{server_ip}/30", "dev", inside)
        _run("ip", "netns", "exec", netns, "ip", "link", "set", inside, "up")
        _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        _run(
            "ip", "netns", "exec", netns, "iptables", "-A", "INPUT", "-p", "tcp",
            "-m", "string", "--algo", "bm", "--string", blocked,
            "-j", "REJECT", "--reject-with", "tcp-reset",
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.servers.sni_front",
             "--host", server_ip, "--cert", str(leaf.cert), "--key", str(leaf.key)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline())  # the server prints its port once listening
        yield SniLab(netns, server_ip, port)
    finally:
        if server is not None:
            assert server.stdin is not None
            server.stdin.close()  # the server stops when its stdin closes
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
        # Deleting the namespace destroys the veth end inside it, and with it the pair.
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "delete", outside], capture_output=True, timeout=10)
