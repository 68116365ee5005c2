"""The deployment files are valid for the tools that read them (no Docker engine here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import require

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_compose_agent_config_is_valid() -> None:
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(DEPLOY / "agent.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compose_prometheus_config_is_valid() -> None:
    require(shutil.which("promtool"), "promtool (Debian package prometheus) not installed")
    done = subprocess.run(["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_wires_the_agent_to_its_config_and_store() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    agent = compose["services"]["agent"]
    assert "./agent.yaml:/etc/monitor/config.yaml:ro" in agent["volumes"]
    assert agent["depends_on"]["postgres"]["condition"] == "service_healthy"
    config = yaml.safe_load((DEPLOY / "agent.yaml").read_text())
    pg = compose["services"]["postgres"]["environment"]
    assert config["storage"]["url"] == f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
