"""Measure every hop of a plan with monitor's own probes, from one or more vantages.

For every host on the way whose traffic the go command sends directly (not through a proxy):
a `site` round — the system resolver's answer against the encrypted references (DoT, DoH),
TCP and TLS on each answered address with the host's SNI, a control SNI and none, the
certificate chain, one HTTPS request. Then, along the go command's path: the module fetched
through every GOPROXY entry and candidate proxy and verified with the checksum database
(the `goproxy` probe), the go-get discovery and the git repository over smart HTTP and SSH
for `direct` (the `git` probe), each HTTP(S) proxy from the environment (the `proxy` probe).

Order matters: the site rounds run first, each sending its control SNI before its target
SNI, so that no reset our fetches trigger taints a control (residual blocking). The checks
built here are the ones `emit` writes into a config.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from monitor.config import GitCheck, GoproxyCheck, HttpCheck, ProxyCheck, SiteCheck
from monitor.doctor.gomod import Requirement
from monitor.doctor.plan import DirectTarget, GitTransport, Plan, Sumdb, direct_target, git_transport, host_port, https_equivalent, parse_go_import
from monitor.model import Failure, Operation, ProbeResult
from monitor.probes import http as _http
from monitor.probes import measure
from monitor.probes._classify import classify
from monitor.probes._gomod import escape_path, escape_version
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.vantage import Proxy, Vantage

_OPTION = {"references": "reference", "control_sni": "control-sni", "timeout": "timeout"}
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")

# Statuses that show a server answering over a verified session: the HTTP layer works. What
# the answer means for the module is the fetch's business, not the host check's.
ANSWERED = [200, 204, 301, 302, 303, 304, 307, 308, 401, 403, 404, 410]
_DISCOVERY_MAX = 1 << 20  # bytes of a go-get page read looking for its meta tags


@dataclass(frozen=True)
class Settings:
    timeout: float = 10.0  # each measurement's deadline
    control_sni: str = "example.com"
    references: tuple[str, ...] = ("https://dns.google/dns-query", "tls://1.1.1.1")
    interval: float = 60.0  # of the checks as emitted

    def __post_init__(self) -> None:
        """The references and the control SNI as a site check in a config would be checked
        (ValueError: a usage error, said before any packet is sent)."""
        try:
            SiteCheck(kind="site", name="doctor", interval=self.interval, timeout=self.timeout, vantages=["doctor"], domain="check.invalid",
                      control_sni=self.control_sni, references=list(self.references))
        except ValidationError as e:
            raise ValueError("; ".join(f"--{_OPTION.get(str(x['loc'][0]), x['loc'][0])}: {x['msg'].removeprefix('Value error, ')}" for x in e.errors())) from None
        if not _HOSTNAME.fullmatch(self.control_sni):
            raise ValueError(f"--control-sni: {self.control_sni!r} is not a host name")

    def common(self, name: str, vantage: str) -> dict[str, Any]:
        phase = min(5.0, self.timeout)
        return {"name": name, "interval": max(self.interval, self.timeout + 1), "timeout": self.timeout, "vantages": [vantage],
                "connect_timeout": phase, "tls_timeout": phase}


@dataclass
class Host:
    """A site round on a host the go command reaches directly."""

    host: str
    port: int
    role: str  # what the go command wants there: goproxy, sumdb, discovery, git
    check: SiteCheck | None  # None when the host cannot be checked alone (its name is the control SNI)
    results: list[ProbeResult] = field(default_factory=list)


@dataclass
class Fetch:
    """A module fetched through one proxy, as `go mod download` would with GOPROXY=<proxy>."""

    proxy: str
    module: Requirement
    check: GoproxyCheck | HttpCheck  # HttpCheck when nothing can prove the bytes (no sumdb, no pins)
    result: ProbeResult | None = None


@dataclass
class Direct:
    """`direct` for one module: discovery (go-get), then the repository over git's transport."""

    module: Requirement
    target: DirectTarget
    discovery: ProbeResult | None = None
    discovery_check: HttpCheck | None = None
    repo: str | None = None  # the repository URL as the go command gives it to git
    transport: GitTransport | None = None
    check: GitCheck | None = None  # smart HTTP (the https form) and SSH (if git goes over SSH)
    result: ProbeResult | None = None
    problem: str | None = None  # why direct could not even start (e.g. no go-import tag)


