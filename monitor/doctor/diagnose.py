"""What the measurements mean for `go mod download` (no I/O): for each module, the hops the go
command walks with their outcome and verdict, whether the download would succeed and where it
fails; then the fixes, each built from what worked from here, and the fixes refused.

A hop's verdict is its host's (the site round: DNS, TCP, TLS, SNI, chain) when that round
names a cause, else the probe's own (a tampered module, a failing proxy), else `failing`:
a failure is never passed off as ok.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.doctor.goenv import GoEnv
from monitor.doctor.gomod import Requirement
from monitor.doctor.plan import Plan, Route, host_port
from monitor.doctor.run import Direct, Fetch, Host, Measured
from monitor.doctor.verdicts import HostVerdict, judge_env_proxy, judge_fetch, judge_host, judge_ssh, unexplained
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName
from monitor.probes._goproxy_list import DIRECT, OFF

V = VerdictName

# Exit codes (docs/doctor.md); 1 and 2 are the CLI's own: runtime failure, usage error.
EXIT_HEALTHY = 0
EXIT_FIXABLE = 3  # go mod download fails from here; doctor found a fix that works from here
EXIT_NO_FIX = 4  # go mod download fails from here; nothing doctor tried works
EXIT_DEGRADED = 5  # go mod download works, but a hop on its way fails (e.g. a '|' fall-through)

_SUMDB_REQUESTS = ("sumdb_supported", "lookup", "tile")


@dataclass
class Hop:
    role: str  # env_proxy | goproxy | discovery | git_https | git_ssh | sumdb | off
    target: str
    status: str  # ok | not_found | failed | unmeasured
    reached: bool = False  # the go command would get here for this module
    failure: Failure | None = None
    verdict: Verdict | None = None
    separator: str | None = None  # after a GOPROXY entry: ',' or '|'
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "target": self.target, "status": self.status, "reached": self.reached,
            "failure": self.failure.to_json() if self.failure else None,
            "verdict": self.verdict.to_json() if self.verdict else None,
            "separator": self.separator, "notes": self.notes,
        }


@dataclass
class ModuleOutcome:
    module: Requirement
    version: str  # as resolved (latest -> the version picked)
    private: bool
    sumdb: str | None
    ok: bool
    summary: str
    hops: list[Hop]

    @property
    def failed_hop(self) -> Hop | None:
        return next((h for h in self.hops if h.reached and h.status == "failed"), None)

    def to_json(self) -> dict[str, Any]:
        failed = self.failed_hop
        return {
            "path": self.module.path, "version": self.version, "private": self.private, "sumdb": self.sumdb,
            "ok": self.ok, "summary": self.summary, "failed_hop": self.hops.index(failed) if failed and not self.ok else None,
            "hops": [h.to_json() for h in self.hops],
        }


@dataclass
class Fix:
    kind: str  # goproxy | goprivate | gonosumdb | git | trust | dns | env_proxy
    command: str
    why: str
    verified: bool | None = None  # measured to work from here (None: cannot be measured)

    @property
    def definitive(self) -> bool:
        return self.kind in ("goproxy", "goprivate", "gonosumdb", "git") and self.verified is not False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.command, "why": self.why, "verified": self.verified}


@dataclass
class Diagnosis:
    vantage: str
    compared_with: list[str]
    goenv: GoEnv
    modules: list[ModuleOutcome]
    hosts: list[dict[str, Any]]
    fixes: list[Fix]
    refused: list[dict[str, str]]
    warnings: list[str]
    exit_code: int

    @property
    def healthy(self) -> bool:
        return self.exit_code == EXIT_HEALTHY


# ---------------------------------------------------------------------------------------------


class _Context:
    """One vantage's measurements with its peers', and every verdict asked once."""

    def __init__(self, plan: Plan, m: Measured, peers: list[Measured]):
        self.plan, self.m, self.peers = plan, m, peers
        self._hosts: dict[tuple[str, int], HostVerdict] = {}

    def host(self, url: str) -> tuple[Host | None, HostVerdict | None]:
        key = host_port(url)
        h = self.m.hosts.get(key)
        if h is None or not h.results:
            return h, None
        if key not in self._hosts:
            peer_summaries = [p.hosts[key].results[-1] for p in self.peers if key in p.hosts and p.hosts[key].results]
            self._hosts[key] = judge_host(h.results, peer_summaries)
        return h, self._hosts[key]

    def explain(self, url: str, failure: Failure | None, own: Verdict | None) -> Verdict:
        """A failed hop's verdict: its host's cause, else the probe's, else failing."""
        _, hv = self.host(url)
        if hv is not None and hv.explains and (own is None or own.name not in (V.MODULE_TAMPERED, V.PROXY_FAILURE)):
            return hv.verdict
        return unexplained(own, failure)


