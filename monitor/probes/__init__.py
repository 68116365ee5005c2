"""Probes: one module per kind, one signature (DESIGN §3.1), and the runner that calls them.

    async def probe_<kind>(check, vantage, *, deadline: float) -> ProbeResult

`deadline` is a time.monotonic() instant; a probe keeps to it and returns what the network
did as data. `run_probe` is the only caller the rest of monitor needs: it sets the deadline,
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
from monitor.probes.dns import probe_dns
from monitor.probes.goproxy import probe_goproxy
from monitor.probes.http import probe_http
from monitor.probes.tcp import probe_tcp
from monitor.probes.tls import probe_tls
from monitor.vantage import Vantage

__all__ = ["PROBES", "measure", "run_probe", "probe_tcp", "probe_tls", "probe_http", "probe_goproxy", "probe_dns"]

log = logging.getLogger(__name__)

Probe = Callable[..., Awaitable[ProbeResult]]
PROBES: dict[str, Probe] = {"tcp": probe_tcp, "tls": probe_tls, "http": probe_http, "goproxy": probe_goproxy, "dns": probe_dns}

# When the runner has to write the failure itself it cannot know the phase; it names the
# operation the kind is about. Every kind in PROBES needs one (tests/test_probe_runner.py).
_MAIN_OPERATION = {
    "tcp": Operation.CONNECT,
    "tls": Operation.TLS_HANDSHAKE,
    "http": Operation.HTTP_ROUND_TRIP,
    "goproxy": Operation.HTTP_ROUND_TRIP,
    "dns": Operation.DNS_ROUND_TRIP,
}

# Probes cap every step at the deadline themselves, naming the phase that ran out; the
# runner's guard fires this much later, only if a probe failed to.
_GUARD_GRACE = 0.25


async def run_probe(check: Check, vantage: Vantage, *, agent: str = "") -> ProbeResult:
    deadline = time.monotonic() + check.timeout
    fallback = Measurement(check, vantage, deadline)  # started now, used only if the probe cannot answer
    guard = asyncio.timeout(check.timeout + _GUARD_GRACE)
    try:
        async with guard:
            result = await PROBES[check.kind](check, vantage, deadline=deadline)
    except Exception as exc:
        if guard.expired():
            detail = f"probe overran its {check.timeout:g}s deadline"
            result = fallback.result(Failure(FailureClass.GENERIC_TIMEOUT_ERROR, _MAIN_OPERATION[check.kind], detail))
        else:
            log.exception("probe %s (%s) from vantage %s failed with a bug", check.name, check.kind, vantage.name)
            detail = f"{type(exc).__name__}: {exc}"
            result = fallback.result(Failure(FailureClass.INTERNAL_ERROR, _MAIN_OPERATION[check.kind], detail))
    result.agent = agent
    return result


async def measure(check: TcpCheck | TlsCheck | HttpCheck, vantage: Vantage, *, agent: str = "") -> list[ProbeResult]:
    """Every result one run of `check` produces (a comparing kind yields several)."""
    return [await run_probe(check, vantage, agent=agent)]
