"""Debian's own proxies, started by a test with a throwaway config on loopback: tinyproxy
(HTTP CONNECT and forward) and dante-server (SOCKS5). Each writes its log to the test's
directory: what the proxy itself says it carried is the evidence that a probe went through it.

Each runs in the foreground in its own process group (dante forks helpers), which stop()
ends by its id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

from tests.servers.tcp import closed_port

_START_WAIT = 5.0  # s for a proxy to listen
_STOP_WAIT = 5.0


class DebianProxy:
    def __init__(self, argv: list[str], log: Path, port: int, scheme: str):
        self._argv = argv
        self.log_path = log
        self.port = port
        self.scheme = scheme
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> DebianProxy:
        output = open(self.log_path.with_suffix(".out"), "wb")  # noqa: SIM115 — kept for the process's life
        self._process = subprocess.Popen(self._argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        output.close()
        deadline = time.monotonic() + _START_WAIT
        while time.monotonic() < deadline:  # bounded by _START_WAIT
            if self._process.poll() is not None:
                raise RuntimeError(f"{self._argv[0]} exited with {self._process.returncode}: {self.log_path.with_suffix('.out').read_text()}{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self._argv[0]} did not listen on port {self.port} within {_START_WAIT}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)  # the group this process leads: it and its helpers
        try:
            self._process.wait(_STOP_WAIT)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(_STOP_WAIT)


def missing(binary: str) -> str | None:
    """Why a test of this proxy cannot run here, or None."""
    if shutil.which(binary) is None:
        return f"{binary} not installed (Debian: {'tinyproxy' if binary == 'tinyproxy' else 'dante-server'})"
    return None


@contextlib.contextmanager
def tinyproxy(directory: Path, *, credentials: tuple[str, str] | None = None) -> Iterator[DebianProxy]:
    port = closed_port()
    log = directory / "tinyproxy.log"
    conf = directory / "tinyproxy.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 10",
        f'LogFile "{log}"',
        "LogLevel Connect",  # one line per request: what it was asked to reach
        "MaxClients 20",
        "Allow 127.0.0.1",
        "DisableViaHeader Yes",
        # No ConnectPort line: CONNECT to any port (the test servers' ports are random).
    ]
    if credentials is not None:
        lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
    conf.write_text("\n".join(lines) + "\n")
    proxy = DebianProxy([shutil.which("tinyproxy") or "tinyproxy", "-d", "-c", str(conf)], log, port, "http").start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _users() -> str:
    """As root, dante must be told whom to run as; as anyone else it stays that user."""
    return "user.privileged: root\nuser.unprivileged: nobody" if os.geteuid() == 0 else ""


@contextlib.contextmanager
def dante(directory: Path) -> Iterator[DebianProxy]:
    port = closed_port()
    log = directory / "danted.log"
    conf = directory / "danted.conf"
    conf.write_text(
        f"""
logoutput: {log}
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
{_users()}
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: connect error
}}
socks pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  command: connect
  log: connect error
}}
"""
    )
    argv = [shutil.which("danted") or "danted", "-f", str(conf), "-N", "1", "-p", str(directory / "danted.pid")]
    proxy = DebianProxy(argv, log, port, "socks5h").start()
    try:
        yield proxy
    finally:
        proxy.stop()
