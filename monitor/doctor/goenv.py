"""The Go environment as the go command sees it: what `go mod download` reads before it
sends its first packet.

With `go` on PATH, `go env -json` is asked (it merges the environment, the go.env file and
`go env -w` settings, and fills GONOPROXY/GONOSUMDB from GOPRIVATE). Without it, the
variables are read from the environment with the go command's defaults. The HTTP proxy
variables are not go env settings: the go command's HTTP client reads them from the
environment (net/http.ProxyFromEnvironment), and so does this module.

Pure except `read_goenv`, which runs `go env` once.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit, urlunsplit

DEFAULT_GOPROXY = "https://proxy.golang.org,direct"
DEFAULT_GOSUMDB = "sum.golang.org"
GO_SETTINGS = ("GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOFLAGS", "GOINSECURE")
_GO_ENV_TIMEOUT = 10.0  # s; `go env` reads files only, it never waits on the network


@dataclass(frozen=True)
class GoEnv:
    goproxy: str = DEFAULT_GOPROXY
    gosumdb: str = DEFAULT_GOSUMDB
    gonosumdb: str = ""
    goprivate: str = ""
    gonoproxy: str = ""
    goflags: str = ""
    goinsecure: str = ""
    https_proxy: str = ""
    http_proxy: str = ""
    no_proxy: str = ""
    source: str = "environment"  # or "go env" (and the go version)

    def settings(self) -> dict[str, str]:
        """The values as `go env` spells them, proxies with any credentials removed."""
        return {
            "GOPROXY": self.goproxy, "GOSUMDB": self.gosumdb, "GONOSUMDB": self.gonosumdb, "GOPRIVATE": self.goprivate,
            "GONOPROXY": self.gonoproxy, "GOFLAGS": self.goflags, "GOINSECURE": self.goinsecure,
            "HTTPS_PROXY": redact(self.https_proxy), "HTTP_PROXY": redact(self.http_proxy), "NO_PROXY": self.no_proxy,
        }

    def proxied(self, module: str) -> bool:
        """Whether the go command asks GOPROXY for `module` (else: direct, from its VCS)."""
        return not match_patterns(self.gonoproxy, module)

    def checksummed(self, module: str) -> bool:
        """Whether the go command verifies `module` with the checksum database."""
        return self.gosumdb != "off" and not match_patterns(self.gonosumdb, module)

    def insecure_flag(self) -> bool:
        """GOFLAGS=-insecure (removed in Go 1.17, still seen in old setups)."""
        return any(f.split("=")[0] in ("-insecure", "--insecure") for f in self.goflags.split())

    def http_proxy_for(self, url: str) -> str | None:
        """The proxy the go command's HTTP client uses for `url` (HTTPS_PROXY for https://,
        HTTP_PROXY for http://, none where NO_PROXY matches or for localhost), or None."""
        parts = urlsplit(url)
        proxy = self.https_proxy if parts.scheme == "https" else self.http_proxy
        host = (parts.hostname or "").lower()
        if not proxy or not host or host == "localhost" or _is_loopback(host):
            return None
        if no_proxy_matches(self.no_proxy, host, parts.port or (443 if parts.scheme == "https" else 80)):
            return None
        return proxy if "://" in proxy else "http://" + proxy  # as Go: a bare host:port is http


