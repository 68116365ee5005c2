"""Runs `monitor run` as a real subprocess on a temp config, for daemon and scrape tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DaemonProcess:
    config_path: Path
    port: int
    proc: subprocess.Popen
    stderr_path: Path
    _stderr: object = field(repr=False, default=None)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path: str) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def wait_for_metric(self, needle: str, timeout: float = 15.0) -> str:
        """Poll /metrics until a line containing `needle` appears (bounded)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                text = self.metrics()
            except OSError:
                text = ""
            if needle in text:
                return text
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log()}"
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} not in /metrics after {timeout}s:\n{text}\n--- log ---\n{self.log()}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def start_daemon(
    config_text: str, tmp_path: Path, *, port: int | None = None, log_level: str = "debug", log_format: str = "text",
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """Write the config (with `{port}` substituted) and start the daemon; wait for /healthz.
    The global options go after the command, as an operator may type them."""
    port = port or free_port()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config_text.replace("{port}", str(port)))
    stderr_path = tmp_path / "daemon.log"
    err = open(stderr_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "-c", str(config_path), "--log-level", log_level, "--log-format", log_format],
        stdout=subprocess.DEVNULL,
        stderr=err,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    daemon = DaemonProcess(config_path, port, proc, stderr_path, err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{daemon.log()}")
        try:
            if daemon.get("/healthz", timeout=1)[0] == 200:
                return daemon
        except OSError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise AssertionError(f"daemon did not serve /healthz in 20s:\n{daemon.log()}")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric `name` in an exposition, keyed by its sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """The first sample of `name` whose labels include `labels`, or None."""
    for key, v in samples(text, name).items():
        if all(dict(key).get(k) == want for k, want in labels.items()):
            return v
    return None
