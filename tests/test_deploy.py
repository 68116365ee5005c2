"""The compose stack and every file it mounts are valid for the tools that read them.

No container engine runs here: the compose file is validated by the compose CLI as a parser
(`docker compose config`, or Debian's docker-compose), every bind mount is resolved to the
repository file it mounts, and each of those is checked by its own tool as the container
would read it — promtool (the Prometheus config with its rule files), amtool (Alertmanager),
`monitor check-config` (the agent), and the Grafana provisioning against the boards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from grafana.generate import DEFAULT_RUNBOOKS_URL
from tests.conftest import require
from tests.grafana_queries import load_boards, panels, targets

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def binds(name: str) -> dict[str, Path]:
    """A service's bind mounts: container path -> the repository path it mounts."""
    out = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):  # else a named volume
            out[target] = (DEPLOY / source).resolve()
    return out


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside service `name`'s container comes from in the repository."""
    path = PurePosixPath(container_path)
    for target, source in sorted(binds(name).items(), key=lambda kv: -len(kv[0])):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted into {name}")


def compose_cli() -> list[str] | None:
    """`docker compose` (the v2 plugin) if it is there, else Debian's docker-compose."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def env(name: str) -> dict[str, str]:
    """A service's environment as compose passes it (${VAR:-default} at its default)."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in service(name).get("environment", {}).items()}


# --- the compose file ----------------------------------------------------------------------------


