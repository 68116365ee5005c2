"""Consistency rules over the per-resolver results of one round (pure: no network)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from monitor.analysis.dns_consistency import compare, forged_pool, is_bogon, judge_dns, parse_pool
from monitor.analysis.observations import PeerView
from monitor.model import Failure, FailureClass, Operation, ProbeResult, VerdictName

TRUE = "93.184.216.34"
FORGED = "31.13.94.37"  # Facebook's, and in the GFW injector's pool


def answered(target: str, *addresses: str, qtype: str = "A", transport: str = "udp", **facts: Any) -> ProbeResult:
    rtype = "AAAA" if qtype == "AAAA" else "A"
    answers = [{"name": "x.test.", "type": rtype, "ttl": 60, "data": a} for a in addresses]
    return ProbeResult(
        check="c", kind="dns", vantage="local", target=target, started_at=datetime.now(timezone.utc), ok=True, duration_s=0.01,
        facts={"transport": transport, "qtype": qtype, "addresses": list(addresses), "answers": answers, **facts},
    )


def failed(target: str, cls: FailureClass, transport: str = "udp", operation: Operation = Operation.DNS_ROUND_TRIP) -> ProbeResult:
    return ProbeResult(
        check="c", kind="dns", vantage="local", target=target, started_at=datetime.now(timezone.utc), ok=False, duration_s=0.01,
        failure=Failure(cls, operation), facts={"transport": transport, "qtype": "A", "addresses": [], "answers": []},
    )


def rules(comparison) -> list[str]:
    return [r.rule for r in comparison.reasons]


def test_the_shipped_pool_is_the_published_one():
    pool = forged_pool()
    assert len(pool) == 592 + 30 + 38  # wallbleed A + AAAA, and the legacy addresses not already in it
    assert {FORGED, "2a03:2880:f130:83:face:b00c:0:25de", "8.7.198.45"} <= pool


def test_pool_parsing_ignores_comments_and_normalises():
    assert parse_pool("# header\n1.2.3.4  # note\n\n2001:DB8::0001\n") == {"1.2.3.4", "2001:db8::1"}


def test_agreeing_resolvers_are_consistent():
    c = compare([answered("udp://a", TRUE), answered("https://b", TRUE, transport="https")])
    assert c.consistent and c.reasons == () and c.verdict.name is VerdictName.OK


def test_partial_overlap_is_consistent():
    c = compare([answered("udp://a", TRUE, "1.1.1.1"), answered("udp://b", TRUE, "8.8.8.8")])
    assert c.consistent


def test_forged_answer_is_named():
    c = compare([answered("udp://a", FORGED), answered("https://b", TRUE, transport="https")])
    assert not c.consistent
    assert c.forged_ips == (FORGED,)
    assert rules(c) == ["forged_ip", "no_ip_overlap"]
    assert c.reasons[0].resolvers == ("udp://a",)
    assert c.verdict.name is VerdictName.DNS_POISONING and c.verdict.confidence.value == "high"


def test_pool_address_confirmed_by_another_resolver_is_not_forged():
    # facebook.com really lives at addresses the injector also uses.
    c = compare([answered("udp://a", FORGED), answered("https://b", FORGED, transport="https")])
    assert c.consistent and c.forged_ips == ()


def test_a_single_resolver_is_still_checked_against_the_pool():
    c = compare([answered("udp://a", FORGED)])
    assert rules(c) == ["forged_ip"]


def test_forged_address_in_a_losing_duplicate_is_named():
    replies = [{"status": "accepted", "addresses": [TRUE]}, {"status": "duplicate", "addresses": [FORGED], "differs": True}]
    c = compare([answered("udp://a", TRUE, replies=replies, injection=True), answered("udp://b", TRUE)])
    assert rules(c) == ["forged_ip", "injection"]
    assert c.forged_ips == (FORGED,)


def test_wrong_source_replies_are_not_the_resolver_speaking():
    replies = [{"status": "wrong_source", "addresses": [FORGED]}, {"status": "accepted", "addresses": [TRUE]}]
    assert compare([answered("udp://a", TRUE, replies=replies)]).consistent


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "0.0.0.0", "192.168.1.1", "100.64.0.1", "240.0.0.1", "224.0.0.1", "::1", "fe80::1"])
def test_a_private_answer_is_poisoning_only_where_the_encrypted_resolvers_disagree(address):
    assert is_bogon(address)
    doh = answered("https://b", TRUE, transport="https")
    c = compare([answered("udp://a", address), doh])
    assert "bogon" in rules(c) and c.bogon_ips == (address,)
    assert c.verdict.name is VerdictName.DNS_POISONING and c.verdict.confidence.value == "medium"
    assert "https://b answered otherwise" in c.reasons[0].detail
    # Split horizon: the internal DoH says the same.
    agreeing = compare([answered("udp://a", address), answered("https://b", address, transport="https")])
    assert agreeing.consistent and agreeing.private_ips == (address,) and agreeing.verdict.name is VerdictName.OK
    # No encrypted resolver to contradict it (an internal resolver over UDP and TCP): nothing proves a lie.
    internal = compare([answered("udp://a", address), answered("tcp://a", address, transport="tcp")])
    assert internal.consistent and internal.verdict.name is VerdictName.OK
    # A network where private answers are expected is never taken for poisoning.
    expected = compare([answered("udp://a", address), doh], private=[f"{address}/32" if ":" not in address else f"{address}/128"])
    assert "bogon" not in rules(expected) and expected.private_ips == (address,)


def test_every_resolver_failing_is_not_consistent():
    c = compare([failed("udp://a", FailureClass.GENERIC_TIMEOUT_ERROR), failed("tls://b", FailureClass.CONNECTION_RESET, "tls")])
    assert not c.consistent and rules(c) == ["all_failed"]
    assert c.verdict.name is VerdictName.INCONCLUSIVE


@pytest.mark.parametrize("address", [TRUE, "8.8.8.8", "2606:4700::1111"])
def test_routable_addresses_are_not_bogons(address):
    assert not is_bogon(address)


def test_teredo_aaaa_is_its_own_reason():
    c = compare([answered("udp://a", "2001::4136:e378:8000:63bf:3fff:fdd2", qtype="AAAA")])
    assert rules(c) == ["teredo"] and c.bogon_ips == ()
    assert c.verdict.name is VerdictName.DNS_POISONING


def test_nxdomain_against_answers():
    c = compare([answered("https://a", TRUE, transport="https"), failed("udp://b", FailureClass.DNS_NXDOMAIN_ERROR)])
    assert rules(c) == ["nxdomain_vs_answers"]
    assert c.reasons[0].resolvers == ("udp://b", "https://a")
    assert c.verdict.name is VerdictName.DNS_BLOCKING


def test_nxdomain_everywhere_is_consistent():
    c = compare([failed("udp://a", FailureClass.DNS_NXDOMAIN_ERROR), failed("tls://b", FailureClass.DNS_NXDOMAIN_ERROR, "tls")])
    assert c.consistent and c.verdict.name is VerdictName.OK


def test_disjoint_answers_alone_are_inconclusive():
    c = compare([answered("udp://a", TRUE), answered("udp://b", "8.8.8.8"), answered("udp://c", "8.8.8.8")])
    assert rules(c) == ["no_ip_overlap"] and c.reasons[0].resolvers == ("udp://a",)
    assert c.verdict.name is VerdictName.INCONCLUSIVE and c.verdict.confidence.value == "low"


def test_other_types_compare_record_data():
    def txt(target: str, data: str) -> ProbeResult:
        r = answered(target, qtype="TXT")
        r.facts["answers"] = [{"name": "x.test.", "type": "TXT", "ttl": 60, "data": data}]
        return r

    assert compare([txt("udp://a", '"v=1"'), txt("udp://b", '"v=1"')]).consistent
    assert rules(compare([txt("udp://a", '"v=1"'), txt("udp://b", '"v=2"')])) == ["answers_differ"]


def test_encrypted_resolvers_failing_while_plain_answers():
    c = compare([
        answered("udp://a", TRUE),
        failed("tls://b", FailureClass.CONNECTION_RESET, "tls", Operation.TLS_HANDSHAKE),
        failed("https://c", FailureClass.GENERIC_TIMEOUT_ERROR, "https", Operation.CONNECT),
    ])
    assert c.consistent and c.verdict.name is VerdictName.ENCRYPTED_DNS_BLOCKED
    assert "tls://b: connection_reset during tls_handshake" in c.verdict.evidence


def test_some_failures_otherwise_are_degraded_and_none_answering_inconclusive():
    assert compare([answered("udp://a", TRUE), failed("udp://b", FailureClass.GENERIC_TIMEOUT_ERROR)]).verdict.name is VerdictName.DEGRADED
    assert compare([failed("udp://a", FailureClass.GENERIC_TIMEOUT_ERROR)]).verdict.name is VerdictName.INCONCLUSIVE


def test_facts_are_json_ready():
    facts = compare([answered("udp://a", FORGED), answered("udp://b", TRUE)]).facts()
    assert facts["consistent"] is False and facts["forged_ips"] == [FORGED] and facts["private_ips"] == []
    assert facts["reasons"][0] == {"rule": "forged_ip", "resolvers": ["udp://a"], "addresses": [FORGED], "detail": "address from the GFW forged-answer pool"}
    assert facts["resolvers"] == [
        {"resolver": "udp://a", "ok": True, "failure": None, "addresses": [FORGED]},
        {"resolver": "udp://b", "ok": True, "failure": None, "addresses": [TRUE]},
    ]


# ---------------------------------------------------------------------------------------------
# The judged round (judge_dns): ok, the failure it rests on, other vantages


def dns_peer(reached: tuple[str, ...], *, control: bool = False) -> PeerView:
    return PeerView("clean", "b", "ok", bool(reached), bool(reached), reached_resolvers=frozenset(reached), fetched=bool(reached),
                    control=control, resolved=bool(reached))


def test_answers_that_differ_without_proof_are_inconclusive_but_not_a_failed_round():
    j = judge_dns([answered("udp://a", TRUE), answered("https://b", "8.8.8.8", transport="https")])
    assert j.verdict.name is VerdictName.INCONCLUSIVE and j.ok and j.failure is None


def test_a_lying_answer_fails_the_round_with_a_failure_that_says_so():
    j = judge_dns([answered("udp://a", FORGED), answered("https://b", TRUE, transport="https")])
    assert j.verdict.name is VerdictName.DNS_POISONING and not j.ok
    assert (j.failure.cls, j.failure.operation) == (FailureClass.DNS_BOGON_ERROR, Operation.VERIFY)


def test_resolvers_that_fail_here_are_told_apart_by_other_vantages():
    results = [failed("udp://a", FailureClass.GENERIC_TIMEOUT_ERROR), failed("tls://b", FailureClass.GENERIC_TIMEOUT_ERROR, "tls")]
    alone = judge_dns(results)
    assert alone.verdict.name is VerdictName.INCONCLUSIVE and not alone.ok
    assert (alone.failure.cls, alone.failure.operation) == (FailureClass.GENERIC_TIMEOUT_ERROR, Operation.DNS_ROUND_TRIP)
    assert judge_dns(results, [dns_peer(("udp://a", "tls://b"))]).verdict.name is VerdictName.DNS_BLOCKING
    assert judge_dns(results, [dns_peer((), control=True)]).verdict.name is VerdictName.SERVER_DOWN
    assert judge_dns(results, [dns_peer(())]).verdict.name is VerdictName.INCONCLUSIVE  # no control: proves nothing


def test_an_encrypted_resolver_failing_here_but_reached_elsewhere_is_encrypted_dns_blocked():
    results = [answered("udp://a", TRUE), failed("tls://b", FailureClass.GENERIC_TIMEOUT_ERROR, "tls"),
               answered("https://c", TRUE, transport="https")]
    assert judge_dns(results).verdict.name is VerdictName.DEGRADED
    assert judge_dns(results, [dns_peer(("udp://a", "tls://b", "https://c"))]).verdict.name is VerdictName.ENCRYPTED_DNS_BLOCKED
