"""The verdict rules on hand-built site rounds: every verdict of the vocabulary, the CDN
false-positive guard, DNS and SNI findings reported together, and the retry policy.

Results are built in the shape monitor/probes/site.py gives them (role, attempt, the SNI
experiment's outcomes), so observations.py is exercised on the way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.analysis.observations import Chain, PeerView, attempts_of, peer_view, round_facts
from monitor.analysis.single import judge_result
from monitor.analysis.verdicts import judge_site
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
    "unreachable": (F.NETWORK_UNREACHABLE, O.CONNECT, False, False, False),
}


def outcome(label: str, how: str, *, leaf: str | None = None, issuer: str = "CN=Real CA", contaminated: bool = False,
            carried: float | None = None) -> dict:
    sni = {"target": DOMAIN, "control": CONTROL, "none": None}[label]
    if how == "skipped":
        return {"label": label, "sni": sni, "skipped": {"reason": "residual_blocking_holdoff"}, "connected": False,
                "after_client_hello": False, "server_hello": False, "class": None, "operation": None, "cert": None, "contaminated": False,
                **({"carried": {"sni": sni, "age_s": carried}} if carried is not None else {})}
    cls, op, connected, after_hello, server_hello = OUTCOMES[how]
    cert = {"subject": f"CN={sni}", "issuer": issuer, "sha256": leaf or (LEAF if how == "ok" else MITM_LEAF)} if server_hello else None
    return {"label": label, "sni": sni, "skipped": None, "connected": connected, "after_client_hello": after_hello,
            "server_hello": server_hello, "class": cls.value if cls else None, "operation": op.value if op else None,
            "cert": cert, "contaminated": contaminated, "trigger": after_hello and cls in (F.CONNECTION_RESET, F.GENERIC_TIMEOUT_ERROR, F.EOF_ERROR)}


def handshake(ip: str, target="ok", control="ok", none="ok", *, attempt=1, issuer="CN=Real CA", held=False, carried=None,
              contaminated=False) -> ProbeResult:
    """One address's SNI experiment. `held`: the address was in its hold-off when the run began
    (every attempt contaminated; a skipped control may carry an earlier one, `carried` s old)."""
    tainted = held or contaminated
    experiment = [outcome("control", control, issuer=issuer, carried=carried, contaminated=tainted),
                  outcome("target", target, issuer=issuer, contaminated=tainted), outcome("none", none, issuer=issuer, contaminated=tainted)]
    t = experiment[1]
    failure = Failure(F(t["class"]), O(t["operation"]), "") if t["class"] else None
    return _result("tls", f"{DOMAIN}:443", "handshake", attempt, failure, ip=ip, sni_experiment=experiment,
                   **({"holdoff": {"remaining_s": 100.0, "triggered_s_ago": 80.0}} if held else {}))


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


def peer(*, connected=True, verified=True, fetched=True, leaves=(LEAF,), reached=("tls://dot.ref", "https://doh.ref/dns-query"),
         control=False, vantage="clean", verdict=None, chains=()) -> PeerView:
    return PeerView(vantage, "agent-b", verdict or ("ok" if verified else "inconclusive"), connected, verified, frozenset(leaves),
                    frozenset({GOOD}) if verified else frozenset(), frozenset(reached), fetched, control=control, chains=tuple(chains))


def down(**kw) -> PeerView:
    """A vantage that cannot connect either (resolved, no connection)."""
    return peer(connected=False, verified=False, fetched=False, leaves=(), **kw)


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


def test_bogon_answer_is_poisoning_unless_a_certificate_or_the_references_or_the_config_clear_it():
    lying = repeated(lambda a: [resolver("system", ("10.1.2.3",), attempt=a), *refs(attempt=a),
                                handshake("10.1.2.3", "syn_timeout", "syn_timeout", "syn_timeout", attempt=a), handshake(GOOD, attempt=a), fetch(GOOD, attempt=a)])
    assert judge(lying).verdict.name is V.DNS_POISONING
    assert judge(lying, private=["10.0.0.0/8"]).verdict.name is not V.DNS_POISONING  # an expected internal network
    private = [resolver("system", ("10.1.2.3",)), *refs(("10.1.2.3",)), handshake("10.1.2.3"), fetch("10.1.2.3")]
    assert judge(private).verdict.name is V.OK
    # Split horizon: the references give the same private address, nobody proves it with a certificate.
    internal = [resolver("system", ("10.1.2.3",)), *refs(("10.1.2.3",)), handshake("10.1.2.3", "foreign", "foreign", "foreign"),
                fetch("10.1.2.3", (F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE))]
    assert V.DNS_POISONING not in {f.verdict for f in judge(internal).findings}


def test_a_forged_pool_address_the_references_also_give_is_not_poisoning():
    """The pool holds real addresses of blocked services: agreement with DoT and DoH clears one."""
    results = [resolver("udp://10.0.0.53", (FORGED,)), *refs((FORGED,)), handshake(FORGED, "syn_timeout", "syn_timeout", "syn_timeout"),
               fetch(FORGED, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT))]
    assert V.DNS_POISONING not in {f.verdict for f in judge(results, [peer()]).findings}


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
    # Unreachable from a control too: that reference is down, not blocked.
    assert judge(results, [peer(reached=("https://doh.ref/dns-query",), control=True)]).verdict.name is V.INCONCLUSIVE
    # From a vantage that is no control, it proves nothing either way.
    assert judge(results, [peer(reached=("https://doh.ref/dns-query",))]).verdict.name is V.ENCRYPTED_DNS_BLOCKED


def _dead(a: int, how: str) -> list[ProbeResult]:
    return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), handshake(GOOD, how, how, how, attempt=a),
            fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]


def test_no_connection_anywhere_needs_a_clean_control_to_say_who_is_at_fault():
    results = repeated(lambda a: _dead(a, "syn_timeout"))
    assert judge(results, [peer()]).verdict.name is V.IP_BLOCKING
    assert judge(results, [down(control=True)]).verdict.name is V.SERVER_DOWN
    alone = judge(results)
    assert alone.verdict.name is V.INCONCLUSIVE
    assert any("no clean control" in line for line in alone.verdict.evidence)


def test_a_failing_vantage_that_is_no_control_does_not_make_it_server_down():
    """A second censored vantage, or a control that is itself censored or behind a failing
    proxy, fails too: that is no proof the server is down."""
    results = repeated(lambda a: _dead(a, "syn_timeout"))
    censored_too = down(vantage="censored-2")
    assert judge(results, [censored_too]).verdict.name is V.INCONCLUSIVE
    assert any("censored-2@agent-b failed too, but is no clean control" in line for line in judge(results, [censored_too]).verdict.evidence)
    interfered = down(control=True, vantage="ctl", verdict="ip_blocking")
    assert judge(results, [censored_too, interfered]).verdict.name is V.INCONCLUSIVE
    behind_a_dead_proxy = peer(connected=False, verified=False, fetched=False, leaves=(), control=True, verdict="proxy_failure")
    assert judge(results, [behind_a_dead_proxy]).verdict.name is V.INCONCLUSIVE
    # The named control connects: IP blocking, whatever the other censored vantage says.
    assert judge(results, [censored_too, peer(control=True, vantage="ctl")]).verdict.name is V.IP_BLOCKING


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
    # A control is shown the same chain and cannot verify it either: the server's certificate, not an interceptor.
    broken = peer(verified=False, leaves=(), control=True, chains=[Chain(DOMAIN, MITM_LEAF, "CN=Corp Inspection CA", False)])
    assert judge(results, [broken]).verdict.name is V.SERVER_DOWN


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


def test_a_working_site_with_a_failing_control_is_ok_with_a_note():
    results = [resolver("system", (GOOD,)), *refs(), handshake(GOOD, "ok", "rst", "ok"), fetch(GOOD)]
    j = judge(results)
    assert j.verdict.name is V.OK and j.verdict.confidence.value == "medium"
    assert any("control.example failed on 93.184.216.34" in line for line in j.verdict.evidence)


def test_sni_blocking_with_the_control_carried_forward_within_the_holdoff():
    """A later round: the control is held off, the last one that completed is carried forward."""
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "rst", "skipped", "rst", attempt=a, held=True, carried=60.0),
                                  fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])
    j = judge(results)
    assert j.verdict.name is V.SNI_BLOCKING and j.facts()["subtype"] == "rst"
    assert any("completed on the same address 60 s ago (carried forward" in line for line in j.verdict.evidence)
    # Without a control to carry, nothing proves the address reachable: not SNI blocking.
    assert judge(repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                     handshake(GOOD, "rst", "skipped", "rst", attempt=a, held=True),
                                     fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])).verdict.name is not V.SNI_BLOCKING


def test_no_connection_within_the_holdoff_is_residual_sni_blocking_not_ip_blocking():
    """After the trigger the censor drops every SYN to the address for a while (residual
    blocking): with a control carried forward that is the SNI filter, with or without peers."""
    def build(a):
        return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                handshake(GOOD, "syn_timeout", "skipped", "syn_timeout", attempt=a, held=True, carried=30.0),
                fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]
    for peers in ([], [peer()], [peer(control=True)]):
        j = judge(repeated(build), peers)
        assert j.verdict.name is V.SNI_BLOCKING and j.facts()["subtype"] == "residual", (peers, j.verdict)
    # A clean control cannot connect either: the server went down, whatever triggered before.
    assert judge(repeated(build), [down(control=True)]).verdict.name is V.SERVER_DOWN
    # No control to carry: residual blocking or an IP block, not told apart — never ip_blocking.
    def uncarried(a):
        return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                handshake(GOOD, "syn_timeout", "syn_timeout", "syn_timeout", attempt=a, held=True),
                fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]
    assert judge(repeated(uncarried), [peer()]).verdict.name is V.INCONCLUSIVE


def test_the_first_attempt_of_a_round_triggers_the_residual_blocking_of_the_next_ones():
    """Attempt 1: target reset while the control completes; attempts 2 and 3 (held off since
    attempt 1's trigger) see no connection at all: SNI blocking throughout."""
    def build(a):
        if a == 1:
            hs = handshake(GOOD, "rst", "ok", "syn_timeout", attempt=a)
        else:
            hs = handshake(GOOD, "syn_timeout", "skipped", "syn_timeout", attempt=a, held=True, carried=1.0)
        return [resolver("system", (GOOD,), attempt=a), *refs(attempt=a), hs, fetch(GOOD, (F.GENERIC_TIMEOUT_ERROR, O.CONNECT), attempt=a)]
    j = judge(repeated(build), [peer()])
    assert j.verdict.name is V.SNI_BLOCKING and j.verdict.evidence[0] == "3 of 3 attempts"
    assert j.facts()["subtype"] == "rst"


def test_a_control_that_completes_within_the_holdoff_still_proves_the_path():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "rst", "ok", "rst", attempt=a, contaminated=True),
                                  fetch(GOOD, (F.CONNECTION_RESET, O.TLS_HANDSHAKE), attempt=a)])
    assert judge(results).verdict.name is V.SNI_BLOCKING


