"""The censor lab (tests/servers/censor_lab.py): each scenario puts its rules in the censor,
then `monitor probe --once --json` runs inside the clean vantage's namespace (which must say
ok) and inside the censored one's (which must give the scenario's verdict), both writing to
one store, so that the censored vantage's verdict consults the clean one's result. The
site scenarios run the `site` check, the module scenarios the `goproxy` check; some run the
tls, http and dns checks as well. The same scenarios in a daemon running for several rounds:
tests/test_lab_daemon.py.

The lab's censor has no residual blocking (but where a scenario emulates it), so the hold-off
is short: scenarios on the same address run one after the other, and a one-off run recalls
the triggers its agent stored (ResidualBlocking.recall) — with the default hold-off the
address would still be held when the next scenario starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.servers.censor_lab import Lab, censor_lab, lab_unavailable, scenarios

CONFIG = """\
agent: lab-{vantage}
storage: {{url: "{store}"}}
trust: {{extra_ca_files: ["{ca}"]}}
vantages: [{{name: {vantage}}}]
defaults: {{vantages: [{vantage}], interval: 60s, timeout: 20s}}
analysis: {{confirmations: 1, clean_rounds: 1}}
checks:
{checks}"""

# The lab's checks, for one-off runs here and for the daemon (tests/test_lab_daemon.py).
CHECKS = """\
  - {{name: site, kind: site, domain: site.lab, control_sni: control.lab, path: /status/200, holdoff: {holdoff},
     resolvers: [system, "udp://{resolver}"], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: {phase}, tls_timeout: {phase}, read_timeout: {read}}}
  - {{name: cdn, kind: site, domain: cdn.lab, control_sni: control.lab, path: /status/200, holdoff: {holdoff},
     resolvers: ["udp://{rotator}", system], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: {phase}, tls_timeout: {phase}, read_timeout: {read}}}
  - {{name: module, kind: goproxy, proxy: "https://proxy.lab", module: {module.path}, version: {module.version},
     sumdb: sum.lab, sumdb_key: "{module.vkey}", sumdb_url: "https://sum.lab",
     connect_timeout: {phase}, tls_timeout: {phase}, read_timeout: {read}}}
  - {{name: tls, kind: tls, target: "site.lab:443", control_sni: control.lab, holdoff: {holdoff},
     connect_timeout: {phase}, tls_timeout: {phase}}}
  - {{name: proxy-https, kind: http, url: "https://proxy.lab/{module.path}/@v/list",
     connect_timeout: {phase}, tls_timeout: {phase}, read_timeout: {read}}}
  - {{name: intranet, kind: dns, query: intranet.lab, resolvers: ["udp://{resolver}", "tls://{resolver}#dot.lab", "https://doh.lab/dns-query"]}}
"""

# The site check with more attempts, for a lossy path: its verdict is a share of failed
# observations, and five attempts sample it well enough to keep it off the threshold.
LOSSY = """\
  - {{name: lossy, kind: site, domain: site.lab, control_sni: control.lab, path: /status/200, attempts: 5, holdoff: {holdoff},
     resolvers: [system, "udp://{resolver}"], references: ["tls://{resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: {phase}, tls_timeout: {phase}, read_timeout: {read}}}
"""


def lab_checks(lab: Lab, *, holdoff: str = "1s", phase: str = "1s", read: str = "2s", lossy: bool = True) -> str:
    text = CHECKS + (LOSSY if lossy else "")
    return text.format(resolver=lab.resolver, rotator=lab.rotator, module=lab.module, holdoff=holdoff, phase=phase, read=read)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    with censor_lab(tmp_path_factory.mktemp("censor-lab")) as running:
        yield running


def config(lab: Lab, vantage: str) -> Path:
    path = lab.directory / f"{vantage}.yaml"
    if not path.exists():
        path.write_text(CONFIG.format(vantage=vantage, store=lab.store, ca=lab.ca_path, checks=lab_checks(lab)))
    return path


def summary(lab: Lab, vantage: str, check: str = "site") -> dict:
    [found] = [r for r in lab.probe(vantage, config(lab, vantage), check) if r["kind"] == "site"]
    return found


def module_result(lab: Lab, vantage: str) -> dict:
    return result(lab, vantage, "module")


def result(lab: Lab, vantage: str, check: str) -> dict:
    """The run's last result: the one result, or a round's summary."""
    return lab.probe(vantage, config(lab, vantage), check)[-1]


def verdict(s: dict) -> str:
    return s["verdict"]["name"]


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


MODULE_EXPECTED = {
    "tampered_zip": ("checksum_mismatch", "verify", "module_tampered"),
    "zip_reset": ("connection_reset", "read", "rst_injection"),
}


@pytest.mark.parametrize("name", list(MODULE_EXPECTED))
def test_module_scenario_is_classified_from_the_censored_vantage_only(lab, name):
    module = lab.module
    assert module is not None
    with lab.scenario(*scenarios(lab)[name][0]):
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
    for vantage in ("clean", "censored", "censored2"):
        results = lab.probe(vantage, config(lab, vantage), "site", "module", "tls", "proxy-https", "intranet")
        last = {r["check"]: r for r in results}  # each run's last result
        assert {check: verdict(r) for check, r in last.items()} == dict.fromkeys(("site", "module", "tls", "proxy-https", "intranet"), "ok"), (
            vantage, {check: r["verdict"] for check, r in last.items()})
        assert last["intranet"]["facts"]["private_ips"] == ["10.1.2.3"]  # split horizon, agreed by DoT and DoH


# Scenarios judged by other checks: (scenario, check) -> the censored vantage's verdict.
OTHER_CHECKS = {
    ("sni_rst", "tls"): "sni_blocking",
    ("module_mitm", "module"): "tls_mitm",
    ("module_mitm", "proxy-https"): "tls_mitm",
    ("dns_hijack", "intranet"): "dns_poisoning",
}


@pytest.mark.parametrize("name, check", list(OTHER_CHECKS), ids=lambda v: v)
def test_other_checks_conclude_from_the_censored_vantage_only(lab, name, check):
    rules, injector = scenarios(lab)[name]
    with lab.scenario(*rules, injector=injector):
        clean = result(lab, "clean", check)
        assert verdict(clean) == "ok", clean["verdict"]
        censored = result(lab, "censored", check)
    assert verdict(censored) == OTHER_CHECKS[(name, check)], (censored["verdict"], censored["failure"])
    assert censored["ok"] is False and censored["failure"] is not None
    if name == "module_mitm":
        # Both chains' issuers: the interceptor's here, the genuine one where it verified.
        evidence = " ".join(censored["verdict"]["evidence"])
        assert "issued by CN=interceptor CA" in evidence and "issued by CN=lab CA" in evidence, evidence
        assert (censored["failure"]["class"], censored["failure"]["operation"]) == ("ssl_unknown_authority", "tls_handshake")
    if check == "tls":
        assert censored["facts"]["subtype"] == "rst"


def test_cdn_like_rotating_answers_stay_ok_over_many_rounds(lab):
    """The plain resolver answers one address of three at random, the references all three."""
    seen = set()
    for _ in range(4):
        for vantage in ("clean", "censored"):
            s = summary(lab, vantage, "cdn")
            assert verdict(s) == "ok", s["verdict"]
            seen.update(s["facts"]["proven_ips"])
    assert seen == set(lab.sites)
