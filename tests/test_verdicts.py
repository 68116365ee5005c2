"""The verdict rules on hand-built site rounds: every verdict of the vocabulary, the CDN
false-positive guard, DNS and SNI findings reported together, and the retry policy.

Results are built in the shape monitor/probes/site.py gives them (role, attempt, the SNI
experiment's outcomes), so observations.py is exercised on the way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.analysis.observations import PeerView, attempts_of, peer_view, round_facts
from monitor.analysis.verdicts import judge_module, judge_site
from monitor.model import (
    Failure,
    FailureClass,
    Operation,
    ProbeResult,
    Verdict,
    VerdictName,
)

F, O, V = FailureClass, Operation, VerdictName
T0 = datetime(2026, 11, 20, tzinfo=UTC)
DOMAIN, CONTROL = "site.example", "control.example"
GOOD, GOOD2, FORGED = "93.184.216.34", "93.184.216.35", "31.13.94.37"  # FORGED: in the shipped GFW pool
LEAF, MITM_LEAF = "aa" * 32, "bb" * 32
POOL = frozenset({FORGED})


def _result(kind: str, target: str, role: str, attempt: int, failure: Failure | None = None, **facts) -> ProbeResult:
    return ProbeResult(check="s", kind=kind, vantage="here", target=target, started_at=T0, ok=failure is None,
                       duration_s=0.1, failure=failure, facts={"role": role, "attempt": attempt, **facts})


def resolver(spec: str, addresses=(), failure: FailureClass | None = None, *, injection=False, attempt=1) -> ProbeResult:
    transport = spec.split("://")[0] if "://" in spec else "system"
    f = Failure(failure, O.DNS_ROUND_TRIP, "") if failure else None
    return _result("dns", spec, "resolver", attempt, f, transport=transport, addresses=list(addresses), injection=injection)


# How one handshake ended: (class, operation, connected, after_client_hello, server_hello)
OUTCOMES = {
    "ok": (None, None, True, False, True),
    "rst": (F.CONNECTION_RESET, O.TLS_HANDSHAKE, True, True, False),
    "drop": (F.GENERIC_TIMEOUT_ERROR, O.TLS_HANDSHAKE, True, True, False),
    "close": (F.EOF_ERROR, O.TLS_HANDSHAKE, True, True, False),
    "syn_timeout": (F.GENERIC_TIMEOUT_ERROR, O.CONNECT, False, False, False),
    "syn_rst": (F.CONNECTION_REFUSED, O.CONNECT, False, False, False),
    "foreign": (F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE, True, True, True),
    "proxy": (F.PROXY_ERROR, O.PROXY_CONNECT, False, False, False),
}


def outcome(label: str, how: str, *, leaf: str | None = None, issuer: str = "CN=Real CA") -> dict:
    if how == "skipped":
        return {"label": label, "sni": None, "skipped": {"reason": "residual_blocking_holdoff"}, "connected": False,
                "after_client_hello": False, "server_hello": False, "class": None, "operation": None, "cert": None, "contaminated": False}
    cls, op, connected, after_hello, server_hello = OUTCOMES[how]
    sni = {"target": DOMAIN, "control": CONTROL, "none": None}[label]
    cert = {"subject": f"CN={sni}", "issuer": issuer, "sha256": leaf or (LEAF if how == "ok" else MITM_LEAF)} if server_hello else None
    return {"label": label, "sni": sni, "skipped": None, "connected": connected, "after_client_hello": after_hello,
            "server_hello": server_hello, "class": cls.value if cls else None, "operation": op.value if op else None,
            "cert": cert, "contaminated": False}


def handshake(ip: str, target="ok", control="ok", none="ok", *, attempt=1, issuer="CN=Real CA") -> ProbeResult:
    experiment = [outcome("control", control, issuer=issuer), outcome("target", target, issuer=issuer), outcome("none", none, issuer=issuer)]
    t = experiment[1]
    failure = Failure(F(t["class"]), O(t["operation"]), "") if t["class"] else None
    return _result("tls", f"{DOMAIN}:443", "handshake", attempt, failure, ip=ip, sni_experiment=experiment)


def fetch(ip: str, failure: tuple[FailureClass, Operation] | None = None, *, attempt=1, status=200) -> ProbeResult:
    f = Failure(failure[0], failure[1], "") if failure else None
    return _result("http", f"https://{DOMAIN}/", "fetch", attempt, f, ip=ip, status_code=status)


def refs(addresses=(GOOD,), *, dot=None, doh=None, attempt=1) -> list[ProbeResult]:
    return [
        resolver("tls://dot.ref", () if dot else addresses, dot, attempt=attempt),
        resolver("https://doh.ref/dns-query", () if doh else addresses, doh, attempt=attempt),
    ]


def clean_attempt(attempt=1, addresses=(GOOD,)) -> list[ProbeResult]:
    return [resolver("system", addresses, attempt=attempt), resolver("udp://10.0.0.53", addresses, attempt=attempt),
            *refs(addresses, attempt=attempt), *(handshake(ip, attempt=attempt) for ip in addresses), fetch(addresses[0], attempt=attempt)]


def repeated(build, n=3) -> list[ProbeResult]:
    return [r for a in range(1, n + 1) for r in build(a)]


def judge(results, peers=(), **kw):
    return judge_site(attempts_of(results), list(peers), pool=POOL, **kw)


def peer(*, connected=True, verified=True, fetched=True, leaves=(LEAF,), reached=("tls://dot.ref", "https://doh.ref/dns-query")) -> PeerView:
    return PeerView("clean", "agent-b", "ok" if verified else "server_down", connected, verified, frozenset(leaves),
                    frozenset({GOOD}) if verified else frozenset(), frozenset(reached), fetched)


# ---------------------------------------------------------------------------------------------


def test_a_clean_round_is_ok():
    j = judge(clean_attempt())
    assert j.verdict.name is V.OK and j.findings == ()


def test_cdn_answers_that_differ_but_verify_stay_ok_over_many_rounds():
    """Each round the plain resolvers and the references answer different addresses of a
    rotating pool, none in common; every address shows the domain's certificate."""
    pool = [f"93.184.216.{i}" for i in range(10, 16)]
    for n in range(30):
        mine, theirs = (pool[n % 6], pool[(n + 1) % 6]), (pool[(n + 3) % 6],)
        results = [resolver("system", mine), resolver("udp://10.0.0.53", mine[::-1]), *refs(theirs),
                   *(handshake(ip) for ip in (*mine, *theirs)), fetch(mine[0])]
        assert judge(results).verdict.name is V.OK, n