def fetch_status(result: ProbeResult | None) -> tuple[str, Failure | None, bool]:
    """(status of the module through this proxy, the failure, whether the checksum database
    is what failed — the module itself came)."""
    if result is None:
        return "unmeasured", None, False
    if result.ok:
        return "ok", None, False
    failure = result.failure
    requests = result.facts.get("requests") or []
    if failure is None or failure.cls is FailureClass.CHECKSUM_MISMATCH:  # the bytes, not the database
        return "failed", failure, False
    if requests and requests[-1].get("what") in _SUMDB_REQUESTS:
        return "ok", failure, True
    if failure is not None and failure.cls is FailureClass.MODULE_NOT_FOUND:
        return "not_found", failure, False
    if failure is not None and failure.cls is FailureClass.HTTP_STATUS and result.facts.get("status_code") in (404, 410):
        return "not_found", failure, False
    return "failed", failure, False


def _proxy_hop(ctx: _Context, route: Route, url: str, separator: str | None) -> tuple[Hop, Failure | None]:
    fetch = ctx.m.fetches.get((url, route.module.path))
    result = fetch.result if fetch else None
    status, failure, sumdb_failed = fetch_status(result)
    hop = Hop("goproxy", url, status, separator=separator)
    if status == "failed" and result is not None:
        peers = [p.fetches[(url, route.module.path)].result for p in ctx.peers if (url, route.module.path) in p.fetches]
        hop.failure = failure
        hop.verdict = ctx.explain(url, failure, judge_fetch(result, [r for r in peers if r is not None]))
    elif status == "not_found":
        hop.failure = failure
        hop.notes.append("not found here (404/410)" + (": the go command tries the next entry" if separator else ""))
    if result is not None and result.verdict is not None and result.verdict.name is V.OK and result.verdict.evidence:
        hop.notes.append(result.verdict.evidence[0])
    return hop, failure if sumdb_failed else None


def _direct_hops(ctx: _Context, route: Route) -> list[Hop]:
    d = ctx.m.directs.get(route.module.path)
    if d is None:
        return [Hop("direct", route.module.path, "unmeasured")]
    hops: list[Hop] = []
    if d.target.discovery:
        hop = Hop("discovery", d.target.discovery, "ok" if d.discovery is not None and d.discovery.ok else "failed")
        if d.discovery is not None and d.discovery.failure is not None:
            hop.failure = d.discovery.failure
            hop.verdict = ctx.explain(d.target.discovery, d.discovery.failure, None)
        elif d.problem and d.check is None:
            hop.status = "failed"
            hop.failure = Failure(FailureClass.HTTP_PROTOCOL_ERROR, Operation.VERIFY, d.problem)
            hop.verdict = unexplained(None, hop.failure)
        hops.append(hop)
        if hop.status == "failed":
            return hops
    elif d.problem:
        failure = Failure(FailureClass.HTTP_PROTOCOL_ERROR, Operation.VERIFY, d.problem)
        return [Hop("direct", d.repo or route.module.path, "failed", failure=failure, verdict=unexplained(None, failure))]
    hops.append(_git_hop(ctx, d))
    return hops