def test_no_route_from_here_is_this_vantage_s_network_not_ip_blocking():
    results = repeated(lambda a: [resolver("system", (GOOD,), attempt=a), *refs(attempt=a),
                                  handshake(GOOD, "unreachable", "unreachable", "unreachable", attempt=a),
                                  fetch(GOOD, (F.NETWORK_UNREACHABLE, O.CONNECT), attempt=a)])
    j = judge(results, [peer()])
    assert j.verdict.name is V.INCONCLUSIVE and any("no route from this vantage" in line for line in j.verdict.evidence)


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
# Single results (tcp, tls, http, proxy, git, goproxy)


def _single(kind: str, failure: Failure | None, vantage="here", **facts) -> ProbeResult:
    return ProbeResult(check="m", kind=kind, vantage=vantage, target="x", started_at=T0, ok=failure is None, duration_s=1.0,
                       failure=failure, facts=facts)


def _module(failure: Failure | None, vantage="here") -> ProbeResult:
    return _single("goproxy", failure, vantage)


def fine(kind="goproxy", control=False, **facts) -> PeerView:
    return peer_view(_single(kind, None, "clean", **facts), control=control)


def failed_there(failure: Failure, kind="goproxy", control=True) -> PeerView:
    return peer_view(_single(kind, failure, "ctl"), control=control)


