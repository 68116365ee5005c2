"""A real unbound on loopback, started with a throwaway config: UDP/TCP, DoT and DoH.

It serves only the records the test gives it: `local-zone: "." static` makes every other
name NXDOMAIN without recursion, so it never sends a packet beyond loopback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.servers.certs import CertFiles

UNBOUND = shutil.which("unbound") or (Path("/usr/sbin/unbound") if Path("/usr/sbin/unbound").exists() else None)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS serves both on one number)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


@dataclass(frozen=True)
class Unbound:
    port: int
    tls_port: int | None
    https_port: int | None

    @property
    def udp(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def tls(self, auth_name: str | None = None) -> str:
        return f"tls://127.0.0.1:{self.tls_port}" + (f"#{auth_name}" if auth_name else "")

    def https(self, host: str = "localhost", path: str = "/dns-query") -> str:
        return f"https://{host}:{self.https_port}{path}"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _config(directory: Path, port: int, records: list[str], tls: CertFiles | None, tls_port: int | None, https_port: int | None) -> str:
    # Also on ::1 where the host has it: "localhost" may resolve there first.
    hosts = ["127.0.0.1", "::1"] if _ipv6_loopback() else ["127.0.0.1"]
    ports = [p for p in (port, tls_port, https_port) if p]
    lines = [
        "server:",
        *(f"  interface: {h}@{p}" for h in hosts for p in ports),
        f"  port: {port}",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{directory}"',
        f'  pidfile: "{directory}/unbound.pid"',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  num-threads: 1",
        "  access-control: 127.0.0.0/8 allow",
        "  access-control: ::1/128 allow",
        '  module-config: "iterator"',
        '  local-zone: "." static',
    ]
    if tls is not None:
        lines += [
            f"  tls-port: {tls_port}",
            f"  https-port: {https_port}",
            '  http-endpoint: "/dns-query"',
            f'  tls-service-key: "{tls.key}"',
            f'  tls-service-pem: "{tls.cert}"',
        ]
    # A record with double quotes in it (TXT) is wrapped in single quotes, as unbound allows.
    lines += [f"  local-data: '{r}'" if '"' in r else f'  local-data: "{r}"' for r in records]
    lines += ["remote-control:", "  control-enable: no", ""]
    return "\n".join(lines)


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    probe = dns.message.make_query("ready.invalid.", "A")
    for _ in range(100):  # up to ~5 s
        if process.poll() is not None:
            raise RuntimeError(f"unbound exited with {process.returncode}: {log.read_text()}")
        try:
            dns.query.udp(probe, "127.0.0.1", port=port, timeout=0.05)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"unbound did not answer on port {port}: {log.read_text()}")


@contextmanager
def run_unbound(directory: Path, records: list[str], tls: CertFiles | None = None) -> Iterator[Unbound]:
    """Start unbound serving `records` (zone-file lines); with `tls`, also DoT and DoH (h2)."""
    if UNBOUND is None:
        raise RuntimeError("unbound is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    # A port free for TCP on 127.0.0.1 when asked may be taken for UDP, on ::1, or by another
    # test process before unbound binds it: pick new ports and try again (a few times).
    for attempt in range(5):
        port = free_port()
        tls_port = free_port() if tls else None
        https_port = free_port() if tls else None
        conf = directory / "unbound.conf"
        conf.write_text(_config(directory, port, records, tls, tls_port, https_port))
        log = directory / "unbound.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(UNBOUND), "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, process, log)
            break
        except RuntimeError:
            _stop(process)
            if attempt == 4 or "address already in use" not in log.read_text():
                raise
    try:
        yield Unbound(port, tls_port, https_port)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
