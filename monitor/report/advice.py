"""Per-network module-proxy advice: from what each network's goproxy checks saw of each proxy,
the GOPROXY list to use there, and which proxies to avoid and why.

The go command walks GOPROXY in order: after an entry followed by ',' it tries the next one
only when that entry answered 404 or 410 (not found); after '|' on any error. `direct` fetches
from the origin VCS, `off` forbids downloads. So:
- a proxy that served tampered bytes is never recommended, however available: verification
  (GOSUMDB) caught it, and the fix is another mirror, never GOSUMDB=off or GOFLAGS=-insecure;
- a proxy that failed more often than it served (USABLE_AVAILABILITY) is left out, with how it
  failed (the commonest failure class and operation, and the censorship verdict if any);
- the rest are listed best first (health score, then p95 fetch time), each followed by '|'
  when it failed with errors from this network (so those fall through to the next proxy)
  and by ',' when it only ever said "not found"; the list ends with ',direct' as the go
  command's default does, for modules no proxy has (and GOPRIVATE ones).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from monitor.report.score import CENSORSHIP, Score

USABLE_AVAILABILITY = 0.5
NOT_FOUND = "module_not_found"
NEVER = "Never set GOSUMDB=off or GOFLAGS=-insecure to get past a checksum mismatch: it is what tampering looks like. Keep verification on and change the mirror."


@dataclass(frozen=True)
class ProxyView:
    proxy: str
    asked: int  # goproxy runs that asked it
    served: int
    fetch_p95: float | None  # seconds for the module's .info, .mod and .zip
    failures: Counter[str]  # "class@operation" -> runs
    verdicts: Counter[str]
    score: Score

    @property
    def availability(self) -> float:
        return self.served / self.asked if self.asked else 0.0

    @property
    def tampered(self) -> int:
        return self.verdicts.get("module_tampered", 0)

    @property
    def errors(self) -> int:
        """Failures other than "not found": what only '|' falls through."""
        return sum(n for key, n in self.failures.items() if not key.startswith(NOT_FOUND + "@"))


@dataclass(frozen=True)
class Advice:
    network: str
    goproxy: str  # the value of GOPROXY to set
    use: list[ProxyView]
    avoid: list[tuple[ProxyView, str]] = field(default_factory=list)  # (proxy, why)


def advise(network: str, proxies: list[ProxyView]) -> Advice:
    use: list[ProxyView] = []
    avoid: list[tuple[ProxyView, str]] = []
    for p in proxies:
        if p.tampered:
            avoid.append((p, f"served tampered modules in {p.tampered} of {p.asked} fetches (module_tampered): do not use it"))
        elif p.availability < USABLE_AVAILABILITY:
            avoid.append((p, _how_it_failed(p)))
        else:
            use.append(p)
    use.sort(key=lambda p: (-(p.score.value or 0.0), p.fetch_p95 if p.fetch_p95 is not None else float("inf"), p.proxy))
    avoid.sort(key=lambda item: item[0].proxy)
    entries = []
    for i, p in enumerate(use):
        entries.append(p.proxy)
        if i + 1 < len(use):
            entries.append("|" if p.errors else ",")
    goproxy = "".join(entries) + ",direct" if use else "direct"
    return Advice(network, goproxy, use, avoid)


def _how_it_failed(p: ProxyView) -> str:
    failed = p.asked - p.served
    share = failed / p.asked if p.asked else 0.0
    if not p.failures:
        return f"{share:.0%} of fetches failed"
    (top, n), = p.failures.most_common(1)
    cls, _, operation = top.partition("@")
    if cls == NOT_FOUND and n == failed:
        return f"does not serve the module: not found in {share:.0%} of fetches"
    censorship = [(v, k) for v, k in p.verdicts.most_common() if v in CENSORSHIP]
    why = f" (verdict {censorship[0][0]})" if censorship else ""
    what = "blocked" if censorship else "unreachable"
    return f"{what}: {share:.0%} of fetches failed, mostly {cls} during {operation}{why}"