def test_compose_file_is_valid_for_compose() -> None:
    cli = compose_cli()
    require(cli, "no compose CLI (Debian package docker-compose) installed")
    assert cli is not None
    done = subprocess.run([*cli, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, cwd=DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_stack_is_all_there_and_every_mounted_path_exists() -> None:
    services = compose()["services"]
    assert {"agent", "postgres", "prometheus", "alertmanager", "grafana", "runbooks"} <= set(services)
    for name in services:
        for target, source in binds(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            if PurePosixPath(target).suffix in (".yml", ".yaml", ".json"):
                assert source.is_file(), f"{name}: {target} is a file in the container, {source} is not"
    for name in services:
        for dependency in service(name).get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_compose_agent_config_is_valid() -> None:
    config = host_path("agent", service("agent")["command"][-1])
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compose_file_wires_the_agent_to_its_config_and_store() -> None:
    agent = service("agent")
    assert "./agent.yaml:/etc/monitor/config.yaml:ro" in agent["volumes"]
    assert agent["depends_on"]["postgres"]["condition"] == "service_healthy"
    config = yaml.safe_load((DEPLOY / "agent.yaml").read_text())
    pg = env("postgres")
    assert config["storage"]["url"] == f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"


# --- Prometheus and Alertmanager, as mounted -----------------------------------------------------


def _prometheus_config() -> tuple[Path, dict[str, Any]]:
    command = service("prometheus")["command"]
    path = host_path("prometheus", next(a.split("=", 1)[1] for a in command if a.startswith("--config.file=")))
    return path, yaml.safe_load(path.read_text())


def test_compose_prometheus_config_and_its_rules_are_valid(tmp_path: Path) -> None:
    require(shutil.which("promtool"), "promtool (Debian package prometheus) not installed")
    path, config = _prometheus_config()
    # The rule files as the container sees them, found in the repository through the mounts.
    rule_globs = [str(host_path("prometheus", pattern)) for pattern in config["rule_files"]]
    rules = sorted(p for pattern in rule_globs for p in Path(pattern).parent.glob(Path(pattern).name))
    assert rules, f"rule_files {config['rule_files']} match nothing mounted"
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump({**config, "rule_files": rule_globs}))
    done = subprocess.run(["promtool", "check", "config", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(str(rule) in done.stdout for rule in rules), done.stdout
    done = subprocess.run(["promtool", "check", "rules", *map(str, rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_prometheus_scrapes_the_agent_and_alerts_the_alertmanager() -> None:
    _, config = _prometheus_config()
    scraped = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    agent_listen = yaml.safe_load((DEPLOY / "agent.yaml").read_text())["exporter"]["listen"]
    assert f"agent:{agent_listen.rsplit(':', 1)[1]}" in scraped
    # Every scraped agent carries the `agent` label the boards' Agent variable lists.
    assert all("agent" in sc.get("labels", {}) for job in config["scrape_configs"] for sc in job["static_configs"])
    alertmanagers = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert alertmanagers == ["alertmanager:9093"] and "alertmanager" in compose()["services"]


def test_compose_alertmanager_config_is_valid() -> None:
    require(shutil.which("amtool"), "amtool (Debian package prometheus-alertmanager) not installed")
    command = service("alertmanager")["command"]
    path = host_path("alertmanager", next(a.split("=", 1)[1] for a in command if a.startswith("--config.file=")))
    done = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Grafana and its read-only login on the store -------------------------------------------------


def _provisioning(kind: str) -> list[dict[str, Any]]:
    directory = host_path("grafana", f"/etc/grafana/provisioning/{kind}")
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
    assert files, f"no {kind} provisioning file in {directory}"
    return [yaml.safe_load(f.read_text()) for f in files]


def test_grafana_datasources_are_the_ones_the_boards_use() -> None:
    datasources = [d for f in _provisioning("datasources") for d in f["datasources"]]
    provisioned = {(d["type"], d["uid"]) for d in datasources}
    used = set()
    for board in load_boards():
        refs = [p["datasource"] for p in panels(board) if "datasource" in p] + [t.datasource for t in targets(board)]
        refs += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        used |= {(r["type"], r["uid"]) for r in refs}
    assert used and used <= provisioned, f"boards use datasources not provisioned: {used - provisioned}"

    services = compose()["services"]
    grafana_env = env("grafana")
    for d in datasources:
        host, port = re.sub(r"^https?://", "", d["url"]).split(":")
        assert host in services, f"datasource {d['name']} points at {host}, not a compose service"
        # ${VAR} in a provisioning file comes from the grafana service's environment.
        for var in re.findall(r"\$\{([A-Z_]+)\}", yaml.safe_dump(d)):
            assert var in grafana_env, f"datasource {d['name']} needs {var} in the grafana service's environment"
    # $__rate_interval is at least four scrape intervals: Grafana must know the real one.
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["jsonData"]["timeInterval"] == _prometheus_config()[1]["global"]["scrape_interval"]
    store = next(d for d in datasources if d["type"] == "grafana-postgresql-datasource")
    pg = env("postgres")
    assert store["jsonData"]["database"] == pg["POSTGRES_DB"]
    # Grafana logs in as the role postgres/init makes, with the same password.
    assert (grafana_env["GRAFANA_DB_USER"], grafana_env["GRAFANA_DB_PASSWORD"]) == (pg["GRAFANA_DB_USER"], pg["GRAFANA_DB_PASSWORD"])


def test_grafana_loads_the_generated_boards() -> None:
    providers = [p for f in _provisioning("dashboards") for p in f["providers"]]
    assert len(providers) == 1
    directory = host_path("grafana", providers[0]["options"]["path"])
    assert sorted(p.name for p in directory.glob("*.json")) == sorted(f"{b['uid']}.json" for b in load_boards())
    home = host_path("grafana", env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.is_file() and home.parent == directory


def test_postgres_init_makes_grafanas_reader_from_the_mounted_files() -> None:
    init = host_path("postgres", "/docker-entrypoint-initdb.d")
    script = init / "10-grafana-reader.sh"
    assert os.access(script, os.X_OK), f"{script} must be executable (the postgres image runs it, else sources it)"
    for referenced in re.findall(r"/docker-entrypoint-initdb\.d/(\S+)", script.read_text()):
        assert (init / referenced).is_file(), f"{script} runs {referenced}, not in {init}"
    for var in re.findall(r'"\$([A-Z_]+)"', script.read_text()):
        assert var in env("postgres"), f"{script} reads ${var}, not in the postgres service's environment"
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_runbooks_the_boards_link_to_are_served_by_the_stack() -> None:
    runbooks = service("runbooks")
    served = runbooks["command"][runbooks["command"].index("--directory") + 1]
    assert host_path("runbooks", served) == (DEPLOY.parent / "docs" / "runbooks").resolve()
    port = runbooks["command"][runbooks["command"].index("http.server") + 1]
    assert f"127.0.0.1:{port}:{port}" in runbooks["ports"]
    assert DEFAULT_RUNBOOKS_URL == f"http://127.0.0.1:{port}"