def _git_hop(ctx: _Context, d: Direct) -> Hop:
    assert d.transport is not None and d.check is not None
    over_ssh = d.transport.ssh is not None
    part_name = "ssh" if over_ssh else "http"
    target = d.transport.url if over_ssh else (d.check.url or d.transport.url)
    hop = Hop("git_ssh" if over_ssh else "git_https", target, "unmeasured")
    if d.transport.rewrite is not None:
        hop.notes.append(f"git rewrites {d.repo} to {d.transport.url} (url.{d.transport.rewrite.base}.insteadOf in {d.transport.rewrite.origin or 'git config'})")
    if d.result is None:
        return hop
    part = d.result.facts.get(part_name) or {}
    hop.status = "ok" if part.get("ok") else "failed"
    if hop.status == "failed":
        hop.failure = Failure.from_json(part["failure"]) if part.get("failure") else d.result.failure
        if over_ssh:
            https = d.result.facts.get("http") or {}
            peers = [p.directs[d.module.path].result.facts.get("ssh") or {} for p in ctx.peers
                     if d.module.path in p.directs and p.directs[d.module.path].result is not None]
            hop.verdict = judge_ssh(part, bool(https.get("ok")), peers)
        else:
            hop.verdict = ctx.explain(target, hop.failure, None)
    return hop


def _sumdb_hop(ctx: _Context, route: Route, obtained: str | None, sumdb_failure: Failure | None) -> Hop:
    assert route.sumdb is not None
    hop = Hop("sumdb", route.sumdb.base, "unmeasured", reached=obtained is not None)
    lookup = ctx.m.lookups.get(route.module.path)
    if obtained == "direct" and lookup is not None and lookup.result is not None:
        status, failure, _ = fetch_status(lookup.result)
        hop.target = lookup.check.url
        if status == "ok":
            hop.status = "ok"
        else:
            hop.status, hop.failure = "failed", failure
            if status == "not_found":
                hop.verdict = Verdict(V.FAILING, Confidence.HIGH, (f"{route.sumdb.name} does not know {route.module.path}@{route.module.version} (404/410): "
                                                                    "a private module, or one too new for it",))
            else:
                hop.verdict = ctx.explain(route.sumdb.base, failure, None)
        return hop
    verified = [f.result for (_, path), f in ctx.m.fetches.items()
                if path == route.module.path and f.result is not None and (f.result.facts.get("sumdb") or {}).get("verified")]
    if verified:
        used = verified[0].facts["sumdb"]
        hop.status = "ok"
        hop.target = used.get("url", hop.target)
        hop.notes.append(f"{used['name']} tree {used['tree'].split()[0] if isinstance(used.get('tree'), str) else ''}".strip())
    elif sumdb_failure is not None:
        hop.status, hop.failure = "failed", sumdb_failure
        hop.verdict = ctx.explain(route.sumdb.base, sumdb_failure, None)
    else:
        _, hv = ctx.host(route.sumdb.base)
        if hv is not None:
            hop.status = "ok" if hv.verdict.name is V.OK else "failed"
            if hop.status == "failed":
                hop.verdict = unexplained(hv.verdict, None)
            hop.notes.append("judged from its host check: no fetch reached the checksum database")
    return hop