def read_goenv(environ: Mapping[str, str] | None = None, *, go: str | None = None) -> GoEnv:
    """The go command's settings: from `go env -json` when `go` is found (`go` names it, or
    PATH), else from `environ` with Go's defaults. Blank values mean the default, as in Go."""
    environ = os.environ if environ is None else environ
    go = go or shutil.which("go", path=environ.get("PATH"))
    values: dict[str, str] = {}
    source = "environment"
    if go is not None:
        reported = _go_env(go, environ)
        if reported is not None:
            values, source = reported, f"go env ({reported.get('GOVERSION', 'go')})"
    if not values:
        values = {k: environ.get(k, "") for k in GO_SETTINGS}
    goprivate = values.get("GOPRIVATE", "")
    return GoEnv(
        goproxy=values.get("GOPROXY") or DEFAULT_GOPROXY,
        gosumdb=values.get("GOSUMDB") or DEFAULT_GOSUMDB,
        gonosumdb=values.get("GONOSUMDB") or goprivate,
        goprivate=goprivate,
        gonoproxy=values.get("GONOPROXY") or goprivate,
        goflags=values.get("GOFLAGS", ""),
        goinsecure=values.get("GOINSECURE", ""),
        https_proxy=_env_either(environ, "HTTPS_PROXY"),
        http_proxy=_env_either(environ, "HTTP_PROXY"),
        no_proxy=_env_either(environ, "NO_PROXY"),
        source=source,
    )


def _go_env(go: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    try:
        done = subprocess.run([go, "env", "-json", *GO_SETTINGS, "GOVERSION"], env=dict(environ), capture_output=True,
                              text=True, timeout=_GO_ENV_TIMEOUT, check=False)
        values = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else None


def _env_either(environ: Mapping[str, str], name: str) -> str:
    """Go reads the upper-case name first, then the lower-case one."""
    return environ.get(name) or environ.get(name.lower()) or ""


def match_patterns(patterns: str, target: str) -> bool:
    """golang.org/x/mod/module.MatchPrefixPatterns: whether any comma-separated glob
    pattern matches a prefix of `target` with as many path elements as the pattern has
    (so "example.com/*" matches example.com/a/b; "*.corp.example" matches git.corp.example/x)."""
    elements = target.split("/")
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        wanted = pattern.rstrip("/").split("/")
        if len(wanted) > len(elements):
            continue
        if all(_match_element(p, t) for p, t in zip(wanted, elements)):
            return True
    return False


def _match_element(pattern: str, name: str) -> bool:
    """path.Match on one element: '*' and '?' never cross a '/', '[^…]' negates."""
    return fnmatchcase(name, pattern.replace("[^", "[!"))


def no_proxy_matches(no_proxy: str, host: str, port: int) -> bool:
    """golang.org/x/net/http/httpproxy: '*', exact hosts, domain suffixes (with or
    without a leading dot), IP addresses, CIDR ranges, each optionally with :port."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if name.startswith("."):  # ".y.com": subdomains of y.com only
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):  # "y.com": y.com and its subdomains
            return True
    return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """A URL without its userinfo: proxy credentials never reach output or configs."""
    if "@" not in url:
        return url
    parts = urlsplit(url if "://" in url else "http://" + url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Rewrite:
    """A git `url.<base>.insteadOf <prefix>` rule: URLs starting with `prefix` are fetched
    from `base` + the rest. `origin` is the file that holds it (git config --show-origin)."""

    base: str
    prefix: str
    origin: str = ""


def read_git_rewrites(environ: Mapping[str, str] | None = None, *, git: str | None = None) -> list[Rewrite]:
    """The insteadOf rules the go command's git applies (every config scope git reads)."""
    environ = os.environ if environ is None else environ
    git = git or shutil.which("git", path=environ.get("PATH"))
    if git is None:
        return []
    try:
        done = subprocess.run([git, "config", "--show-origin", "--get-regexp", r"^url\..*\.insteadof$"], env=dict(environ),
                              capture_output=True, text=True, timeout=_GO_ENV_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rules = []
    for line in done.stdout.splitlines():  # "file:/root/.gitconfig\turl.git@host:.insteadof https://host/"
        origin, _, rest = line.partition("\t")
        key, _, prefix = rest.partition(" ")
        if key.startswith("url.") and key.lower().endswith(".insteadof") and prefix:
            rules.append(Rewrite(base=key[len("url."):-len(".insteadof")], prefix=prefix, origin=origin.removeprefix("file:")))
    return rules
