"""`monitor doctor` in the censor lab (tests/servers/censor_lab.py), run as a user would:
`ip netns exec <censored> python -m monitor doctor example.com/mod@v1.0.0` with the Go
environment (GOPROXY, GOSUMDB, GOPRIVATE, HTTPS_PROXY) and the lab CA (SSL_CERT_FILE) in its
environment, no config file. Each scenario puts its rules in the censor; doctor must name
the failing hop, the verdict and a GOPROXY list that works from there — and, where the go
command is installed, the real `go mod download` must agree with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.servers.censor_lab import Lab, censor_lab, lab_unavailable

pytestmark = pytest.mark.timeout(600)

GOPROXY = "https://proxy.lab,https://proxy2.lab,direct"
GO = shutil.which("go")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    with censor_lab(tmp_path_factory.mktemp("doctor-lab")) as running:
        yield running


def go_env(lab: Lab, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user in a lab vantage: the Go settings, the lab CA, a fresh HOME."""
    assert lab.module is not None
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "SSL_CERT_FILE": str(lab.ca_path),
        "GOPROXY": GOPROXY, "GOSUMDB": f"{lab.module.vkey} https://sum.lab", "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GOPATH": str(home / "go"), "GOMODCACHE": str(home / "modcache"), "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local",
    }
    (home / ".gitconfig").touch()
    return {**env, **extra}


def doctor(lab: Lab, home: Path, *args: str, netns: str | None = None, env: dict[str, str] | None = None,
           json_out: bool = True) -> tuple[int, dict | str, str]:
    """Run doctor from the censored vantage; (exit code, JSON or text, stderr)."""
    argv = [
        "ip", "netns", "exec", netns or lab.censored, sys.executable, "-m", "monitor", "doctor", *args,
        "--reference", f"tls://{lab.resolver}#dot.lab", "--reference", f"https://{lab.resolver}/dns-query",
        "--control-sni", "control.lab", "--try-proxy", "none", "--timeout", "6", *(["--json"] if json_out else []),
    ]
    done = subprocess.run(argv, cwd=Path(__file__).resolve().parents[1], env=env or go_env(lab, home), capture_output=True, text=True, timeout=180)
    if done.returncode in (1, 2):
        raise AssertionError(f"doctor failed ({done.returncode}): {done.stderr}")
    return done.returncode, json.loads(done.stdout) if json_out else done.stdout, done.stderr


def failed_hop(report: dict, module: int = 0) -> dict:
    m = report["modules"][module]
    assert m["failed_hop"] is not None, m
    return m["hops"][m["failed_hop"]]


def fix(report: dict, kind: str) -> dict:
    found = [f for f in report["fixes"] if f["kind"] == kind]
    assert found, report["fixes"]
    return found[0]


def string_reset(text: str, port: int = 443) -> list[str]:
    return ["-A", "FORWARD", "-p", "tcp", "--dport", str(port), "-m", "string", "--algo", "bm", "--string", text,
            "-j", "REJECT", "--reject-with", "tcp-reset"]


def dnat(lab: Lab, to: str) -> list[str]:
    return ["-t", "nat", "-A", "PREROUTING", "-d", lab.module_proxy, "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", f"{to}:443"]


