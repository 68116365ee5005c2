"""The hops `go mod download` takes for each module, with the go command's semantics (no I/O).

For a module the go command walks GOPROXY (unless GONOPROXY/GOPRIVATE match it: then only
`direct`): each proxy URL in turn, on to the next after a "not found" (404/410) when the
entry is followed by ',', after any error when by '|'; `direct` fetches from the VCS, `off`
forbids. The module's go.sum lines are then verified with the checksum database (GOSUMDB),
unless GONOSUMDB/GOPRIVATE exempt it or GOSUMDB=off. Every HTTPS request goes through
HTTPS_PROXY unless NO_PROXY matches its host.

`direct` for a module means: find the repository (github.com/OWNER/REPO and paths ending in
.git name it; anything else is asked with https://PATH?go-get=1 for a go-import meta tag),
then `git ls-remote` it — git rewrites the URL with its insteadOf rules first, which may send
it over SSH (git@HOST:PATH). Those steps need the network; `direct_target` and
`git_transport` are their pure halves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from monitor.doctor.goenv import GoEnv, Rewrite
from monitor.doctor.gomod import Requirement
from monitor.probes._goproxy_list import DIRECT, OFF, ProxyEntry, parse_goproxy

DEFAULT_SUMDB_URLS = {"sum.golang.google.cn": "https://sum.golang.google.cn"}


@dataclass(frozen=True)
class Sumdb:
    """GOSUMDB: "NAME", "KEY" or "NAME-OR-KEY URL" (the key is name+hash+base64)."""

    name: str
    key: str | None = None
    url: str | None = None  # given explicitly; else through the proxies, then https://NAME

    @property
    def base(self) -> str:
        """Where the database is asked when no proxy serves it."""
        return self.url or DEFAULT_SUMDB_URLS.get(self.name, f"https://{self.name}")

    @property
    def spec(self) -> str:
        return " ".join(x for x in (self.key or self.name, self.url) if x)


def parse_gosumdb(value: str) -> Sumdb | None:
    """None for GOSUMDB=off. Raises ValueError for a value with more than two fields."""
    fields = value.split()
    if not fields or fields == ["off"]:
        return None
    if len(fields) > 2:
        raise ValueError(f"GOSUMDB {value!r}: want NAME, KEY or 'NAME-OR-KEY URL'")
    first = fields[0]
    key = first if "+" in first else None
    url = fields[1] if len(fields) == 2 else None
    if url is not None and "://" not in url:
        url = "https://" + url
    return Sumdb(name=first.split("+", 1)[0], key=key, url=url)


@dataclass(frozen=True)
class Route:
    """What the go command does for one module."""

    module: Requirement
    entries: tuple[ProxyEntry, ...]  # the GOPROXY list it walks; (direct,) when not proxied
    sumdb: Sumdb | None  # None: not verified (GONOSUMDB, GOPRIVATE, GOSUMDB=off)

    @property
    def private(self) -> bool:
        return self.entries == (ProxyEntry(DIRECT),)

    @property
    def proxies(self) -> list[str]:
        return [e.url for e in self.entries if e.url not in (DIRECT, OFF)]

    @property
    def direct(self) -> bool:
        return any(e.url == DIRECT for e in self.entries)


@dataclass(frozen=True)
class Plan:
    routes: tuple[Route, ...]
    candidates: tuple[str, ...]  # other module proxies to try, for a list that works from here
    goenv: GoEnv
    rewrites: tuple[Rewrite, ...] = field(default=())

    @property
    def proxies(self) -> list[str]:
        """Every proxy URL to fetch through: the routes' in GOPROXY order, then the candidates."""
        return list(dict.fromkeys([p for r in self.routes for p in r.proxies] + list(self.candidates)))

    @property
    def sumdbs(self) -> list[Sumdb]:
        return list(dict.fromkeys(r.sumdb for r in self.routes if r.sumdb is not None))


def make_plan(modules: list[Requirement], goenv: GoEnv, *, candidates: list[str], rewrites: list[Rewrite] = ()) -> Plan:
    """Raises ValueError for a GOPROXY or GOSUMDB the go command would refuse."""
    entries = parse_goproxy(goenv.goproxy)
    sumdb = parse_gosumdb(goenv.gosumdb)
    routes = tuple(
        Route(
            module=m,
            entries=entries if goenv.proxied(m.path) else (ProxyEntry(DIRECT),),
            sumdb=sumdb if goenv.checksummed(m.path) else None,
        )
        for m in modules
    )
    tried = [c.rstrip("/") for c in candidates]
    for c in tried:
        parse_goproxy(c)  # a bad candidate is a usage error, said now
    return Plan(routes, tuple(tried), goenv, tuple(rewrites))


