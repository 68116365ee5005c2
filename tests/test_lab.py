"""The censor lab (tests/servers/censor_lab.py): each scenario puts its rules in the censor,
then `monitor probe --once --json` runs inside the clean vantage's namespace (which must say
ok) and inside the censored one's (which must give the scenario's verdict), both writing to
one store, so that the censored vantage's verdict consults the clean one's result. The
site scenarios run the `site` check, the module scenarios the `goproxy` check."""

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
  # The site check with more attempts, for a lossy path: its verdict is a share of failed
  # observations, and five attempts sample it well enough to keep it off the threshold.
  - {{name: lossy, kind: site, domain: site.lab, control_sni: control.lab, path: /status/200, attempts: 5,
     resolvers: [system, "udp://{resolver}"], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: 1s, tls_timeout: 1s, read_timeout: 2s}}
  - {{name: module, kind: goproxy, proxy: "https://proxy.lab", module: {module.path}, version: {module.version},
     sumdb: sum.lab, sumdb_key: "{module.vkey}", sumdb_url: "https://sum.lab",
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
        path.write_text(CONFIG.format(vantage=vantage, store=lab.store, ca=lab.ca_path, resolver=lab.resolver, rotator=lab.rotator,
                                      module=lab.module))
    return path


def summary(lab: Lab, vantage: str, check: str = "site") -> dict:
    [found] = [r for r in lab.probe(vantage, config(lab, vantage), check) if r["kind"] == "site"]
    return found


def module_result(lab: Lab, vantage: str) -> dict:
    [found] = lab.probe(vantage, config(lab, vantage), "module")
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


# The check a scenario runs, if not `site`.
CHECK = {"random_drop": "lossy"}

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
        clean = summary(lab, "clean", CHECK.get(name, "site"))
        assert verdict(clean) == "ok", clean["verdict"]
        censored = summary(lab, "censored", CHECK.get(name, "site"))
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


# The connection to the module proxy is reset once it has carried this many bytes back: past
# the TLS handshake and the .info and .mod answers (a few KB), long before the end of the zip
# (PAYLOAD_BYTES of random data).
ZIP_CUT = 64 << 10


def module_scenarios(lab: Lab) -> dict[str, list[list[str]]]:
    to_proxy = ["-d", lab.module_proxy, "-p", "tcp", "--dport", "443"]
    return {
        # The proxy's address leads to a proxy that serves the module with one file changed.
        "tampered_zip": [["-t", "nat", "-A", "PREROUTING", *to_proxy, "-j", "DNAT", "--to-destination", f"{lab.tamperer}:443"]],
        # connbytes counts what the proxy sent on the connection; once past the cut, the
        # client's next packet (an ACK of the zip) is answered by a RST in the proxy's name.
        "zip_reset": [["-A", "FORWARD", *to_proxy, "-m", "connbytes", "--connbytes", f"{ZIP_CUT}:", "--connbytes-dir", "reply",
                       "--connbytes-mode", "bytes", "-j", "REJECT", "--reject-with", "tcp-reset"]],
    }


MODULE_EXPECTED = {
    "tampered_zip": ("checksum_mismatch", "verify", "module_tampered"),
    "zip_reset": ("connection_reset", "read", "rst_injection"),
}


@pytest.mark.parametrize("name", list(MODULE_EXPECTED))
def test_module_scenario_is_classified_from_the_censored_vantage_only(lab, name):
    module = lab.module
    assert module is not None
    with lab.scenario(*module_scenarios(lab)[name]):
        clean = module_result(lab, "clean")
        assert clean["ok"] and verdict(clean) == "ok", (clean["failure"], clean["verdict"])
        assert clean["facts"]["h1"] == module.h1
        censored = module_result(lab, "censored")
    failure = censored["failure"] or {}
    assert (failure.get("class"), failure.get("operation"), verdict(censored)) == MODULE_EXPECTED[name], (failure, censored["verdict"])
    assert censored["facts"]["compared_with"] == ["clean@lab-clean"]
    if name == "tampered_zip":
        # Both hashes: what the proxy's zip hashes to, and what the checksum database says.
        evidence = censored["verdict"]["evidence"]
        assert "zip from https://proxy.lab hashes to " + module.tampered_h1 in evidence, evidence
        assert any(line.startswith("zip in sum.lab record ") and line.endswith(" is " + module.h1) for line in evidence), evidence
        assert censored["facts"]["h1"] == module.tampered_h1 and censored["facts"]["sumdb"]["verified"] is True
    if name == "zip_reset":
        # Mid-transfer: the zip's answer began (status 200, some of its bytes), then the reset.
        [zip_request] = [r for r in censored["facts"]["requests"] if r["what"] == "zip"]
        assert zip_request["status"] == 200 and 0 < zip_request["bytes"] < module.zip_bytes, zip_request
        assert censored["verdict"]["evidence"][0] == "reset mid-transfer", censored["verdict"]
        assert any("clean fetched it" in line for line in censored["verdict"]["evidence"]), censored["verdict"]


def test_without_censorship_both_vantages_are_ok(lab):
    for vantage in ("clean", "censored"):
        results = lab.probe(vantage, config(lab, vantage), "site", "module")
        assert {r["check"]: verdict(r) for r in results if r["kind"] in ("site", "goproxy")} == {"site": "ok", "module": "ok"}


def test_cdn_like_rotating_answers_stay_ok_over_many_rounds(lab):
    """The plain resolver answers one address of three at random, the references all three."""
    seen = set()
    for _ in range(4):
        for vantage in ("clean", "censored"):
            s = summary(lab, vantage, "cdn")
            assert verdict(s) == "ok", s["verdict"]
            seen.update(s["facts"]["proven_ips"])
    assert seen == set(lab.sites)