def _walk(ctx: _Context, route: Route) -> ModuleOutcome:
    """The go command's walk down the list for one module, on the measured outcomes."""
    hops: list[Hop] = [_env_proxy_hop(p) for p in ctx.m.env_proxies]
    for h in hops:
        h.reached = True
    reached = not any(h.status == "failed" for h in hops)
    obtained_from: str | None = None
    sumdb_failure: Failure | None = None
    stop_reason = ""
    for i, entry in enumerate(route.entries):
        separator = ("|" if entry.fall_back_on_error else ",") if i + 1 < len(route.entries) else None
        if entry.url == OFF:
            failure = Failure(FailureClass.MODULE_NOT_FOUND, Operation.HTTP_ROUND_TRIP, "GOPROXY=off: module downloads are disabled")
            hop = Hop("off", "off", "failed", reached=reached, failure=failure, verdict=unexplained(None, failure))
            hops.append(hop)
            if reached:
                stop_reason, reached = "GOPROXY reaches off", False
            continue
        if entry.url == DIRECT:
            entry_hops = _direct_hops(ctx, route)
            for h in entry_hops:
                h.reached = reached
                if h.status == "failed":
                    break
            hops += entry_hops
            if reached:
                failed = next((h for h in entry_hops if h.status == "failed"), None)
                if failed is None and all(h.status == "ok" for h in entry_hops):
                    obtained_from = "direct"
                else:
                    stop_reason = "direct fails"
                reached = False
            continue
        hop, fetch_sumdb_failure = _proxy_hop(ctx, route, entry.url, separator)
        hop.reached = reached
        hops.append(hop)
        if not reached:
            continue
        if hop.status == "ok":
            obtained_from, sumdb_failure, reached = entry.url, fetch_sumdb_failure, False
        elif hop.status == "not_found":
            continue
        elif hop.status == "failed" and entry.fall_back_on_error:
            hop.notes.append("'|' after it: the go command tries the next entry")
        else:
            if separator == ",":
                hop.notes.append("',' after it: the go command stops here (it falls through on 404/410 only)")
            stop_reason, reached = "", False
    if route.sumdb is not None:
        hops.append(_sumdb_hop(ctx, route, obtained_from, sumdb_failure))
    version = _resolved_version(ctx, route)
    failed = next((h for h in hops if h.reached and h.status == "failed"), None)
    ok = obtained_from is not None and not (route.sumdb is not None and hops[-1].status == "failed")
    if ok:
        via = "the VCS (direct)" if obtained_from == "direct" else obtained_from
        summary = f"works: fetched through {via}" + (f", verified with {route.sumdb.name}" if route.sumdb else ", not verified (no checksum database for it)")
        if failed is not None:
            summary += f"; but {failed.target} fails on the way ({failed.verdict.name.value if failed.verdict else 'failing'})"
    elif failed is not None:
        summary = f"FAILS at {failed.role} {failed.target}: {failed.failure.cls.value if failed.failure else 'failed'}" + (
            f" during {failed.failure.operation.value}" if failed.failure else "") + (f" ({failed.verdict.name.value})" if failed.verdict else "")
    elif stop_reason:
        summary = f"FAILS: {stop_reason}"
    else:
        summary = "FAILS: not found in any proxy" + (" and direct is not in GOPROXY" if not route.direct else "")
    return ModuleOutcome(route.module, version, route.private, route.sumdb.name if route.sumdb else None, ok, summary, hops)


def _resolved_version(ctx: _Context, route: Route) -> str:
    for (_, path), f in ctx.m.fetches.items():
        if path == route.module.path and f.result is not None and f.result.facts.get("version"):
            return str(f.result.facts["version"])
    return route.module.version


def _env_proxy_hop(p: Any) -> Hop:
    result: ProbeResult | None = p.result
    hop = Hop("env_proxy", p.check.proxy, "unmeasured")
    if result is not None:
        hop.status = "ok" if result.ok else "failed"
        hop.failure = result.failure
        if not result.ok:
            hop.verdict = judge_env_proxy(result)
    return hop


# ---------------------------------------------------------------------------------------------
# The fix


def working_proxies(plan: Plan, m: Measured) -> list[str]:
    """Proxies through which every proxied module was fetched and verified from here, the
    GOPROXY list's own first, then the candidates."""
    proxied = [r for r in plan.routes if not r.private]
    if not proxied:
        return []
    return [p for p in plan.proxies if all(fetch_status(_result(m, p, r.module.path))[0] == "ok" and not fetch_status(_result(m, p, r.module.path))[2]
                                           for r in proxied)]


def _result(m: Measured, proxy: str, path: str) -> ProbeResult | None:
    f = m.fetches.get((proxy, path))
    return f.result if f else None


