"""Probes: one module per kind, one signature (DESIGN §3.1), and the runner that calls them.

    async def probe_<kind>(check, vantage, *, deadline: float) -> ProbeResult

`deadline` is a time.monotonic() instant; a probe keeps to it and returns what the network
did as data. `measure` is the only caller the rest of monitor needs: it sets the deadline,
stands guard in case a probe overruns it, and turns a bug (any exception) into internal_error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from monitor.config import Check
from monitor.model import Failure, FailureClass, Operation, ProbeResult
from monitor.probes._measure import Measurement
from monitor.probes.dns import probe_dns, run_dns_round
from monitor.probes.git import probe_git
from monitor.probes.goproxy import probe_goproxy
from monitor.probes.http import probe_http
from monitor.probes.proxy import probe_proxy
from monitor.probes.site import probe_site, run_site_round
from monitor.probes.tcp import probe_tcp
from monitor.probes.tls import probe_tls
from monitor.vantage import Vantage

__all__ = ["PROBES", "ROUNDS", "measure", "run_probe", "probe_tcp", "probe_tls", "probe_http", "probe_goproxy", "probe_dns", "probe_proxy", "probe_git", "probe_site"]

log = logging.getLogger(__name__)

Probe = Callable[..., Awaitable[ProbeResult]]
PROBES: dict[str, Probe] = {
    "tcp": probe_tcp, "tls": probe_tls, "http": probe_http, "goproxy": probe_goproxy, "dns": probe_dns,
    "proxy": probe_proxy, "git": probe_git, "site": probe_site,
}
# Kinds whose one run yields several results (all sharing facts.round_id, the summary last).
ROUNDS: dict[str, Callable[..., Awaitable[list[ProbeResult]]]] = {"dns": run_dns_round, "site": run_site_round}

# When the runner has to write the failure itself it cannot know the phase; it names the
# operation the kind is about. Every kind in PROBES needs one (tests/test_probe_runner.py).
_MAIN_OPERATION = {
    "tcp": Operation.CONNECT,
    "tls": Operation.TLS_HANDSHAKE,
    "http": Operation.HTTP_ROUND_TRIP,
    "goproxy": Operation.HTTP_ROUND_TRIP,
    "dns": Operation.DNS_ROUND_TRIP,
    "proxy": Operation.PROXY_CONNECT,
    "git": Operation.HTTP_ROUND_TRIP,
    "site": Operation.TLS_HANDSHAKE,
}

# Probes cap every step at the deadline themselves, naming the phase that ran out; the
# runner's guard fires this much later, only if a probe failed to.
_GUARD_GRACE = 0.25


async def run_probe(check: Check, vantage: Vantage, *, agent: str = "") -> ProbeResult:
    """One kind's probe under the runner's guard; for a round-based kind, its summary result."""
    return (await _guarded(check, vantage, agent, lambda deadline: _single(check, vantage, deadline)))[-1]


async def measure(check: Check, vantage: Vantage, *, agent: str = "") -> list[ProbeResult]:
    """Every result one run of `check` produces: one, or for a round-based kind (dns) one per
    resolver plus the comparison, last. This is what the daemon and `probe --once` call."""
    if check.kind in ROUNDS:
        return await _guarded(check, vantage, agent, lambda deadline: ROUNDS[check.kind](check, vantage, deadline=deadline))
    return await _guarded(check, vantage, agent, lambda deadline: _single(check, vantage, deadline))


async def _single(check: Check, vantage: Vantage, deadline: float) -> list[ProbeResult]:
    return [await PROBES[check.kind](check, vantage, deadline=deadline)]


async def _guarded(
    check: Check, vantage: Vantage, agent: str, call: Callable[[float], Awaitable[list[ProbeResult]]]
) -> list[ProbeResult]:
    """Set the deadline, stand guard in case the probe overruns it, and turn a bug into an
    internal_error result; stamp every result with the agent."""
    deadline = time.monotonic() + check.timeout
    fallback = Measurement(check, vantage, deadline)  # started now, used only if the probe cannot answer
    guard = asyncio.timeout(check.timeout + _GUARD_GRACE)
    try:
        async with guard:
            results = await call(deadline)
    except Exception as exc:
        if guard.expired():
            detail = f"probe overran its {check.timeout:g}s deadline"
            results = [fallback.result(Failure(FailureClass.GENERIC_TIMEOUT_ERROR, _MAIN_OPERATION[check.kind], detail))]
        else:
            log.exception("probe %s (%s) from vantage %s failed with a bug", check.name, check.kind, vantage.name)
            detail = f"{type(exc).__name__}: {exc}"
            results = [fallback.result(Failure(FailureClass.INTERNAL_ERROR, _MAIN_OPERATION[check.kind], detail))]
    for result in results:
        result.agent = agent
    return results