@dataclass
class EnvProxy:
    url: str
    check: ProxyCheck
    result: ProbeResult | None = None


@dataclass
class Measured:
    """Everything measured from one vantage."""

    vantage: Vantage
    path_vantage: Vantage  # the same, plus HTTPS_PROXY from the environment: the go command's path
    hosts: dict[tuple[str, int], Host] = field(default_factory=dict)
    fetches: dict[tuple[str, str], Fetch] = field(default_factory=dict)  # (proxy, module path)
    directs: dict[str, Direct] = field(default_factory=dict)  # module path
    env_proxies: list[EnvProxy] = field(default_factory=list)
    verification: Fetch | None = None  # the recommended GOPROXY list, fetched as the go command would
    lookups: dict[str, Fetch] = field(default_factory=dict)  # module path -> its checksum-database lookup (for direct)

    def host_of(self, url: str) -> Host | None:
        return self.hosts.get(host_port(url))


Progress = Callable[[str, str | None], None]  # (what, outcome or None when it starts)
T = TypeVar("T")


async def measure_plan(plan: Plan, vantage: Vantage, settings: Settings, *, pins: dict[tuple[str, str], tuple[str | None, str | None]],
                       progress: Progress) -> Measured:
    env_proxy = plan.goenv.https_proxy and plan.goenv.http_proxy_for("https://proxy.golang.org/")  # any public https URL
    path_vantage = _with_proxy(vantage, env_proxy) if env_proxy else vantage
    m = Measured(vantage, path_vantage)
    label = vantage.name

    # Discovery first: it says which git hosts `direct` leads to, and those hosts get site rounds too.
    for route in plan.routes:
        if route.direct and route.module.path not in m.directs:
            m.directs[route.module.path] = Direct(route.module, direct_target(route.module.path))
    await asyncio.gather(*(_discover(d, m, plan, settings, progress, label) for d in m.directs.values()))

    for url, role in _host_urls(plan, m):
        hp = host_port(url)
        if hp not in m.hosts and not _proxied(m, plan, url):
            m.hosts[hp] = Host(hp[0], hp[1], role, _site_check(url, hp, settings, vantage.name))
    # The probes' process-wide memories serve this one-shot run: residual-blocking triggers
    # (shared by the site rounds, so a control is never sent where a target just triggered)
    # and the verified checksum-database trees (so every fetch proves consistency with them).
    await asyncio.gather(*(
        _step(progress, f"{label}: host {h.host}:{h.port}", _run_site(h, vantage), _site_outcome)
        for h in m.hosts.values() if h.check is not None
    ))

    for route in plan.routes:
        # A private module is never named to a proxy: that is what GOPRIVATE is for.
        for proxy in route.proxies + ([] if route.private else list(plan.candidates)):
            key = (proxy, route.module.path)
            if key not in m.fetches:
                m.fetches[key] = Fetch(proxy, route.module, fetch_check(proxy, route.module, route.sumdb, pins, settings, vantage.name))
    for route in plan.routes:
        # A module fetched direct is still looked up in the checksum database; one the database
        # does not know (a private module) fails there. The proxies' fetches cover the others.
        if route.direct and route.sumdb is not None and route.module.version != "latest":
            url = f"{route.sumdb.base}/lookup/{escape_path(route.module.path)}@{escape_version(route.module.version)}"
            check = HttpCheck(kind="http", url=url, expect_status=[200], **settings.common(f"sumdb-lookup-{_name(route.module.path)}", vantage.name))
            m.lookups[route.module.path] = Fetch(route.sumdb.base, route.module, check)
    for url in dict.fromkeys(filter(None, (plan.goenv.https_proxy, plan.goenv.http_proxy))):
        target = next(iter(plan.proxies), "https://proxy.golang.org").removeprefix("https://").removeprefix("http://").split("/")[0]
        auth = {"auth_env": PROXY_AUTH_ENV} if "@" in url.split("://", 1)[-1].split("/", 1)[0] else {}  # see _with_proxy
        check = ProxyCheck(kind="proxy", proxy=_proxy_url(url), target=target if ":" in target else f"{target}:443", **auth,
                           **settings.common(f"env-proxy-{len(m.env_proxies) + 1}", vantage.name))
        m.env_proxies.append(EnvProxy(url, check))
    await asyncio.gather(
        *(_step(progress, f"{label}: fetch {f.module.path}@{f.module.version} via {f.proxy}", _run_fetch(f, m.path_vantage), _result_outcome)
          for f in m.fetches.values()),
        *(_step(progress, f"{label}: git {d.check.display_target}", _run_git(d, m), _result_outcome)
          for d in m.directs.values() if d.check is not None),
        *(_step(progress, f"{label}: proxy {p.check.proxy}", _run_env_proxy(p, vantage), _result_outcome) for p in m.env_proxies),
        *(_step(progress, f"{label}: lookup {f.check.url}", _run_fetch(f, m.path_vantage), _result_outcome) for f in m.lookups.values()),
    )
    return m