def test_forged_answer_unproven_is_poisoning_with_high_confidence():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), resolver("udp://10.0.0.53", (FORGED,), attempt=a),
                                  *refs(attempt=a), handshake(GOOD, attempt=a),
                                  handshake(FORGED, "syn_timeout", "syn_timeout", "syn_timeout", attempt=a), fetch(GOOD, attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.DNS_POISONING and j.verdict.confidence.value == "high"
    assert any(FORGED in line for line in j.verdict.evidence)


def test_injected_duplicate_reply_is_poisoning():
    results = repeated(lambda a: [resolver("udp://10.0.0.53", (FORGED, GOOD), injection=True, attempt=a), *refs(attempt=a),
                                  handshake(GOOD, attempt=a), fetch(GOOD, attempt=a)])
    assert judge(results).verdict.name is V.DNS_POISONING


def test_bogon_answer_is_poisoning_unless_a_certificate_proves_it():
    lying = repeated(lambda a: [resolver("system", ("10.1.2.3",), attempt=a), *refs(attempt=a),
                                handshake("10.1.2.3", "syn_timeout", "syn_timeout", "syn_timeout", attempt=a), handshake(GOOD, attempt=a), fetch(GOOD, attempt=a)])
    assert judge(lying).verdict.name is V.DNS_POISONING
    private = [resolver("system", ("10.1.2.3",)), *refs(("10.1.2.3",)), handshake("10.1.2.3"), fetch("10.1.2.3")]
    assert judge(private).verdict.name is V.OK


def test_answer_leading_to_a_foreign_certificate_is_poisoning():
    """A lying resolver sends to a server of its own (not a bogon) that cannot show the domain's certificate."""
    elsewhere = "198.51.100.7"
    results = repeated(lambda a: [resolver("system", ("203.0.113.9",), attempt=a), *refs(attempt=a),
                                  handshake("203.0.113.9", "foreign", "foreign", "foreign", attempt=a), handshake(GOOD, attempt=a),
                                  fetch(GOOD, attempt=a)])
    j = judge(results, [peer()])
    assert elsewhere not in str(j.verdict.evidence)
    assert j.verdict.name is V.DNS_POISONING


def test_nxdomain_while_references_answer_is_dns_blocking():
    results = repeated(lambda a: [resolver("system", (), F.DNS_NXDOMAIN_ERROR, attempt=a), *refs(attempt=a),
                                  handshake(GOOD, attempt=a), fetch(GOOD, attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.DNS_BLOCKING and j.verdict.confidence.value == "high"


def test_dot_unreachable_while_plain_dns_works_is_encrypted_dns_blocked():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(dot=F.GENERIC_TIMEOUT_ERROR, attempt=a),
                                  handshake(GOOD, attempt=a), fetch(GOOD, attempt=a)])
    assert judge(results).verdict.name is V.ENCRYPTED_DNS_BLOCKED
    assert judge(results, [peer()]).verdict.confidence.value == "high"
    # Unreachable from the other vantage too: that reference is down, not blocked.
    assert judge(results, [peer(reached=("https://doh.ref/dns-query",))]).verdict.name is V.INCONCLUSIVE


def _dead(a: int, how: str) -> list[ProbeResult]:
    return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), handshake(GOOD, how, how, how, attempt=a),
            fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]


