"""Config loading: every invalid file names its file, line and key with an exact message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, HttpCheck, TcpCheck, load_config, load_config_text, parse_duration

HERE = Path(__file__).parent
INVALID = sorted((HERE / "configs" / "invalid").glob("*.yaml"))
REPO = HERE.parent


def _expected(path: Path) -> list[str]:
    lines = [m.group(1) for m in re.finditer(r"^# expect: (.*)$", path.read_text(), re.M)]
    return [f"{path}:{line}" for line in lines]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_reports_file_line_key(path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == _expected(path)


def test_every_rule_has_an_invalid_file() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID[:3], ids=[p.stem for p in INVALID[:3]])
def test_check_config_cli_exits_2_with_problems_on_stderr(path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == _expected(path)


def test_example_config_is_valid() -> None:
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(REPO / "config.example.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    # Named without a line number: there is no line to point at.
    assert err.value.problems == [f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"]


def test_defaults_merge_into_checks_and_checks_override() -> None:
    cfg = load_config_text(
        """
defaults: {interval: 2m, timeout: 3s, vantages: [local, b]}
vantages: [{name: local}, {name: b, bind: 127.0.0.2}]
checks:
  - {name: a, kind: tcp, target: "127.0.0.1:80"}
  - {name: h, kind: http, url: "https://example.com/", timeout: 500ms, interval: 1m, vantages: [b]}
"""
    )
    a, h = cfg.checks
    assert isinstance(a, TcpCheck) and (a.interval, a.timeout, a.vantages) == (120.0, 3.0, ["local", "b"])
    assert isinstance(h, HttpCheck) and (h.interval, h.timeout, h.vantages) == (60.0, 0.5, ["b"])
    assert h.phase_timeout("connect") == 0.5


def test_empty_mapping_gives_defaults() -> None:
    # An empty *file* is refused (tests/configs/invalid/empty_file.yaml); `{}` asks for defaults.
    cfg = load_config_text("{}")
    assert [v.name for v in cfg.vantages] == ["local"] and cfg.checks == []
    assert cfg.storage.url == "sqlite:///monitor.db"


@pytest.mark.parametrize(
    "text,seconds",
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), (15, 15), ("1.5s", 1.5)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "-1s", "0s", "1x", "s", "5m 3s", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
