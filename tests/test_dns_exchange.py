"""Reply acceptance, rcode-as-data, and the failure classes of bad DNS wire input.

The enumeration walks dnspython's exception hierarchies that reply parsing can raise and
fails if one of them would come out as internal_error (e.g. after a dnspython upgrade)."""

from __future__ import annotations

import random

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import pytest

from monitor.model import FailureClass as F
from monitor.probes._classify import classify
from monitor.probes.dns_errors import WrongQueryId
from monitor.probes.dns_exchange import accept_reply, make_query, reply_facts, reply_failure


def test_accepts_the_reply_to_its_query():
    q = make_query("example.test", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.test.", 30, "IN", "A", "192.0.2.7"))
    accepted = accept_reply(q, r.to_wire())
    assert reply_facts(accepted) == {
        "rcode": "NOERROR",
        "flags": ["QR", "RD"],
        "answers": [{"name": "example.test.", "type": "A", "ttl": 30, "data": "192.0.2.7"}],
        "addresses": ["192.0.2.7"],
    }
    assert reply_failure(accepted, "A") is None


def test_wrong_id_and_wrong_question_are_told_apart():
    q = make_query("example.test", "A")
    r = dns.message.make_response(q)
    r.id = (q.id + 1) % 65536
    with pytest.raises(WrongQueryId):
        accept_reply(q, r.to_wire())
    other = dns.message.make_response(make_query("other.test", "A"))
    other.id = q.id
    with pytest.raises(dns.query.BadResponse):
        accept_reply(q, other.to_wire())


@pytest.mark.parametrize("rcode, cls", [
    (dns.rcode.NXDOMAIN, F.DNS_NXDOMAIN_ERROR),
    (dns.rcode.SERVFAIL, F.DNS_SERVFAIL_ERROR),
    (dns.rcode.REFUSED, F.DNS_REFUSED_ERROR),
    (dns.rcode.NOTIMP, F.DNS_REFUSED_ERROR),
    (dns.rcode.FORMERR, F.DNS_MALFORMED),
    (dns.rcode.YXDOMAIN, F.DNS_SERVFAIL_ERROR),
])
def test_rcode_is_a_failure_class(rcode, cls):
    r = dns.message.make_response(make_query("example.test", "A"))
    r.set_rcode(rcode)
    assert reply_failure(r, "A").cls is cls


def test_noerror_without_the_asked_type_is_no_answer():
    r = dns.message.make_response(make_query("example.test", "A"))
    r.answer.append(dns.rrset.from_text("example.test.", 30, "IN", "CNAME", "elsewhere.test."))
    assert reply_failure(r, "A").cls is F.DNS_NO_ANSWER
    assert reply_failure(r, "CNAME") is None


def _dns_exception_types() -> list[type[BaseException]]:
    modules = (dns.exception, dns.message, dns.name, dns.query)
    found = {v for m in modules for v in vars(m).values() if isinstance(v, type) and issubclass(v, dns.exception.FormError)}
    return sorted(found, key=lambda t: f"{t.__module__}.{t.__qualname__}")


@pytest.mark.parametrize("t", _dns_exception_types(), ids=lambda t: f"{t.__module__}.{t.__name__}")
def test_every_wire_error_is_malformed(t):
    assert classify(t())[0] is F.DNS_MALFORMED


def test_wrong_id_class():
    assert classify(WrongQueryId("x"))[0] is F.DNS_REPLY_WITH_WRONG_QUERY_ID


def test_whatever_junk_arrives_it_is_classified():
    """Mangled replies (seeded, so reproducible): every rejection has a class, none is a bug."""
    rng = random.Random(7)
    q = make_query("example.test", "A")
    good = bytearray(dns.message.make_response(q).to_wire())
    seen = set()
    for i in range(2000):
        if i % 2:
            wire = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        else:
            wire = bytearray(good)
            for _ in range(3):
                wire[rng.randrange(len(wire))] = rng.getrandbits(8)
            wire = bytes(wire)
        try:
            accept_reply(q, wire)
        except dns.exception.DNSException as e:
            cls, _ = classify(e)
            assert cls in (F.DNS_MALFORMED, F.DNS_REPLY_WITH_WRONG_QUERY_ID), (type(e), wire)
            seen.add(cls)
    assert seen == {F.DNS_MALFORMED, F.DNS_REPLY_WITH_WRONG_QUERY_ID}
