"""The censor lab (tests/servers/censor_lab.py): each scenario puts its rules in the censor,
then `monitor probe --once --json` runs inside the clean vantage's namespace (which must say
ok) and inside the censored one's (which must give the scenario's verdict), both writing to
one store, so that the censored vantage's verdict consults the clean one's result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.servers.censor_lab import Lab, censor_lab, lab_unavailable

CONFIG = """\
agent: lab-{vantage}
storage: {{url: "{store}"}}
trust: {{extra_ca_files: ["{ca}"]}}
vantages: [{{name: {vantage}}}]
defaults: {{vantages: [{vantage}], interval: 60s, timeout: 20s}}
analysis: {{confirmations: 1, clean_rounds: 1}}
checks:
  - {{name: site, kind: site, domain: site.lab, control_sni: control.lab, path: /status/200,
     resolvers: [system, "udp://{resolver}"], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: 1s, tls_timeout: 1s, read_timeout: 2s}}
  - {{name: cdn, kind: site, domain: cdn.lab, control_sni: control.lab, path: /status/200,
     resolvers: ["udp://{rotator}", system], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: 1s, tls_timeout: 1s, read_timeout: 2s}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    with censor_lab(tmp_path_factory.mktemp("censor-lab")) as running:
        yield running


def config(lab: Lab, vantage: str) -> Path:
    path = lab.directory / f"{vantage}.yaml"
    if not path.exists():
        path.write_text(CONFIG.format(vantage=vantage, store=lab.store, ca=lab.ca_path, resolver=lab.resolver, rotator=lab.rotator))
    return path


def summary(lab: Lab, vantage: str, check: str = "site") -> dict:
    results = [r for r in lab.probe(vantage, config(lab, vantage)) if r["check"] == check]
    [found] = [r for r in results if r["kind"] == "site"]
    return found


def verdict(s: dict) -> str:
    return s["verdict"]["name"]


def string_reset(text: str, port: int = 443) -> list[str]:
    return ["-A", "FORWARD", "-p", "tcp", "--dport", str(port), "-m", "string", "--algo", "bm", "--string", text,
            "-j", "REJECT", "--reject-with", "tcp-reset"]


def scenarios(lab: Lab) -> dict[str, tuple[list[list[str]], tuple[str, str] | None]]:
    site = lab.sites[0]
    return {
        "sni_rst": ([string_reset("site.lab")], None),
        "ip_drop": ([["-A", "FORWARD", "-d", site, "-j", "DROP"]], None),
        "syn_rst": ([["-A", "FORWARD", "-d", site, "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"]], None),
        "dns_injection": ([], ("site.lab", lab.nowhere)),
        "dns_hijack": ([["-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", f"{lab.liar}:53"]], None),
        "dot_blocked": ([["-A", "FORWARD", "-p", "tcp", "--dport", "853", "-j", "DROP"]], None),
        "doh_sni": ([string_reset("doh.lab")], None),
        "mitm": ([["-t", "nat", "-A", "PREROUTING", "-d", site, "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", f"{lab.interceptor}:443"]], None),
        "hijack_and_sni": ([["-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", f"{lab.liar}:53"],
                            string_reset("site.lab")], None),
        "random_drop": ([["-A", "FORWARD", "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP"]], None),
    }


EXPECTED = {
    "sni_rst": "sni_blocking",
    "ip_drop": "ip_blocking",
    "syn_rst": "rst_injection",
    "dns_injection": "dns_poisoning",
    "dns_hijack": "dns_poisoning",
    "dot_blocked": "encrypted_dns_blocked",
    "doh_sni": "encrypted_dns_blocked",
    "mitm": "tls_mitm",
    "hijack_and_sni": "dns_poisoning",
    "random_drop": "degraded",
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_scenario_is_classified_from_the_censored_vantage_only(lab, name):
    rules, injector = scenarios(lab)[name]
    with lab.scenario(*rules, injector=injector):
        clean = summary(lab, "clean")
        assert verdict(clean) == "ok", clean["verdict"]
        censored = summary(lab, "censored")
    assert verdict(censored) == EXPECTED[name], (censored["verdict"], censored["facts"].get("failure_share"))
    if EXPECTED[name] not in ("degraded", "dns_poisoning", "encrypted_dns_blocked"):
        # The other vantage's result is what tells censorship from a dead server.
        assert censored["facts"]["compared_with"] == ["clean@lab-clean"]
    if name == "sni_rst":
        assert censored["facts"]["subtype"] == "rst"
    if name == "mitm":
        assert any("local intercepting proxy" in line for line in censored["verdict"]["evidence"])
    if name == "hijack_and_sni":
        assert {f["verdict"] for f in censored["facts"]["findings"]} >= {"dns_poisoning", "sni_blocking"}


def test_without_censorship_both_vantages_are_ok(lab):
    assert verdict(summary(lab, "clean")) == "ok"
    assert verdict(summary(lab, "censored")) == "ok"


def test_cdn_like_rotating_answers_stay_ok_over_many_rounds(lab):
    """The plain resolver answers one address of three at random, the references all three."""
    seen = set()
    for _ in range(4):
        for vantage in ("clean", "censored"):
            s = summary(lab, vantage, "cdn")
            assert verdict(s) == "ok", s["verdict"]
            seen.update(s["facts"]["proven_ips"])
    assert seen == set(lab.sites)