def recommend_goproxy(plan: Plan, m: Measured, outcomes: list[ModuleOutcome]) -> str | None:
    """A GOPROXY made of what worked from here, when the current one fails or stumbles on
    the way; None when it is fine or nothing works."""
    proxied = [o for o, r in zip(outcomes, plan.routes) if not r.private]
    trouble = any(not o.ok or o.failed_hop is not None for o in proxied)
    if not proxied or not trouble:
        return None
    working = working_proxies(plan, m)
    had_direct = any(r.direct for r in plan.routes if not r.private)
    direct_ok = had_direct and all(
        all(h.status == "ok" for h in o.hops if h.role in ("discovery", "git_https", "git_ssh")) for o, r in zip(outcomes, plan.routes) if not r.private
    )
    entries = working + (["direct"] if direct_ok else [])
    if not working:
        return None
    value = ",".join(entries)
    return None if value == plan.goenv.goproxy else value


def diagnose(plan: Plan, m: Measured, peers: list[Measured], *, recommended: str | None = None, verification: Fetch | None = None) -> Diagnosis:
    ctx = _Context(plan, m, peers)
    outcomes = [_walk(ctx, r) for r in plan.routes]
    fixes: list[Fix] = []
    refused: list[dict[str, str]] = []

    for hop in (h for o in outcomes for h in o.hops if h.role == "env_proxy" and h.status == "failed"):
        fixes.append(Fix("env_proxy", f"unset HTTPS_PROXY https_proxy   # or repair {hop.target}",
                         f"the go command sends every HTTPS request through {hop.target}, which fails: {_said(hop)}"))
    if recommended is not None:
        vstatus = fetch_status(verification.result)[0] if verification is not None else "unmeasured"
        ok = verification is not None and verification.result is not None and verification.result.ok
        what = f"{verification.module.path}@{_version_of(verification)}" if verification is not None else ""
        why = (f"verified from here: {what} fetched through this list as the go command walks it"
               + (f" and checked against {verification.check.sumdb}" if getattr(verification.check, 'sumdb', 'off') != "off" else "")
               if ok else f"the proxies in it worked one by one, but fetching {what} through the list failed ({vstatus})")
        fixes.append(Fix("goproxy", f"export GOPROXY={recommended}", why, verified=ok))
    fixes += _private_fixes(plan, outcomes, ctx)
    fixes += _git_fixes(ctx, outcomes)
    fixes += _host_fixes(ctx, outcomes)
    refused += _refusals(outcomes)

    failing = [o for o in outcomes if not o.ok]
    stumbling = [o for o in outcomes if o.ok and o.failed_hop is not None]
    if failing:
        code = EXIT_FIXABLE if any(f.definitive for f in fixes) else EXIT_NO_FIX
    elif stumbling:
        code = EXIT_DEGRADED
    else:
        code = EXIT_HEALTHY
    hosts = [_host_json(ctx, h) for h in m.hosts.values()]
    return Diagnosis(m.vantage.name, [p.vantage.name for p in peers], plan.goenv, outcomes, hosts, fixes, refused, _warnings(plan.goenv), code)


def _version_of(f: Fetch) -> str:
    return str(f.result.facts.get("version")) if f.result is not None and f.result.facts.get("version") else f.module.version


def _said(hop: Hop) -> str:
    parts = []
    if hop.failure:
        parts.append(f"{hop.failure.cls.value} during {hop.failure.operation.value}")
    if hop.verdict:
        parts.append(hop.verdict.name.value)
    return ", ".join(parts) or "failed"


