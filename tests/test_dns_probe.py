"""The dns probe against real servers on loopback: unbound (UDP, TCP, DoT, DoH over HTTP/2)
started with a throwaway config and the test CA, and hostile Python servers, each wrong in
one way. Every case checks the class and operation the probe names, and the facts it kept."""

from __future__ import annotations

import tracemalloc

import time
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.analysis.runs import judge_run
from monitor.config import DnsCheck
from monitor.model import FailureClass as F
from monitor.model import Operation as Op
from monitor.model import ProbeResult, VerdictName
from monitor.probes.dns import probe_dns, run_dns_round
from monitor.vantage import Vantage
from tests.conftest import require
from tests.servers.certs import Pki
from tests.servers.dns_doh_hostile import HostileDoh, gzip_bomb
from tests.servers.dns_hostile import FORGED_ADDRESSES, TRUE_ADDRESSES, HostileDns
from tests.servers.dns_unbound import UNBOUND, Unbound, run_unbound
from tests.servers.tcp import TcpServer, closed_port, hold_open, server_context

NAME = "www.example.test"
TRUE_A = TRUE_ADDRESSES["A"][0]
FORGED_A = FORGED_ADDRESSES["A"][0]  # in the shipped GFW pool
RECORDS = [
    f"{NAME}. 300 IN A {TRUE_A}",
    f"{NAME}. 300 IN AAAA {TRUE_ADDRESSES['AAAA'][0]}",
    f"alias.example.test. 120 IN CNAME {NAME}.",
    'txt.example.test. 60 IN TXT "hello"',
]