def test_no_connection_anywhere_needs_another_vantage_to_say_who_is_at_fault():
    results = repeated(lambda a: _dead(a, "syn_timeout"))
    assert judge(results, [peer()]).verdict.name is V.IP_BLOCKING
    assert judge(results, [peer(connected=False, verified=False, fetched=False)]).verdict.name is V.SERVER_DOWN
    alone = judge(results)
    assert alone.verdict.name is V.INCONCLUSIVE
    assert any("no other vantage" in line for line in alone.verdict.evidence)


def test_syn_answered_by_rst_while_another_vantage_connects_is_rst_injection():
    j = judge(repeated(lambda a: _dead(a, "syn_rst")), [peer()])
    assert j.verdict.name is V.RST_INJECTION
    assert j.facts()["subtype"] == "syn"


@pytest.mark.parametrize("how", ["rst", "drop", "close"])
def test_target_sni_failing_while_control_completes_is_sni_blocking(how):
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, target=how, none="ok", attempt=a), fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.SNI_BLOCKING and j.facts()["subtype"] == how
    assert j.verdict.confidence.value == "high"


def test_sni_blocking_uses_the_first_control_when_later_ones_were_held_off():
    def build(a):
        control = "ok" if a == 1 else "skipped"
        return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), handshake(GOOD, "rst", control, "ok", attempt=a),
                fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)]
    assert judge(repeated(build)).verdict.name is V.SNI_BLOCKING


def test_target_and_control_both_failing_is_not_sni_blocking():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "rst", "rst", "rst", attempt=a), fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])
    assert judge(results).verdict.name is not V.SNI_BLOCKING


def test_dns_poisoning_and_sni_blocking_are_both_reported():
    results = repeated(lambda a: [resolver("udp://10.0.0.53", (FORGED,), attempt=a), *refs(attempt=a),
                                  handshake(FORGED, "syn_timeout", "syn_timeout", "syn_timeout", attempt=a),
                                  handshake(GOOD, "rst", "ok", "ok", attempt=a), fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.DNS_POISONING
    assert {f.verdict for f in j.findings} >= {V.DNS_POISONING, V.SNI_BLOCKING}
    assert any(line.startswith("tls: ") for line in j.verdict.evidence)
    assert "also: sni_blocking" in j.verdict.evidence


def test_foreign_chain_where_another_vantage_verifies_the_genuine_one_is_mitm():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "foreign", "ok", "ok", attempt=a), fetch(GOOD, (F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE), attempt=a)])
    j = judge(results, [peer()])
    assert j.verdict.name is V.TLS_MITM and j.verdict.confidence.value == "high"


def test_same_foreign_issuer_on_every_name_is_a_local_intercepting_proxy():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "foreign", "foreign", "foreign", attempt=a, issuer="CN=Corp Inspection CA"),
                                  fetch(GOOD, (F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE), attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.TLS_MITM
    assert any("local intercepting proxy" in line for line in j.verdict.evidence)
    # The same broken chain seen from another vantage: the server's certificate, not an interceptor.
    assert judge(results, [peer(verified=False, leaves=())]).verdict.name is V.SERVER_DOWN


def test_reset_mid_transfer_over_a_verified_session_is_rst_injection():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), handshake(GOOD, attempt=a),
                                  fetch(GOOD, (F.CONNECTION_RESET, O.READ), attempt=a)])
    j = judge(results, [peer()])
    assert j.verdict.name is V.RST_INJECTION and j.facts()["subtype"] == "mid_transfer"


