"""The site check on loopback: unbound (UDP, DoT, DoH) answers the site's name with 127.0.0.1,
where a real HTTPS server holds a certificate for the site and the control; with an SNI
filter in front of it, the target SNI is reset while the control completes. Each round is
judged as the judge step does (monitor/analysis/runs.py), with no other vantage."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from monitor.analysis.runs import judge_run
from monitor.config import SiteCheck
from monitor.probes import measure
from monitor.probes._sni import ResidualBlocking
from monitor.probes.site import run_site_round
from monitor.vantage import Vantage
from tests.conftest import require
from tests.servers.certs import Pki, TestCA
from tests.servers.dns_unbound import UNBOUND, Unbound, run_unbound
from tests.servers.http import HttpServer
from tests.servers.sni_front import SniFilter
from tests.servers.tcp import server_context

SITE, CONTROL = "site.test", "control.test"


@pytest.fixture(scope="module")
def unbound(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    require(UNBOUND, "unbound is not installed (apt-get install unbound)")
    with run_unbound(tmp_path_factory.mktemp("site-unbound"), [f"{SITE}. 300 IN A 127.0.0.1"], tls=pki.valid) as server:
        yield server


@pytest.fixture(scope="module")
def site_context(tmp_path_factory: pytest.TempPathFactory, pki: Pki):
    ca = TestCA(tmp_path_factory.mktemp("site-ca"), name="site test CA")
    return ca, server_context(ca.issue(SITE, CONTROL, stem="site"), alpn=["http/1.1"])


def site_check(unbound: Unbound, port: int, **overrides) -> SiteCheck:
    fields = {
        "name": "site", "kind": "site", "interval": 60, "timeout": 6, "vantages": ["local"], "domain": SITE, "control_sni": CONTROL,
        "port": port, "path": "/status/200", "resolvers": [unbound.udp], "references": [unbound.tls("localhost"), unbound.https()],
        "attempts": 2, "connect_timeout": 1, "tls_timeout": 1, "read_timeout": 1,
    }
    return SiteCheck(**(fields | overrides))


def vantage_for(pki: Pki, ca: TestCA) -> Vantage:
    return Vantage(name="local", extra_ca_files=(str(pki.ca_path), str(ca.path)))


async def run(check: SiteCheck, vantage: Vantage):
    results = judged(await measure(check, vantage, agent="t"))
    return results, results[-1]


def judged(results):
    judge_run(results).apply(results)
    return results


async def test_a_reachable_site_is_ok_in_one_attempt(unbound, site_context, pki, serve):
    ca, context = site_context
    server = await serve(HttpServer(ssl_context=context))
    results, summary = await run(site_check(unbound, server.port), vantage_for(pki, ca))
    assert summary.kind == "site" and summary.facts["role"] == "summary"
    assert summary.verdict is not None and summary.verdict.name.value == "ok", summary.verdict
    assert summary.facts["attempts"] == 1
    assert summary.facts["proven_ips"] == ["127.0.0.1"] and summary.facts["fetched"]
    roles = [r.facts["role"] for r in results]
    assert roles == ["resolver"] * 3 + ["handshake", "fetch", "summary"]
    assert len({r.facts["round_id"] for r in results}) == 1
    [handshake] = [r for r in results if r.facts["role"] == "handshake"]
    assert {o["label"] for o in handshake.facts["sni_experiment"]} == {"target", "control", "none"}


async def test_target_sni_reset_while_control_completes_is_sni_blocking(unbound, site_context, pki, serve):
    ca, context = site_context
    backend = await serve(HttpServer(ssl_context=context))
    censor = await serve(SniFilter(backend.port, {SITE}))
    _, summary = await run(site_check(unbound, censor.port), vantage_for(pki, ca))
    assert summary.verdict is not None and summary.verdict.name.value == "sni_blocking", summary.verdict
    assert summary.facts["subtype"] == "rst"
    assert summary.facts["attempts"] == 2
    assert any("tls: 127.0.0.1" in line for line in summary.verdict.evidence)
    assert not summary.ok


async def test_the_round_keeps_to_its_deadline_when_everything_is_silent(unbound, site_context, pki, serve):
    ca, _ = site_context
    from tests.servers.tcp import TcpServer, silent

    quiet = await serve(TcpServer(silent))
    _, summary = await run(site_check(unbound, quiet.port, timeout=3), vantage_for(pki, ca))
    # Had the round overrun, the runner's guard would have cut it to a bare timeout result.
    assert summary.facts.get("role") == "summary", summary.failure
    assert summary.verdict is not None and summary.verdict.name.value != "ok"


async def test_a_later_round_within_the_holdoff_sends_no_control_to_a_triggered_address(unbound, site_context, pki, serve):
    """Residual blocking is remembered across rounds: a real censor keeps blocking the
    (address, port) for minutes after a trigger, so the next round must not mistake that for
    the control failing too."""
    ca, context = site_context
    backend = await serve(HttpServer(ssl_context=context))
    censor = await serve(SniFilter(backend.port, {SITE}))
    check, vantage, memory = site_check(unbound, censor.port), vantage_for(pki, ca), ResidualBlocking()
    await run_site_round(check, vantage, deadline=time.monotonic() + check.timeout, residual=memory)
    later = judged(await run_site_round(check, vantage, deadline=time.monotonic() + check.timeout, residual=memory))
    experiments = [o for r in later if r.facts.get("role") == "handshake" for o in r.facts["sni_experiment"]]
    controls = [o for o in experiments if o["label"] == "control"]
    assert controls and all(o["skipped"] and o["skipped"]["reason"] == "residual_blocking_holdoff" for o in controls), controls
    # The control that completed in the first round is carried forward: still SNI blocking.
    assert all(o["carried"]["sni"] == CONTROL and 0 <= o["carried"]["age_s"] < check.holdoff for o in controls), controls
    assert later[-1].verdict is not None and later[-1].verdict.name.value == "sni_blocking", later[-1].verdict
    assert any("carried forward" in line for line in later[-1].verdict.evidence)


async def test_a_working_site_whose_control_fails_is_ok(unbound, site_context, pki, serve):
    """The server resets any ClientHello but the site's: the control SNI fails, the site works."""
    ca, context = site_context
    backend = await serve(HttpServer(ssl_context=context))
    picky = await serve(SniFilter(backend.port, {CONTROL}))
    results, summary = await run(site_check(unbound, picky.port), vantage_for(pki, ca))
    assert summary.ok and summary.verdict.name.value == "ok" and summary.verdict.confidence.value == "medium", summary.verdict
    assert summary.facts["attempts"] == 1  # a failing control does not make the round repeat
    assert any(f"control {CONTROL} failed" in line for line in summary.verdict.evidence)


async def test_a_failing_summary_carries_the_failure_its_verdict_rests_on(unbound, site_context, pki, serve):
    ca, context = site_context
    backend = await serve(HttpServer(ssl_context=context))
    censor = await serve(SniFilter(backend.port, {SITE}))
    _, summary = await run(site_check(unbound, censor.port), vantage_for(pki, ca))
    assert not summary.ok and (summary.failure.cls.value, summary.failure.operation.value) == ("connection_reset", "tls_handshake")