async def verify_list(goproxy: str, module: Requirement, sumdb: Sumdb | None, m: Measured, settings: Settings,
                      pins: dict[tuple[str, str], tuple[str | None, str | None]], progress: Progress) -> Fetch:
    """The module fetched through a whole GOPROXY list with the go command's fall-through:
    the proof that a recommended list works from here."""
    fetch = Fetch(goproxy, module, fetch_check(goproxy, module, sumdb, pins, settings, m.vantage.name, name="module-fix"))
    await _step(progress, f"{m.vantage.name}: verify GOPROXY={goproxy}", _run_fetch(fetch, m.path_vantage), _result_outcome)
    m.verification = fetch
    return fetch


# ---------------------------------------------------------------------------------------------
# The checks


def fetch_check(proxy: str, module: Requirement, sumdb: Sumdb | None, pins: dict[tuple[str, str], tuple[str | None, str | None]],
                settings: Settings, vantage: str, *, name: str | None = None) -> GoproxyCheck | HttpCheck:
    name = name or f"module-{_name(proxy)}"
    zip_h1, mod_h1 = pins.get((module.path, module.version), (None, None))
    common = settings.common(name, vantage)
    if sumdb is None and zip_h1 is None and mod_h1 is None:
        # Nothing proves the bytes: at least ask the proxy for the version, as the go command first does.
        url = proxy.split(",")[0].split("|")[0]
        version = "@v/list" if module.version == "latest" else f"@v/{escape_version(module.version)}.info"
        return HttpCheck(kind="http", url=f"{url}/{escape_path(module.path)}/{version}", expect_status=[200], **common)
    return GoproxyCheck(
        kind="goproxy", proxy=proxy, module=module.path, version=module.version,
        sumdb=sumdb.name if sumdb else "off", sumdb_key=sumdb.key if sumdb else None, sumdb_url=sumdb.url if sumdb else None,
        expect_h1=zip_h1, expect_gomod_h1=mod_h1, **common,
    )


def _site_check(url: str, hp: tuple[str, int], settings: Settings, vantage: str) -> SiteCheck | None:
    host, port = hp
    if host.rstrip(".").lower() == settings.control_sni.rstrip(".").lower():
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return SiteCheck(
        kind="site", domain=host, port=port, path=path, control_sni=settings.control_sni, resolvers=["system"],
        references=list(settings.references), expect_status=ANSWERED, read_timeout=min(5.0, settings.timeout),
        **settings.common(f"host-{_name(host)}" + ("" if port == 443 else f"-{port}"), vantage),
    )