def test_module_checksum_mismatch_is_module_tampered_with_both_hashes():
    facts = {"h1": "h1:got", "gomod_h1": "h1:mod", "served_by": {"zip": "https://proxy", "mod": "https://proxy"},
             "expected": {"zip": {"sum.db record 7": "h1:want"}, "go.mod": {"sum.db record 7": "h1:mod"}}}
    result = _single("goproxy", Failure(F.CHECKSUM_MISMATCH, O.VERIFY, "zip"), **facts)
    verdict = judge_result(result, [])
    assert verdict.name is V.MODULE_TAMPERED and verdict.confidence.value == "high"
    assert verdict.evidence == ("zip from https://proxy hashes to h1:got", "zip in sum.db record 7 is h1:want")


def test_module_zip_reset_mid_transfer_is_rst_injection_when_elsewhere_fine():
    reset = _module(Failure(F.CONNECTION_RESET, O.READ, "zip"))
    verdict = judge_result(reset, [fine()])
    assert verdict.name is V.RST_INJECTION and verdict.evidence[0] == "reset mid-transfer"
    assert judge_result(reset, [failed_there(Failure(F.CONNECTION_RESET, O.READ, ""))]).name is V.SERVER_DOWN
    assert judge_result(reset, [failed_there(Failure(F.CONNECTION_RESET, O.READ, ""), control=False)]).name is V.INCONCLUSIVE
    assert judge_result(_module(Failure(F.PROXY_ERROR, O.PROXY_CONNECT, "")), []).name is V.PROXY_FAILURE
    assert judge_result(_module(None), []).name is V.OK