# ---------------------------------------------------------------------------------------------
# direct: where the go command finds the repository


# cmd/go/internal/vcs: hosts whose paths name the repository without asking the server.
_KNOWN = (
    re.compile(r"^(?P<root>github\.com/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+)(/[A-Za-z0-9_.\-]+)*$"),
    re.compile(r"^(?P<root>bitbucket\.org/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+)(/[A-Za-z0-9_.\-]+)*$"),
)
# A path that names its VCS: "host/path/repo.git[/sub]".
_GIT_SUFFIX = re.compile(r"^(?P<root>(?P<repo>([a-z0-9.\-]+\.)+[a-z0-9.\-]+(:[0-9]+)?(/~?[\w\-._]+)+?)\.git)(/~?[\w\-._]+)*$")


@dataclass(frozen=True)
class DirectTarget:
    """Where `direct` starts for a module: a repository URL known from the path, or the
    go-get URL that tells it (its answer is read by `parse_go_import`)."""

    repo: str | None = None
    discovery: str | None = None


def direct_target(module: str) -> DirectTarget:
    for pattern in _KNOWN:
        m = pattern.match(module)
        if m:
            return DirectTarget(repo=f"https://{m.group('root')}")
    m = _GIT_SUFFIX.match(module)
    if m:
        return DirectTarget(repo=f"https://{m.group('repo')}.git")
    return DirectTarget(discovery=f"https://{module}?go-get=1")


class _MetaTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imports: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and a.get("name") == "go-import" and a.get("content"):
            self.imports.append((a["content"] or "").split())


def parse_go_import(html: str, module: str) -> tuple[str, str, str] | None:
    """(prefix, vcs, repo URL) of the go-import meta tag whose prefix is `module` or one of its
    parents (as cmd/go's matchGoImport); None if there is none, or several disagree."""
    parser = _MetaTags()
    parser.feed(html)
    found = {
        (f[0], f[1], f[2]) for f in parser.imports
        if len(f) in (3, 4) and (module == f[0] or module.startswith(f[0] + "/"))
    }
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class GitTransport:
    """How git reaches a repository after its insteadOf rules."""

    url: str  # the URL git fetches (rewritten)
    https: str | None  # the smart-HTTP URL, if git goes over HTTPS
    ssh: str | None  # host:port, if git goes over SSH
    rewrite: Rewrite | None  # the rule that rewrote it


def git_transport(repo: str, rewrites: list[Rewrite] | tuple[Rewrite, ...]) -> GitTransport:
    """git's URL rewriting: the longest insteadOf prefix wins, applied once."""
    rule = max((r for r in rewrites if repo.startswith(r.prefix)), key=lambda r: len(r.prefix), default=None)
    url = rule.base + repo[len(rule.prefix):] if rule else repo
    return GitTransport(url=url, https=url if url.startswith("https://") else None, ssh=ssh_target(url), rewrite=rule)


def ssh_target(url: str) -> str | None:
    """host:port git connects to for an SSH URL (ssh://[user@]host[:port]/path, git+ssh://…,
    or scp-like [user@]host:path); None for other URLs."""
    if url.startswith(("ssh://", "git+ssh://")):
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"[{host}]:{parts.port or 22}" if ":" in host else f"{host}:{parts.port or 22}"
    if "://" not in url:
        m = re.match(r"^(?:[^@/]+@)?([^:/]+):", url)
        if m:
            return f"{m.group(1)}:22"
    return None


def https_equivalent(url: str) -> str | None:
    """The HTTPS URL of an SSH repository URL on the same host and path (what moving git
    from SSH to HTTPS means)."""
    if url.startswith(("ssh://", "git+ssh://")):
        parts = urlsplit(url)
        return f"https://{parts.hostname}{parts.path}"
    m = re.match(r"^(?:[^@/]+@)?([^:/]+):(.+)$", url)
    if m and "://" not in url:
        return f"https://{m.group(1)}/{m.group(2).lstrip('/')}"
    return None


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