@pytest.fixture(scope="module")
def unbound(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:  # noqa: F811
    require(UNBOUND, "unbound is not installed (apt-get install unbound)")
    with run_unbound(tmp_path_factory.mktemp("unbound"), RECORDS, tls=pki.valid) as server:
        yield server


@pytest.fixture(scope="module")
def liar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """A second real resolver that lies: it answers the name with a forged address."""
    require(UNBOUND, "unbound is not installed (apt-get install unbound)")
    with run_unbound(tmp_path_factory.mktemp("liar"), [f"{NAME}. 300 IN A {FORGED_A}"]) as server:
        yield server


def check(*resolvers: str, **fields: Any) -> DnsCheck:
    values = {"name": "dns-test", "kind": "dns", "interval": 60, "timeout": 2, "vantages": ["local"],
              "query": NAME, "resolvers": list(resolvers), "injection_window": 0.2, **fields}
    return DnsCheck.model_validate(values)


async def one(c: DnsCheck, v: Vantage) -> ProbeResult:
    """The single resolver's result of a round."""
    results = await run_dns_round(c, v, deadline=time.monotonic() + c.timeout)
    assert len(results) == 2
    return results[0]


# --- honest servers: answers, facts, phases per transport ------------------------------------


async def test_udp_answer_carries_ttls_rtt_and_ip_ttl(unbound, vantage):  # noqa: F811
    r = await one(check(unbound.udp), vantage)
    assert r.ok, r.failure
    assert r.target == unbound.udp
    assert set(r.phases) == {"dns_round_trip"}
    f = r.facts
    assert f["transport"] == "udp" and f["rcode"] == "NOERROR" and "QR" in f["flags"]
    assert f["answers"] == [{"name": f"{NAME}.", "type": "A", "ttl": 300, "data": TRUE_A}]
    assert f["addresses"] == [TRUE_A]
    assert f["resolver_address"] == f"127.0.0.1:{unbound.port}"
    assert f["response_size"] > 12
    [reply] = f["replies"]
    assert reply["status"] == "accepted" and isinstance(reply["ip_ttl"], int) and reply["rtt_s"] > 0
    assert f["injection"] is False


async def test_tcp_has_connect_and_round_trip(unbound, vantage):  # noqa: F811
    r = await one(check(unbound.tcp), vantage)
    assert r.ok, r.failure
    assert set(r.phases) == {"connect", "dns_round_trip"}
    assert r.facts["addresses"] == [TRUE_A]


@pytest.mark.parametrize("qtype, name, expected", [
    ("AAAA", NAME, TRUE_ADDRESSES["AAAA"][0]),
    ("TXT", "txt.example.test", '"hello"'),
    ("CNAME", "alias.example.test", f"{NAME}."),
])
async def test_other_types(unbound, vantage, qtype, name, expected):  # noqa: F811
    r = await one(check(unbound.udp, type=qtype, query=name), vantage)
    assert r.ok, r.failure
    assert expected in [a["data"] for a in r.facts["answers"]]


async def test_dot_by_address_with_auth_name(unbound, vantage):  # noqa: F811
    r = await one(check(unbound.tls("localhost")), vantage)
    assert r.ok, r.failure
    assert set(r.phases) == {"connect", "tls", "dns_round_trip"}  # an IP: nothing to resolve
    assert r.facts["sni"] == "localhost" and r.facts["verified"] is True
    assert r.facts["tls_version"].startswith("TLSv1.")
    assert r.facts["addresses"] == [TRUE_A]


async def test_dot_by_name_resolves_the_server_first(unbound, vantage):  # noqa: F811
    r = await one(check(f"tls://localhost:{unbound.tls_port}"), vantage)
    assert r.ok, r.failure
    assert set(r.phases) == {"resolve", "connect", "tls", "dns_round_trip"}
    assert r.facts["sni"] == "localhost"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_doh_over_http2(unbound, vantage, method):  # noqa: F811
    r = await one(check(unbound.https(), doh_method=method), vantage)
    assert r.ok, r.failure
    assert set(r.phases) == {"resolve", "connect", "tls", "dns_round_trip"}
    f = r.facts
    assert f["http_status"] == 200 and f["http_version"] == "HTTP/2" and f["alpn"] == "h2"
    assert f["doh_method"] == method and f["content_type"] == "application/dns-message"
    assert f["addresses"] == [TRUE_A]
    assert f["resolver_address"] in (f"127.0.0.1:{unbound.https_port}", f"[::1]:{unbound.https_port}")


async def test_system_resolver(vantage):  # noqa: F811
    # "localhost" comes from /etc/hosts: the system resolver is measured without DNS traffic.
    r = await one(check("system", query="localhost"), vantage)
    assert r.ok, r.failure
    assert set(r.phases) == {"resolve"}
    assert r.facts["addresses"] == ["127.0.0.1"]
    assert r.facts["answers"][0]["ttl"] is None and r.facts["rcode"] is None


# --- hostile UDP servers ---------------------------------------------------------------------


@pytest.mark.parametrize("behaviour, cls, statuses", [
    ("wrong_id", F.DNS_REPLY_WITH_WRONG_QUERY_ID, ["wrong_id"]),
    ("junk", F.DNS_MALFORMED, ["malformed"]),
    ("wrong_source", F.GENERIC_TIMEOUT_ERROR, ["wrong_source"]),
    ("silent", F.GENERIC_TIMEOUT_ERROR, []),
])
async def test_udp_without_a_usable_reply(vantage, behaviour, cls, statuses):  # noqa: F811
    with HostileDns(behaviour) as server:
        r = await one(check(server.udp, timeout=0.6), vantage)
    assert not r.ok
    assert (r.failure.cls, r.failure.operation) == (cls, Op.DNS_ROUND_TRIP)
    assert [reply["status"] for reply in r.facts["replies"]] == statuses
    assert r.phases["dns_round_trip"] > 0


@pytest.mark.parametrize("behaviour, cls, rcode", [
    ("nxdomain", F.DNS_NXDOMAIN_ERROR, "NXDOMAIN"),
    ("servfail", F.DNS_SERVFAIL_ERROR, "SERVFAIL"),
    ("refused", F.DNS_REFUSED_ERROR, "REFUSED"),
    ("noanswer", F.DNS_NO_ANSWER, "NOERROR"),
])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rcode_is_data(vantage, behaviour, cls, rcode, transport):  # noqa: F811
    with HostileDns(behaviour) as server:
        r = await one(check(getattr(server, transport)), vantage)
    assert (r.failure.cls, r.failure.operation) == (cls, Op.DNS_ROUND_TRIP)
    assert r.facts["rcode"] == rcode and r.facts["answers"] == []


@pytest.mark.parametrize("behaviour, cls", [
    ("wrong_id", F.DNS_REPLY_WITH_WRONG_QUERY_ID),
    ("junk", F.DNS_MALFORMED),
    ("silent", F.GENERIC_TIMEOUT_ERROR),
])
async def test_tcp_hostile(vantage, behaviour, cls):  # noqa: F811
    with HostileDns(behaviour) as server:
        r = await one(check(server.tcp, timeout=0.6), vantage)
    assert (r.failure.cls, r.failure.operation) == (cls, Op.DNS_ROUND_TRIP)
    assert "connect" in r.phases


async def test_udp_closed_port_is_refused_not_a_timeout(vantage):  # noqa: F811
    r = await one(check(f"udp://127.0.0.1:{closed_port()}", timeout=1), vantage)
    assert (r.failure.cls, r.failure.operation) == (F.CONNECTION_REFUSED, Op.DNS_ROUND_TRIP)


async def test_truncated_reply_is_retried_over_tcp_and_both_are_kept(vantage):  # noqa: F811
    with HostileDns("truncate") as server:
        r = await one(check(server.udp), vantage)
    assert r.ok, r.failure
    assert r.facts["truncated"] is True
    assert "TC" in r.facts["udp"]["flags"] and r.facts["udp"]["answers"] == []
    assert r.facts["replies"][0]["tc"] is True
    assert r.facts["addresses"] == [TRUE_A]  # from the TCP retry
    assert set(r.phases) == {"connect", "dns_round_trip"}


async def test_racing_injector_is_caught(unbound, vantage):  # noqa: F811
    with HostileDns("inject", upstream=("127.0.0.1", unbound.port), forged_ttl=200) as injector:
        r = await one(check(injector.udp, injection_window=0.5), vantage)
    # The forged reply won the race, as it does against any stub resolver...
    assert r.ok and r.facts["addresses"] == [FORGED_A]
    # ...but the true one was still listened for, and the pair is the evidence.
    forged, true = r.facts["replies"]
    assert forged["status"] == "accepted" and forged["addresses"] == [FORGED_A] and forged["ip_ttl"] == 200
    assert true["status"] == "duplicate" and true["addresses"] == [TRUE_A] and true["differs"] is True
    assert true["ip_ttl"] != 200 and true["rtt_s"] >= forged["rtt_s"]
    assert r.facts["injection"] is True


async def test_identical_duplicate_is_not_injection(vantage):  # noqa: F811
    with HostileDns("duplicate") as server:
        r = await one(check(server.udp), vantage)
    assert [x["status"] for x in r.facts["replies"]] == ["accepted", "duplicate"]
    assert r.facts["replies"][1]["differs"] is False and r.facts["injection"] is False


# --- DoT and DoH failures ----------------------------------------------------------------------


@pytest.mark.parametrize("leaf, cls", [
    ("unknown_ca", F.SSL_UNKNOWN_AUTHORITY),
    ("wrong_host", F.SSL_INVALID_HOSTNAME),
    ("expired", F.SSL_INVALID_CERTIFICATE),
])
async def test_dot_handshake_failures(pki, vantage, serve, leaf, cls):  # noqa: F811
    server = await serve(TcpServer(hold_open, ssl_context=server_context(getattr(pki, leaf))))
    r = await one(check(f"tls://127.0.0.1:{server.port}#localhost"), vantage)
    assert (r.failure.cls, r.failure.operation) == (cls, Op.TLS_HANDSHAKE)
    assert set(r.phases) == {"connect", "tls"}
    assert r.facts["verified"] is False and r.facts["chain_sha256"]  # the chain shown is kept


async def test_dot_connection_refused(vantage):  # noqa: F811
    r = await one(check(f"tls://127.0.0.1:{closed_port()}#localhost"), vantage)
    assert (r.failure.cls, r.failure.operation) == (F.CONNECTION_REFUSED, Op.CONNECT)


@pytest.mark.parametrize("behaviour, cls, operation", [
    ("forbidden", F.HTTP_STATUS, Op.HTTP_ROUND_TRIP),
    ("html", F.DNS_MALFORMED, Op.DNS_ROUND_TRIP),
    ("oversized", F.RESPONSE_TOO_LARGE, Op.READ),
    ("gzip_bomb", F.RESPONSE_TOO_LARGE, Op.READ),
    ("brotli", F.HTTP_PROTOCOL_ERROR, Op.READ),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_doh_without_a_dns_answer(pki, vantage, serve, behaviour, cls, operation, method):  # noqa: F811
    server = await serve(HostileDoh(behaviour, server_context(pki.valid)))
    r = await one(check(server.url(), doh_method=method), vantage)
    assert (r.failure.cls, r.failure.operation) == (cls, operation)
    assert r.facts["http_version"] == "HTTP/1.1" and set(r.phases) == {"connect", "tls", "dns_round_trip"}
    assert server.requests == 1


async def test_doh_gzip_bomb_is_capped_on_the_decoded_bytes(pki, vantage, serve):  # noqa: F811
    server = await serve(HostileDoh("gzip_bomb", server_context(pki.valid)))
    gzip_bomb()  # made (and cached) before tracing: the server's 64 MiB of zeros is not the probe's
    tracemalloc.start()
    try:
        r = await one(check(server.url()), vantage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.failure.cls == F.RESPONSE_TOO_LARGE
    assert peak < 16 << 20, f"{peak} bytes at peak: the 64 MiB body was inflated"


async def test_doh_status_is_named(pki, vantage, serve):  # noqa: F811
    server = await serve(HostileDoh("forbidden", server_context(pki.valid)))
    r = await one(check(server.url()), vantage)
    assert r.facts["http_status"] == 403 and "403" in r.failure.detail


# --- rounds: many resolvers, one question --------------------------------------------------


async def test_round_of_honest_resolvers_is_consistent(unbound, vantage):  # noqa: F811
    resolvers = [unbound.udp, unbound.tcp, unbound.tls("localhost"), unbound.https()]
    results = judged(await run_dns_round(check(*resolvers), vantage, deadline=time.monotonic() + 2))
    *per_resolver, comparison = results
    assert [r.target for r in per_resolver] == resolvers and all(r.ok for r in per_resolver)
    assert len({r.facts["round_id"] for r in results}) == 1
    assert comparison.target == NAME and comparison.facts["role"] == "comparison"
    assert comparison.facts["consistent"] is True and comparison.facts["reasons"] == []
    assert comparison.ok and comparison.verdict.name is VerdictName.OK


async def test_round_with_a_lying_resolver_names_the_forged_ip(unbound, liar, vantage):  # noqa: F811
    results = judged(await run_dns_round(check(unbound.udp, liar.udp, unbound.https()), vantage, deadline=time.monotonic() + 2))
    comparison = results[-1]
    assert comparison.facts["consistent"] is False
    assert comparison.facts["forged_ips"] == [FORGED_A]
    forged = [x for x in comparison.facts["reasons"] if x["rule"] == "forged_ip"]
    assert forged == [{"rule": "forged_ip", "resolvers": [liar.udp], "addresses": [FORGED_A], "detail": forged[0]["detail"]}]
    assert comparison.verdict.name is VerdictName.DNS_POISONING and not comparison.ok


async def test_round_nxdomain_against_answers(unbound, vantage):  # noqa: F811
    with HostileDns("nxdomain") as blocker:
        comparison = judged(await run_dns_round(check(unbound.udp, blocker.udp), vantage, deadline=time.monotonic() + 2))[-1]
    assert [x["rule"] for x in comparison.facts["reasons"]] == ["nxdomain_vs_answers"]
    assert comparison.verdict.name is VerdictName.DNS_BLOCKING


async def test_round_encrypted_dns_blocked(unbound, vantage):  # noqa: F811
    comparison = judged(await run_dns_round(check(unbound.udp, f"tls://127.0.0.1:{closed_port()}#localhost"), vantage, deadline=time.monotonic() + 2))[-1]
    assert comparison.facts["consistent"] is True
    assert comparison.verdict.name is VerdictName.ENCRYPTED_DNS_BLOCKED


async def test_probe_dns_returns_the_comparison_unjudged(unbound, liar, vantage):  # noqa: F811
    c = check(unbound.udp, liar.udp)
    result = await probe_dns(c, vantage, deadline=time.monotonic() + 2)
    assert result.facts["role"] == "comparison" and result.verdict is None and "consistent" not in result.facts
    assert result.ok  # every resolver answered; whether one lies is the judge step's to say


def judged(results: list[ProbeResult]) -> list[ProbeResult]:
    """The round as the judge step leaves it, with no other vantage to compare with."""
    judge_run(results).apply(results)
    return results