def _host_urls(plan: Plan, m: Measured) -> list[tuple[str, str]]:
    """(URL the go command requests there, role) for each host on the way, in path order."""
    urls: list[tuple[str, str]] = []
    for route in plan.routes:
        version = "list" if route.module.version == "latest" else f"{escape_version(route.module.version)}.info"
        for proxy in route.proxies + ([] if route.private else list(plan.candidates)):
            urls.append((f"{proxy}/{escape_path(route.module.path)}/@v/{version}", "goproxy"))
        if route.sumdb is not None:
            urls.append((f"{route.sumdb.base}/latest", "sumdb"))
        d = m.directs.get(route.module.path)
        if d is not None:
            if d.target.discovery:
                urls.append((d.target.discovery, "discovery"))
            https = d.check.url if d.check is not None else None
            if https:
                urls.append((f"{https.rstrip('/')}/info/refs?service=git-upload-pack", "git"))
    return [(u, r) for u, r in urls if u.startswith("https://")]


def _proxied(m: Measured, plan: Plan, url: str) -> bool:
    """Traffic to `url` goes through a proxy (the vantage's or HTTPS_PROXY): the proxy resolves
    the name, so the system's DNS answers say nothing about this path."""
    return bool(m.vantage.via) or plan.goenv.http_proxy_for(url) is not None


def _name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text.removeprefix("https://").removeprefix("http://"))
    return cleaned.strip("-.")[:80] or "x"


# ---------------------------------------------------------------------------------------------
# Running them


async def _step(progress: Progress, what: str, work: Awaitable[T], outcome: Callable[[T], str]) -> T:
    progress(what, None)
    started = time.monotonic()
    done = await work
    progress(what, f"{outcome(done)} ({time.monotonic() - started:.1f} s)")
    return done


def _site_outcome(h: Host) -> str:
    from monitor.doctor.verdicts import judge_host

    return judge_host(h.results, []).verdict.name.value if h.results else "no result"


def _discovery_outcome(d: Direct) -> str:
    r = d.discovery
    if r is None or r.ok:
        return "ok" if r is not None else "not measured"
    return f"{r.failure.cls.value} during {r.failure.operation.value}" if r.failure else "failed"


def _result_outcome(x: Fetch | Direct | EnvProxy) -> str:
    r = x.result
    if r is None:
        return getattr(x, "problem", None) or "not measured"
    return "ok" if r.ok else f"{r.failure.cls.value} during {r.failure.operation.value}" if r.failure else "failed"


async def _run_site(h: Host, vantage: Vantage) -> Host:
    assert h.check is not None
    h.results = await measure(h.check, vantage)  # the round's results, its summary last
    return h


async def _run_fetch(f: Fetch, vantage: Vantage) -> Fetch:
    f.result = (await measure(f.check, vantage))[-1]
    return f


async def _run_git(d: Direct, m: Measured) -> Direct:
    assert d.check is not None
    # git's HTTPS goes through HTTPS_PROXY as the go command's does; SSH never does.
    vantage = m.vantage if d.check.ssh else m.path_vantage
    d.result = (await measure(d.check, vantage))[-1]
    return d


async def _run_env_proxy(p: EnvProxy, vantage: Vantage) -> EnvProxy:
    p.result = (await measure(p.check, vantage))[-1]
    return p


