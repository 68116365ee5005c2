"""Network namespaces for vantage tests: made with `ip`, always deleted, never routed out.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking) on veth pairs between namespaces
the test makes. Nothing is added to the host's own namespace, so no packet can leave it.
Servers inside a namespace are sockets made there with monitor.netns and served from this
process, so a test needs no `ip netns exec` children to clean up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.rrset

from monitor import netns

ETC_NETNS = Path("/etc/netns")


def lab_unavailable() -> str | None:
    """None if this process can make namespaces, else why not (for `require`)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (ip)"
    return None


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Lab:
    """Namespaces named <token>-<suffix>; `close` deletes every one it made."""

    token: str = field(default_factory=lambda: "mon" + uuid.uuid4().hex[:8])
    namespaces: list[str] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    _links: int = 0

    def namespace(self, suffix: str) -> str:
        name = f"{self.token}-{suffix}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_address: str, b: str, b_address: str) -> tuple[str, str]:
        """A veth pair between namespaces a and b, with these addresses (CIDR), both up;
        the names of its ends in a and in b."""
        self._links += 1
        end_a, end_b = f"v{self.token[3:]}{self._links}a", f"v{self.token[3:]}{self._links}b"  # <= 15 chars
        ip("link", "add", end_a, "netns", a, "type", "veth", "peer", "name", end_b, "netns", b)
        for ns, end, address in ((a, end_a, a_address), (b, end_b, b_address)):
            ip("-n", ns, "addr", "add", address, "dev", end)
            ip("-n", ns, "link", "set", end, "up")
        return end_a, end_b

    def run_in(self, ns: str, *args: str) -> str:
        """`ip -n NS ARGS…`: configure inside one of the lab's namespaces."""
        return ip("-n", ns, *args)

    def etc(self, ns: str, filename: str, text: str) -> None:
        """/etc/netns/NS/FILENAME, which `ip netns exec` and monitor.netns show as /etc/FILENAME."""
        directory = ETC_NETNS / ns
        directory.mkdir(parents=True, exist_ok=True)
        (directory / filename).write_text(text)

    def listen(self, ns: str, address: str, port: int = 0, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket bound inside `ns` (listening, for TCP; the kernel completes handshakes)."""
        sock = netns.new_socket(ns, socket.AF_INET, type)
        self.sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if type == socket.SOCK_STREAM:
            sock.listen(128)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for name in self.namespaces:
            netns.release(name)  # our threads inside would keep the namespace alive
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)  # gone already: fine
            shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


class NamespaceDns:
    """A DNS server on a UDP socket inside a namespace: A records from `answers`, NOERROR and
    no answer for anything else. Records the names it was asked."""

    def __init__(self, sock: socket.socket, answers: dict[str, str]):
        self.sock = sock
        self.answers = answers
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="netns-dns", daemon=True)

    def __enter__(self) -> NamespaceDns:
        self.sock.settimeout(0.1)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            self.asked.append(name)
            reply = dns.message.make_response(query)
            if question.rdtype == dns.rdatatype.A and name in self.answers:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", self.answers[name]))
            self.sock.sendto(reply.to_wire(), peer)