def _private_fixes(plan: Plan, outcomes: list[ModuleOutcome], ctx: _Context) -> list[Fix]:
    fixes = []
    for o, r in zip(outcomes, plan.routes):
        if r.private or not r.proxies:
            if not r.proxies and r.sumdb is not None and o.ok is False:
                prefix = _prefix(ctx, r)
                fixes.append(Fix("gonosumdb", f"export GONOSUMDB={_joined(plan.goenv.gonosumdb, prefix)}",
                                 f"{r.module.path} is fetched direct (GONOPROXY) but still looked up in {r.sumdb.name}, which cannot know a private module"))
            continue
        proxy_hops = [h for h in o.hops if h.role == "goproxy"]
        git_ok = [h for h in o.hops if h.role in ("git_https", "git_ssh")]
        if proxy_hops and all(h.status == "not_found" for h in proxy_hops) and git_ok and all(h.status == "ok" for h in git_ok):
            prefix = _prefix(ctx, r)
            fixes.append(Fix("goprivate", f"export GOPRIVATE={_joined(plan.goenv.goprivate, prefix)}",
                             f"no proxy knows {r.module.path} (404/410 from each){' while its repository answers' if git_ok else ''}: a private module "
                             "goes direct and must not be sent to the public checksum database (GOPRIVATE sets GONOPROXY and GONOSUMDB)",
                             verified=None))
    return fixes


def _prefix(ctx: _Context, route: Route) -> str:
    d = ctx.m.directs.get(route.module.path)
    if d is not None and d.repo and d.target.repo:
        return d.target.repo.removeprefix("https://").removesuffix(".git")
    return route.module.path


def _joined(existing: str, prefix: str) -> str:
    return ",".join(dict.fromkeys([*(x for x in existing.split(",") if x), prefix]))


def _git_fixes(ctx: _Context, outcomes: list[ModuleOutcome]) -> list[Fix]:
    fixes: list[Fix] = []
    for d in ctx.m.directs.values():
        if d.transport is None or d.transport.ssh is None or d.result is None:
            continue
        ssh, https = d.result.facts.get("ssh") or {}, d.result.facts.get("http") or {}
        if ssh.get("ok") or not https.get("ok"):
            continue
        host = host_port(d.check.url)[0] if d.check and d.check.url else d.transport.ssh.split(":")[0]
        why = f"git reaches {d.transport.url} over SSH, which fails from here ({(ssh.get('failure') or {}).get('class', 'failed')}); HTTPS to the same repository ({d.check.url}) works"
        rule = d.transport.rewrite
        if rule is not None:
            scope = "--global" if not rule.origin or rule.origin.endswith("/.gitconfig") else f"--file {rule.origin}"
            command = f"git config {scope} --unset-all 'url.{rule.base}.insteadof'"
            why += f"; the insteadOf rule in {rule.origin or 'your git config'} is what sends it over SSH"
        else:
            command = f'git config --global url."https://{host}/".insteadOf "{_ssh_prefix(d.transport.url, host)}"'
        if not any(f.command == command for f in fixes):
            fixes.append(Fix("git", command, why, verified=True))
    return fixes


def _ssh_prefix(url: str, host: str) -> str:
    if url.startswith(("ssh://", "git+ssh://")):
        return url.split(host, 1)[0] + host + "/"
    return url.split(":", 1)[0] + ":"


def _host_fixes(ctx: _Context, outcomes: list[ModuleOutcome]) -> list[Fix]:
    fixes: list[Fix] = []
    seen: set[str] = set()
    for hop in (h for o in outcomes for h in o.hops if h.verdict is not None and h.status == "failed"):
        name = hop.verdict.name
        if name is V.TLS_MITM and "trust" not in seen:
            seen.add("trust")
            issuer = _issuer(ctx, hop.target)
            fixes.append(Fix("trust", "export SSL_CERT_FILE=/path/to/inspection-root.pem   # only if the interceptor is your company's",
                             f"a TLS-intercepting middlebox presents its own certificate for {host_port(hop.target)[0]}"
                             + (f" (issuer {issuer})" if issuer else "") + ". If it is your company's inspection proxy, trust its root "
                             "for the go command (Go reads SSL_CERT_FILE and SSL_CERT_DIR) and for monitor (trust.extra_ca_files); "
                             "if it is not, trust nothing and use a GOPROXY that works from here"))
        if name in (V.DNS_POISONING, V.DNS_BLOCKING) and "dns" not in seen:
            seen.add("dns")
            fixes.append(Fix("dns", _dns_command(ctx),
                             f"the system resolver's answers for {host_port(hop.target)[0]} are {'forged' if name is V.DNS_POISONING else 'withheld'} "
                             "while the encrypted references answer: resolve through DNS over TLS or HTTPS (or use a proxy that resolves for you)"))
    return fixes


