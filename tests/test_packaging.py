"""Installed the way users install it — a wheel in a fresh virtualenv, no checkout beside it —
monitor finds everything it needs at run time through the package (migrations, reference
data, the sample config): no environment variable, no working directory trick."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv holding the wheel built from this checkout.

    The venv sees the system site-packages for monitor's *dependencies* (no download in the
    test), while monitor itself comes from the wheel: the venv's own site-packages are first
    on sys.path, which the test checks."""
    root = tmp_path_factory.mktemp("packaging")
    wheels = root / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("monitor-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env_dir / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_MIGRATIONS_DIR", "PYTHONPATH")}
    return subprocess.run([str(bin_dir / "monitor"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_the_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed / "python"), "-c", "import monitor; print(monitor.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert where.stdout.strip().startswith(str(installed.parent)), where.stdout + where.stderr


def test_version_sample_config_and_check_config(installed: Path, tmp_path: Path) -> None:
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("monitor "), version.stdout + version.stderr
    sample = run(installed, "sample-config", cwd=tmp_path)
    assert sample.returncode == 0 and sample.stdout == (REPO / "config.example.yaml").read_text()
    (tmp_path / "sample.yaml").write_text(sample.stdout)
    checked = run(installed, "check-config", "sample.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_upgrade_then_probe_once_prints_and_stores(installed: Path, tmp_path: Path, listener: int) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "agent: wheel\n"
        'storage: {url: "sqlite:///store.db"}\n'
        "defaults: {interval: 10s, timeout: 2s}\n"
        f'checks:\n  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    upgraded = run(installed, "db", "upgrade", "-c", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "alembic" not in upgraded.stderr  # the library's INFO lines stay out at the default level

    probed = run(installed, "probe", "-c", str(config), "--once", "--json", cwd=tmp_path)
    assert probed.returncode == 0, probed.stderr
    (line,) = probed.stdout.splitlines()
    result = json.loads(line)
    assert (result["check"], result["ok"], result["agent"]) == ("up", True, "wheel")

    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT id, ok FROM results").fetchall() == [(result["id"], 1)]
    shown = run(installed, "results", "-c", str(config), "--json", cwd=tmp_path)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == result["id"], shown.stdout + shown.stderr