def go_mod_download(lab: Lab, home: Path, goproxy: str) -> subprocess.CompletedProcess[str]:
    """The real go command, from the censored vantage, with this GOPROXY and a fresh cache."""
    assert lab.module is not None
    env = go_env(lab, home, GOPROXY=goproxy, GOMODCACHE=str(home / f"modcache-{abs(hash(goproxy))}"))
    return subprocess.run(["ip", "netns", "exec", lab.censored, GO or "go", "mod", "download", "-json", f"{lab.module.path}@{lab.module.version}"],
                          cwd=home, env=env, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------


def test_healthy_path_says_so(lab, tmp_path):
    code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0")
    assert code == 0 and report["healthy"], report["modules"]
    [m] = report["modules"]
    assert m["ok"] and m["failed_hop"] is None and m["version"] == "v1.0.0"
    assert [h["status"] for h in m["hops"] if h["reached"]] == ["ok", "ok"]  # proxy.lab, then sum.lab
    assert report["fixes"] == [] and report["refused"] == []
    assert {h["host"]: h["verdict"]["name"] for h in report["hosts"]} == {
        "proxy.lab": "ok", "proxy2.lab": "ok", "sum.lab": "ok", "example.com": "ok", "git.lab": "ok"}


def test_sni_reset_on_one_proxy_names_the_hop_and_a_working_list(lab, tmp_path):
    with lab.scenario(string_reset("proxy.lab")):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0")
        if GO:  # the go command agrees: it fails with this GOPROXY and works with doctor's
            assert go_mod_download(lab, tmp_path, GOPROXY).returncode != 0
            recommended = fix(report, "goproxy")["command"].removeprefix("export GOPROXY=")
            done = go_mod_download(lab, tmp_path, recommended)
            assert done.returncode == 0, done.stdout + done.stderr
    assert code == 3, report["modules"]
    hop = failed_hop(report)
    assert (hop["role"], hop["target"], hop["failure"]["class"], hop["failure"]["operation"]) == (
        "goproxy", "https://proxy.lab", "connection_reset", "tls_handshake")
    assert hop["verdict"]["name"] == "sni_blocking", hop["verdict"]
    goproxy = fix(report, "goproxy")
    assert goproxy["command"] == "export GOPROXY=https://proxy2.lab,direct" and goproxy["verified"] is True


def test_pipe_falls_through_a_blocked_proxy_works_but_says_so(lab, tmp_path):
    env = go_env(lab, tmp_path, GOPROXY="https://proxy.lab|https://proxy2.lab,direct")
    with lab.scenario(string_reset("proxy.lab")):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", env=env)
    assert code == 5
    [m] = report["modules"]
    assert m["ok"] and [(h["target"], h["status"], h["reached"]) for h in m["hops"][:2]] == [
        ("https://proxy.lab", "failed", True), ("https://proxy2.lab", "ok", True)]
    assert m["hops"][0]["verdict"]["name"] == "sni_blocking"
    assert fix(report, "goproxy")["command"] == "export GOPROXY=https://proxy2.lab,direct"


def test_dns_poisoning_of_one_proxy(lab, tmp_path):
    # The forged answer races the real one; the censor also drops the real one, so the race is
    # always won (as for names whose real answers a censor blocks outright).
    real_answer = ["-A", "FORWARD", "-p", "udp", "--dport", "53", "-m", "string", "--algo", "bm", "--hex-string", "|05|proxy|03|lab|00|", "-j", "DROP"]
    with lab.scenario(real_answer, injector=("proxy.lab", lab.nowhere)):
        code, report, err = doctor(lab, tmp_path, "example.com/mod@v1.0.0")
    assert code == 3, (err, report["modules"], report["hosts"])
    hop = failed_hop(report)
    assert hop["target"] == "https://proxy.lab" and hop["verdict"]["name"] == "dns_poisoning", hop
    assert fix(report, "goproxy")["command"] == "export GOPROXY=https://proxy2.lab,direct"
    assert "DNSOverTLS=yes" in fix(report, "dns")["command"]


def test_mitm_with_an_untrusted_root(lab, tmp_path):
    with lab.scenario(dnat(lab, lab.interceptor)):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0")
    assert code == 3
    hop = failed_hop(report)
    assert (hop["target"], hop["failure"]["class"], hop["verdict"]["name"]) == ("https://proxy.lab", "ssl_unknown_authority", "tls_mitm"), hop
    assert "interceptor CA" in fix(report, "trust")["why"]
    assert fix(report, "goproxy")["command"] == "export GOPROXY=https://proxy2.lab,direct"


def test_tampered_zip_is_named_and_gosumdb_off_refused(lab, tmp_path):
    assert lab.module is not None
    with lab.scenario(dnat(lab, lab.tamperer)):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0")
    assert code == 3
    hop = failed_hop(report)
    assert (hop["target"], hop["failure"]["class"], hop["verdict"]["name"]) == ("https://proxy.lab", "checksum_mismatch", "module_tampered"), hop
    assert any(lab.module.tampered_h1 in line for line in hop["verdict"]["evidence"])
    assert fix(report, "goproxy")["command"] == "export GOPROXY=https://proxy2.lab,direct"
    [refused] = report["refused"]
    assert refused["setting"] == "GOSUMDB=off" and "tampering" in refused["why"]
    assert not any("GOSUMDB=off" in f["command"] for f in report["fixes"])


def test_ssh_port_blocked_moves_git_to_https(lab, tmp_path):
    env = go_env(lab, tmp_path, GOPRIVATE="example.com")
    Path(env["GIT_CONFIG_GLOBAL"]).write_text('[url "git@git.lab:"]\n\tinsteadOf = https://git.lab/\n')
    with lab.scenario(["-A", "FORWARD", "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", env=env)
    assert code == 3
    [m] = report["modules"]
    assert m["private"] and [h["role"] for h in m["hops"]] == ["discovery", "git_ssh"]
    hop = failed_hop(report)
    assert (hop["target"], hop["failure"]["class"], hop["failure"]["operation"]) == ("git@git.lab:repo.git", "connection_refused", "connect")
    assert hop["verdict"]["name"] == "rst_injection", hop["verdict"]
    assert fix(report, "git")["command"] == "git config --global --unset-all 'url.git@git.lab:.insteadof'"


def test_private_module_gets_goprivate(lab, tmp_path):
    code, report, _ = doctor(lab, tmp_path, "example.com/private@v1.0.0")
    assert code == 3
    [m] = report["modules"]
    assert [(h["role"], h["status"]) for h in m["hops"]] == [
        ("goproxy", "not_found"), ("goproxy", "not_found"), ("discovery", "ok"), ("git_https", "ok"), ("sumdb", "failed")]
    assert failed_hop(report)["role"] == "sumdb"
    assert fix(report, "goprivate")["command"] == "export GOPRIVATE=example.com/private"


def test_proxy_that_is_down_is_server_down_against_the_clean_vantage(lab, tmp_path):
    env = go_env(lab, tmp_path, GOPROXY="https://down.lab,https://proxy2.lab,direct")
    code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", "--vantage", "local", "--vantage", f"netns:{lab.clean}", env=env)
    assert code == 3 and report["compared_with"] == [lab.clean]
    hop = failed_hop(report)
    assert (hop["target"], hop["failure"]["class"], hop["verdict"]["name"]) == ("https://down.lab", "connection_refused", "server_down"), hop
    assert fix(report, "goproxy")["command"] == "export GOPROXY=https://proxy2.lab,direct"


def test_https_proxy_that_is_down_is_proxy_failure(lab, tmp_path):
    env = go_env(lab, tmp_path, HTTPS_PROXY=f"http://{lab.down}:3128")
    code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", env=env)
    assert code == 4
    hop = failed_hop(report)
    assert (hop["role"], hop["verdict"]["name"]) == ("env_proxy", "proxy_failure"), hop
    assert fix(report, "env_proxy")["command"].startswith("unset HTTPS_PROXY")


def test_acceptance_text_names_hop_mechanism_and_list_without_a_config(lab, tmp_path):
    with lab.scenario(string_reset("proxy.lab")):
        code, text, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", json_out=False)
    assert code == 3
    assert "FAILS at goproxy https://proxy.lab: connection_reset during tls_handshake (sni_blocking)" in text, text
    assert "export GOPROXY=https://proxy2.lab,direct" in text, text


@pytest.mark.parametrize("scenario,check,verdict", [
    ("sni_rst", "host-proxy.lab", "sni_blocking"),
    ("tampered_zip", "module-proxy.lab", "module_tampered"),
])
def test_emitted_config_passes_check_config_and_reproduces_the_verdict(lab, tmp_path, scenario, check, verdict):
    rules = {"sni_rst": [string_reset("proxy.lab")], "tampered_zip": [dnat(lab, lab.tamperer)]}[scenario]
    emitted = tmp_path / "watch.yaml"
    with lab.scenario(*rules):
        code, report, _ = doctor(lab, tmp_path, "example.com/mod@v1.0.0", "--emit-config", str(emitted))
        assert code == 3 and failed_hop(report)["verdict"]["name"] == verdict
        checked = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(emitted)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr + emitted.read_text()
        done = subprocess.run(["ip", "netns", "exec", lab.censored, sys.executable, "-m", "monitor", "--log-level", "warning",
                               "probe", "-c", str(emitted), "--once", "--json", "--check", check],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    summary = results[-1]
    assert summary["check"] == check and summary["verdict"]["name"] == verdict, summary.get("verdict")