def _issuer(ctx: _Context, url: str) -> str | None:
    h, _ = ctx.host(url)
    for r in (h.results if h else []):
        for o in r.facts.get("sni_experiment") or ():
            if o.get("label") == "target" and o.get("cert"):
                return o["cert"].get("issuer")
    return None


def _dns_command(ctx: _Context) -> str:
    """systemd-resolved settings for the first DoT reference that answered here."""
    for h in ctx.m.hosts.values():
        for r in h.results:
            if r.facts.get("role") == "resolver" and r.facts.get("transport") == "tls" and r.ok:
                spec = str(r.target).removeprefix("tls://")
                address, _, name = spec.partition("#")
                address = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
                return f"DNS={address}{'#' + name if name else ''} DNSOverTLS=yes   # /etc/systemd/resolved.conf, then: systemctl restart systemd-resolved"
    return "DNSOverTLS=yes with a DoT resolver in /etc/systemd/resolved.conf (or a local DoH client)"


def _refusals(outcomes: list[ModuleOutcome]) -> list[dict[str, str]]:
    refused: list[dict[str, str]] = []
    tampered = [(o, h) for o in outcomes for h in o.hops if h.verdict is not None and h.verdict.name is V.MODULE_TAMPERED]
    if tampered:
        o, h = tampered[0]
        evidence = "; ".join(h.verdict.evidence[:2]) if h.verdict else ""
        refused.append({"setting": "GOSUMDB=off", "why": (
            f"{h.target} served {o.module.path}@{o.version} with a checksum mismatch ({evidence}). A mismatch is exactly what tampering "
            "looks like, and the checksum database is what caught it: turning it off (or GONOSUMDB, GOFLAGS=-insecure, GOINSECURE) "
            "would install those bytes. Keep verification on and change the proxy.")})
    blocked = [h for o in outcomes for h in o.hops if h.role == "sumdb" and h.status == "failed" and h.reached]
    if blocked and not tampered:
        refused.append({"setting": "GOSUMDB=off", "why": (
            f"the checksum database at {blocked[0].target} cannot be reached from here; without it nothing proves the modules are the "
            "ones everyone else gets. Use a GOPROXY whose proxy serves the database (/sumdb/<name>/supported), or its mirror "
            "(GOSUMDB=sum.golang.google.cn for sum.golang.org), instead of turning verification off.")})
    return refused


def _warnings(goenv: GoEnv) -> list[str]:
    found = []
    if goenv.gosumdb == "off":
        found.append("GOSUMDB=off: nothing verifies the modules you download; set it back to sum.golang.org")
    if goenv.insecure_flag():
        found.append("GOFLAGS=-insecure: module downloads may skip certificate checks; remove it")
    if goenv.goinsecure:
        found.append(f"GOINSECURE={goenv.goinsecure}: these modules may be fetched over plain HTTP; keep it to known internal hosts")
    return found


def _host_json(ctx: _Context, h: Host) -> dict[str, Any]:
    _, hv = ctx.host(f"https://{h.host}:{h.port}/")
    summary = h.results[-1].facts if h.results else {}
    return {
        "host": h.host, "port": h.port, "role": h.role,
        "verdict": hv.verdict.to_json() if hv else None,
        "findings": list(hv.findings) if hv else [],
        "proven_ips": summary.get("proven_ips", []), "reached_resolvers": summary.get("reached_resolvers", []),
        "verified": summary.get("verified"), "fetched": summary.get("fetched"),
        "skipped": None if h.check is not None else f"its name is the control SNI ({h.host}); not checked alone",
    }