def test_get_failing_here_but_working_elsewhere_is_http_blocking():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), handshake(GOOD, attempt=a),
                                  fetch(GOOD, (F.HTTP_STATUS, O.HTTP_ROUND_TRIP), status=451, attempt=a)])
    assert judge(results, [peer()]).verdict.name is V.HTTP_BLOCKING


def test_failing_proxy_is_proxy_failure_not_ip_blocking():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "proxy", "proxy", "proxy", attempt=a), fetch(GOOD, (F.PROXY_ERROR, O.PROXY_CONNECT), attempt=a)])
    assert judge(results, [peer()]).verdict.name is V.PROXY_FAILURE


def test_a_single_unrepeated_failure_is_inconclusive():
    results = [*_dead(1, "syn_timeout"), *clean_attempt(2), *clean_attempt(3)]
    j = judge(results, [peer()])
    assert j.verdict.name is V.INCONCLUSIVE
    assert j.verdict.evidence[0] == "1 of 3 attempts failed, not repeated"


def test_failures_that_come_and_go_above_the_threshold_are_degraded():
    """A lossy path: timeouts on different resolvers and handshakes in each attempt."""
    def build(a):
        dot = F.GENERIC_TIMEOUT_ERROR if a != 2 else None
        udp_fail = F.GENERIC_TIMEOUT_ERROR if a != 3 else None
        how = ["syn_timeout", "ok", "drop"][a - 1]
        return [resolver("system", (GOOD,), attempt=a), resolver("udp://10.0.0.53", () if udp_fail else (GOOD,), udp_fail, attempt=a),
                *refs(dot=dot, attempt=a), handshake(GOOD, how, ["ok", "drop", "syn_timeout"][a - 1], "ok", attempt=a),
                fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT) if a == 1 else None, attempt=a)]
    j = judge(repeated(build), [peer()], degraded_threshold=0.2)
    assert j.verdict.name is V.DEGRADED
    assert j.flapping
    assert judge(repeated(build), [peer()], degraded_threshold=0.9).verdict.name is V.INCONCLUSIVE


def test_timeouts_that_repeat_on_a_flapping_path_do_not_make_ip_blocking():
    def build(a):
        flaky = F.GENERIC_TIMEOUT_ERROR if a % 2 else None
        return [resolver("system", (GOOD,), attempt=a), resolver("udp://10.0.0.53", () if flaky else (GOOD,), flaky, attempt=a),
                *refs(attempt=a), handshake(GOOD, "syn_timeout", "syn_timeout", "syn_timeout", attempt=a), fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]
    assert judge(repeated(build), [peer()], degraded_threshold=0.3).verdict.name is V.DEGRADED


def test_a_summary_tells_other_vantages_what_it_saw():
    results = clean_attempt()
    facts = round_facts(attempts_of(results)).to_facts()
    summary = ProbeResult(check="s", kind="site", vantage="clean", target=DOMAIN, started_at=T0, ok=True, duration_s=1.0,
                          facts=facts, verdict=Verdict(V.OK, judge(results).verdict.confidence), agent="b")
    view = peer_view(summary)
    assert view.connected and view.verified and view.fetched
    assert view.leaves == {LEAF} and view.proven_ips == {GOOD}


# ---------------------------------------------------------------------------------------------
# Module fetches (goproxy)


def _module(failure: Failure | None, vantage="here") -> ProbeResult:
    return ProbeResult(check="m", kind="goproxy", vantage=vantage, target="x@v1", started_at=T0, ok=failure is None, duration_s=1.0, failure=failure)


def test_module_checksum_mismatch_is_module_tampered():
    assert judge_module(_module(Failure(F.CHECKSUM_MISMATCH, O.VERIFY, "zip")), []).name is V.MODULE_TAMPERED


def test_module_zip_reset_mid_transfer_is_rst_injection_when_elsewhere_fine():
    reset = _module(Failure(F.CONNECTION_RESET, O.READ, "zip"))
    verdict = judge_module(reset, [_module(None, "clean")])
    assert verdict.name is V.RST_INJECTION and verdict.evidence[0] == "reset mid-transfer"
    assert judge_module(reset, [_module(Failure(F.CONNECTION_RESET, O.READ, ""), "clean")]).name is V.SERVER_DOWN
    assert judge_module(_module(Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, "")), []).name is V.INCONCLUSIVE
    assert judge_module(_module(Failure(F.PROXY_ERROR, O.PROXY_CONNECT, "")), []).name is V.PROXY_FAILURE
    assert judge_module(_module(None), []).name is V.OK