@pytest.mark.parametrize("failure", [
    Failure(F.CONNECTION_RESET, O.READ, ""), Failure(F.CONNECTION_RESET, O.TLS_HANDSHAKE, ""), Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, ""),
    Failure(F.GENERIC_TIMEOUT_ERROR, O.TLS_HANDSHAKE, ""), Failure(F.DNS_TEMPORARY_FAILURE, O.RESOLVE, ""),
])
def test_one_failure_with_no_other_vantage_is_unexplained_whatever_it_is(failure):
    """A reset alone is no more proof of injection than a timeout is of blocking."""
    assert judge_result(_module(failure), []).name is V.INCONCLUSIVE


@pytest.mark.parametrize("kind", ["tcp", "tls", "http", "proxy", "git", "goproxy"])
def test_every_kind_names_a_blocked_connection_where_another_vantage_connects(kind):
    timeout = _single(kind, Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, ""))
    assert judge_result(timeout, [fine(kind)]).name is V.IP_BLOCKING
    refused = _single(kind, Failure(F.CONNECTION_REFUSED, O.CONNECT, ""))
    assert judge_result(refused, [fine(kind)]).name is V.RST_INJECTION
    assert judge_result(timeout, [failed_there(Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, ""), kind)]).name is V.SERVER_DOWN
    assert judge_result(timeout, [failed_there(Failure(F.GENERIC_TIMEOUT_ERROR, O.RESOLVE, ""), kind)]).name is V.INCONCLUSIVE
    assert judge_result(_single(kind, Failure(F.NETWORK_UNREACHABLE, O.CONNECT, "")), [fine(kind)]).name is V.INCONCLUSIVE


@pytest.mark.parametrize("kind", ["http", "goproxy", "git"])
def test_a_chain_that_verifies_elsewhere_but_not_here_is_mitm_with_both_issuers(kind):
    here = _single(kind, Failure(F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE, "self-signed"),
                   tls_chains={"proxy.example": {"issuer": "CN=Interceptor", "leaf_sha256": MITM_LEAF, "verified": False}})
    there = fine(kind, tls_chains={"proxy.example": {"issuer": "CN=Real CA", "leaf_sha256": LEAF, "verified": True}})
    verdict = judge_result(here, [there])
    assert verdict.name is V.TLS_MITM and verdict.confidence.value == "high"
    text = " ".join(verdict.evidence)
    assert "issued by CN=Interceptor" in text and "issued by CN=Real CA" in text
    assert judge_result(here, []).name is V.INCONCLUSIVE
    # A control shown the same chain cannot verify it either: the server's certificate is broken.
    same = peer_view(_single(kind, Failure(F.SSL_UNKNOWN_AUTHORITY, O.TLS_HANDSHAKE, ""), "ctl",
                             tls_chains={"proxy.example": {"issuer": "CN=Interceptor", "leaf_sha256": MITM_LEAF, "verified": False}}), control=True)
    assert judge_result(here, [same]).name is V.SERVER_DOWN


def test_git_names_the_part_that_failed():
    ssh = Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, "")
    result = _single("git", ssh, http={"ok": True, "failure": None}, ssh={"ok": False, "failure": ssh.to_json()})
    verdict = judge_result(result, [fine("git")])
    assert verdict.name is V.IP_BLOCKING and verdict.evidence[1].startswith("ssh: generic_timeout_error during connect")


def test_a_tls_check_with_control_sni_concludes():
    result = handshake(GOOD, "rst", "ok", "ok")
    result.kind, result.facts["role"] = "tls", None
    assert judge_result(result, []).name is V.SNI_BLOCKING
    assert judge_result(handshake(GOOD), []).name is V.OK