async def _discover(d: Direct, m: Measured, plan: Plan, settings: Settings, progress: Progress, label: str) -> None:
    """Find the repository as the go command does, then how git reaches it."""
    if d.target.discovery:
        d.discovery_check = HttpCheck(kind="http", url=d.target.discovery, expect_status=[200],
                                      **settings.common(f"go-get-{_name(d.module.path)}", m.vantage.name))
        html = await _step(progress, f"{label}: go-get {d.target.discovery}", _go_get(d, m.path_vantage), lambda _: _discovery_outcome(d))
        found = parse_go_import(html, d.module.path) if html is not None else None
        if found is None:
            if d.discovery is not None and d.discovery.ok:
                d.problem = f"no go-import meta tag for {d.module.path} at {d.target.discovery}"
            return
        _, vcs, d.repo = found
        if vcs != "git":
            d.problem = f"{d.module.path} is in a {vcs} repository ({d.repo}); doctor checks git only"
            return
    else:
        d.repo = d.target.repo
    assert d.repo is not None
    d.transport = git_transport(d.repo, plan.rewrites)
    https = d.transport.https or https_equivalent(d.transport.url) or (d.repo if d.repo.startswith("https://") else None)
    if https is None and d.transport.ssh is None:
        d.problem = f"git would fetch {d.transport.url}: neither HTTPS nor SSH, which doctor checks"
        return
    d.check = GitCheck(kind="git", url=https, ssh=d.transport.ssh, **settings.common(f"git-{_name(d.repo)}", m.vantage.name))


async def _go_get(d: Direct, vantage: Vantage) -> str | None:
    """GET https://PATH?go-get=1 (redirects followed) and its body, as the go command asks."""
    check = d.discovery_check
    assert check is not None
    m = Measurement(check, vantage, time.monotonic() + check.timeout)
    timing = _http.Timing(m)
    body = b""
    async with _http.open_client(m, timing, pinned_url=check.url) as client:
        try:
            response, redirects = await _http.follow(client, check, timing)
        except NetError as e:
            if e.tls is not None:
                m.facts.update(e.tls.facts())
            d.discovery = m.result(e.failure)
            return None
        except _http.EXCHANGE_ERRORS as exc:
            timing.end(complete=False)
            d.discovery = m.result(_failure(exc, Operation.HTTP_ROUND_TRIP))
            return None
        try:
            _http.describe(response, redirects, m)
            failure = _http.unexpected_status(check, response.status_code)
            if failure is None:
                try:
                    async with contextlib.aclosing(response.aiter_bytes()) as chunks:
                        async for chunk in chunks:  # each chunk >= 1 byte; the cap ends the loop
                            body += chunk
                            if len(body) > _DISCOVERY_MAX:
                                break
                except _http.EXCHANGE_ERRORS as exc:
                    failure = _failure(exc, Operation.READ)
            timing.end(complete=failure is None)
        finally:
            await response.aclose()
    d.discovery = m.result(failure)
    return body[:_DISCOVERY_MAX].decode("utf-8", "replace") if failure is None else None


def _failure(exc: BaseException, operation: Operation) -> Failure:
    cls, detail = classify(exc)
    return Failure(cls, operation, detail)


# ---------------------------------------------------------------------------------------------
# Vantages


def _proxy_url(url: str) -> str:
    """An environment proxy URL as a check takes it: scheme and host:port, no credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else "http://" + url)
    scheme = parts.scheme if parts.scheme in ("http", "socks5", "socks5h") else "http"
    host = parts.hostname or ""
    port = parts.port or (1080 if scheme.startswith("socks") else 80)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


PROXY_AUTH_ENV = "MONITOR_DOCTOR_PROXY_AUTH"


def _with_proxy(vantage: Vantage, url: str) -> Vantage:
    """`vantage` sending its connections through the environment's proxy. Credentials in the
    URL are handed over through an environment variable of this process, never a URL."""
    import dataclasses
    import os
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url if "://" in url else "http://" + url)
    auth_env = None
    if parts.username is not None:
        os.environ[PROXY_AUTH_ENV] = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth_env = PROXY_AUTH_ENV
    proxy = Proxy.from_url(_proxy_url(url), auth_env=auth_env)
    return dataclasses.replace(vantage, via=vantage.via + (proxy,))
