"""A real Alertmanager (Debian prometheus-alertmanager) on loopback, with a throwaway config
and storage, clustering off; it can be stopped and started again on the same port (an outage)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.daemon_harness import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")


def receiver_config(webhook_url: str, *, group_by: str = "[alertname, check, target]") -> str:
    """A routing tree that sends everything to one webhook at once, and repeats only hourly."""
    return f"""
route:
  receiver: recorder
  group_by: {group_by}
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: recorder
    webhook_configs: [{{url: "{webhook_url}", send_resolved: true}}]
"""


class Alertmanager:
    def __init__(self, directory: Path, config: str):
        assert ALERTMANAGER is not None, "prometheus-alertmanager is not installed"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "alertmanager.yml").write_text(config)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        log = open(self.directory / "alertmanager.log", "ab")
        self.process = subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={self.directory / 'alertmanager.yml'}", f"--storage.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"alertmanager not ready in 20 s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.directory / "alertmanager.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts it holds that have not resolved."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts" + (f"?{query}" if query else ""), timeout=5) as response:
            return json.load(response)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
