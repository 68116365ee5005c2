"""A real Prometheus scrapes a running daemon; promtool lints the exposition."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path


from tests.conftest import require
from tests.daemon_harness import free_port, start_daemon

CONFIG = """
agent: scrape-agent
storage: {{url: "sqlite:///{db}"}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
defaults: {{interval: 1s, timeout: 500ms}}
checks:
  - {{name: up, kind: tcp, target: "127.0.0.1:{up}"}}
"""


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.load(resp)["data"]["result"]


def test_prometheus_scrapes_probe_success(tmp_path: Path, listener: int) -> None:
    require(shutil.which("prometheus") and shutil.which("promtool"), "prometheus and promtool (Debian package prometheus) not installed")
    d = start_daemon(CONFIG.format(db=tmp_path / "m.db", up=listener), tmp_path, log_level="info")
    prom_port = free_port()
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: monitor\n    static_configs: [{{targets: ['127.0.0.1:{d.port}']}}]\n"
    )
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),
    )
    try:
        text = d.wait_for_metric('probe_success{check="up"')
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr

        deadline = time.monotonic() + 30
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            try:
                result = _query(prom_port, 'probe_success{check="up",vantage="local"}')
            except OSError:
                pass
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert result[0]["metric"]["kind"] == "tcp" and result[0]["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(10)
        assert d.stop() == 0
