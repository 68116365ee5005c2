"""Typed configuration (DESIGN §3.7): load_config(path) -> Config, or ConfigError.

Every problem is reported as ``FILE:LINE: key.path: message`` so that an operator can jump
to the line; all problems are collected, not just the first. Validation is pydantic v2 with
unknown keys forbidden; cross-field rules (unique names, timeout < interval, known
vantages) run after `defaults` have been merged into each check.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import ssl
import socket
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from monitor.credentials import read_secret, user_password
from monitor.redact import redact_url

from monitor.model import VerdictName

# ---------------------------------------------------------------------------------------------
# Value types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '500ms', '2d' or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text) or pos == 0:
            raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 30s, 5m, 1h, 2d)")
    else:
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)]


def split_host_port(target: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); raises ValueError with a readable reason."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", target)
    if not m:
        raise ValueError(f"expected host:port (or [ipv6]:port), got {target!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def _valid_host_port(v: str) -> str:
    split_host_port(v)
    return v


def _valid_ip(v: str) -> str:
    ipaddress.ip_address(v)  # ValueError: "'x' does not appear to be an IPv4 or IPv6 address"
    return v


def _valid_network(v: str) -> str:
    ipaddress.ip_network(v, strict=False)  # ValueError: "'x' does not appear to be an IPv4 or IPv6 network"
    return v


HostPort = Annotated[str, AfterValidator(_valid_host_port)]
IPAddress = Annotated[str, AfterValidator(_valid_ip)]


# Said wherever a URL with userinfo is refused: the URL is shown in metric labels, logs and
# stored results, so the secret goes where the config says it is, never into the URL itself.
NO_CREDENTIALS_IN_URLS = "credentials in a URL would be shown in metric labels, logs and stored results"
FROM_ENV_OR_FILE = "name an environment variable or a file holding them instead (auth:, token_env, … in config.example.yaml)"


def _valid_http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {redact_url(v)!r}")
    if "@" in parts.netloc:
        raise ValueError(f"{NO_CREDENTIALS_IN_URLS}; {FROM_ENV_OR_FILE}")
    return v


HttpURL = Annotated[str, AfterValidator(_valid_http_url)]

PROXY_SCHEMES = ("http", "socks5", "socks5h")


def split_proxy_url(url: str) -> tuple[str, str, int]:
    """'http://HOST:PORT', 'socks5://HOST:PORT' or 'socks5h://HOST:PORT' -> (scheme, host, port).

    As in curl, socks5:// is given an address resolved here and socks5h:// the name (the proxy
    resolves it); http:// CONNECT always sends the name. Credentials in the URL are refused,
    and never echoed: the URL is shown in logs, results and labels, so a secret in it would
    spread everywhere; auth_env / auth_file say where the secret is instead.
    """
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(f"{NO_CREDENTIALS_IN_URLS}; use auth_env or auth_file")
    if parts.scheme not in PROXY_SCHEMES:
        raise ValueError(f"expected http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT, got {url!r}")
    try:
        port = parts.port
    except ValueError as e:  # urlsplit's own: "Port out of range 0-65535"
        raise ValueError(f"proxy {url!r}: {e}") from None
    if not parts.hostname or not port:
        raise ValueError(f"proxy {url!r}: expected SCHEME://HOST:PORT with an explicit port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy {url!r}: unexpected path, query or fragment")
    return parts.scheme, parts.hostname, port


def _valid_proxy_url(v: str) -> str:
    split_proxy_url(v)
    return v


ProxyURL = Annotated[str, AfterValidator(_valid_proxy_url)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _one_auth_source(auth_env: str | None, auth_file: str | None, proxy: str | None, proxy_key: str) -> None:
    """Proxy credentials (USER:PASSWORD) come from an environment variable or a file, read at
    each use and never kept: at most one source, and only where there is a proxy to use them."""
    if auth_env is not None and auth_file is not None:
        raise ValueError("give auth_env or auth_file, not both")
    if (auth_env is not None or auth_file is not None) and proxy is None:
        raise ValueError(f"auth_env / auth_file need a proxy ({proxy_key})")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpAuth(_Model):
    """Credentials for the server an http, goproxy or git check talks to (not a proxy's: those
    are auth_env / auth_file): exactly one source, read at each request, never kept or shown."""

    basic_env: EnvName | None = None  # environment variable holding USER:PASSWORD (Basic)
    basic_file: str | None = None  # file whose first line is USER:PASSWORD (Basic)
    bearer_env: EnvName | None = None  # environment variable holding a bearer token
    bearer_file: str | None = None  # file whose first line is a bearer token

    @model_validator(mode="after")
    def _one_source(self) -> HttpAuth:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of basic_env, basic_file, bearer_env, bearer_file")
        return self

    @property
    def file(self) -> str | None:
        return self.basic_file or self.bearer_file

    def header(self) -> tuple[str, str]:
        """("Authorization", value), read now; raises CredentialsUnavailable naming the source."""
        if self.basic_env is not None or self.basic_file is not None:
            pair = user_password(env=self.basic_env, file=self.basic_file, what="auth")
            assert pair is not None
            token = base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode("ascii")
            return "Authorization", f"Basic {token}"
        value = read_secret(env=self.bearer_env, file=self.bearer_file, what="auth")
        return "Authorization", f"Bearer {value}"


# Request headers that carry credentials: refused in `headers` (which are shown), given with `auth`.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _no_secret_headers(headers: dict[str, str]) -> dict[str, str]:
    secret = sorted(h for h in headers if h.lower() in SECRET_HEADERS)
    if secret:
        raise ValueError(f"{', '.join(secret)} would be shown with the check; give credentials with auth: {{basic_env|basic_file|bearer_env|bearer_file}}")
    return headers


# ---------------------------------------------------------------------------------------------
# Sections


class StorageConfig(_Model):
    url: str = "sqlite:///monitor.db"
    # The PostgreSQL password, if it is not in the URL: an environment variable or a file
    # (first line), read when a connection is made. Whatever its source it is never printed.
    password_env: EnvName | None = None
    password_file: str | None = None
    retention_raw: Duration = 30 * 86400.0
    # Results wait here between probes and the batch writer; a full queue, or a store that
    # cannot be written, moves them to the spool rather than blocking probes.
    queue_size: int = Field(default=10000, ge=1)
    # At most this many results per write. A batch is only as large as what is queued, so this
    # matters under a backlog (a spool replayed, a burst): per batch, each (check, vantage)
    # series costs one rollup row per grain however many of its results the batch holds.
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: Duration = 1.0
    # Directory where results wait on disk while the store is unreachable (replayed in order
    # when it is back, also after a restart); relative to the working directory. Default:
    # spool-<agent>. At most spool_max_results are kept; beyond that the oldest are dropped.
    spool_dir: str | None = None
    spool_max_results: int = Field(default=100000, ge=1)
    # Migrate the schema at start (agents take turns on a shared PostgreSQL). false: an
    # operator runs `monitor db upgrade`; until then an older schema means results spool.
    migrate: bool = True

    @field_validator("url")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("storage url must be sqlite:///PATH or postgresql+psycopg://…")
        try:
            make_url(v)
        except Exception:  # sqlalchemy's ArgumentError; its message repeats the URL, password included
            raise ValueError("storage url cannot be parsed (expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB)") from None
        return v

    @model_validator(mode="after")
    def _one_password(self) -> StorageConfig:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.url.startswith("postgresql"):
            raise ValueError("password_env / password_file apply to a postgresql url")
        if (self.password_env or self.password_file) and make_url(self.url).password is not None:
            raise ValueError("the url already holds a password: give it in one place")
        return self

    @property
    def dsn(self) -> str:
        """The URL to connect with: `url`, plus the password from password_env/file (read now).
        Raises CredentialsUnavailable when that source cannot be read."""
        password = read_secret(env=self.password_env, file=self.password_file, what="storage password")
        if password is None:
            return self.url
        return make_url(self.url).set(password=password).render_as_string(hide_password=False)

    @property
    def display_url(self) -> str:
        """The URL as it may be shown: its password, if any, masked."""
        return make_url(self.url).render_as_string(hide_password=True)


class ExporterConfig(_Model):
    listen: HostPort = "127.0.0.1:9464"
    # POST /-/reload re-reads the config from anyone who can reach the listener (as
    # Prometheus' --web.enable-lifecycle). Default: on when listening on loopback only.
    enable_reload: bool | None = None

    @property
    def reload_enabled(self) -> bool:
        if self.enable_reload is not None:
            return self.enable_reload
        host = split_host_port(self.listen)[0]
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"


class SchedulerConfig(_Model):
    # Probes running at once across all checks; the rest wait (and that wait shows as lag).
    max_concurrency: int = Field(default=64, ge=1, le=10000)


class TrustConfig(_Model):
    extra_ca_files: list[str] = []


class VantageConfig(_Model):
    name: Name
    # Every probe of this vantage leaves through this proxy (HTTP CONNECT or SOCKS5);
    # `bind` then sets the source address of the connection to the proxy.
    via: ProxyURL | None = None
    auth_env: EnvName | None = None  # environment variable holding USER:PASSWORD for `via`
    auth_file: str | None = None  # file whose first line is USER:PASSWORD for `via`
    bind: IPAddress | None = None
    # Probes of this vantage run inside this Linux network namespace (/run/netns/NAME, as
    # `ip netns add` makes it) and resolve with its /etc/netns/NAME/resolv.conf; needs
    # CAP_SYS_ADMIN. Checked at each use, not here: a missing namespace fails the probes as
    # network_unreachable, and may be created after the agent started.
    netns: str | None = None
    # A control: a vantage known to be clean (no censor, no failing proxy on its path), whose
    # results alone may tell "down for everyone" (server_down) from "blocked here". Results
    # from it say so (facts.control_vantage), so agents that share a store know it too.
    role: Literal["control"] | None = None

    @model_validator(mode="after")
    def _auth(self) -> VantageConfig:
        _one_auth_source(self.auth_env, self.auth_file, self.via, "via")
        return self

    @field_validator("netns")
    @classmethod
    def _netns_name(cls, v: str | None) -> str | None:
        # A file name under /run/netns: no path separators, nothing that reads as an option.
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}", v):
            raise ValueError(
                f"invalid network namespace name {v!r} (a name under /run/netns: letters, digits, "
                "'_', '.', '-', not starting with '.' or '-')"
            )
        return v


# ---------------------------------------------------------------------------------------------
# Alerting (monitor/alerts/): when verdict episodes alert, and where alerts go.

Severity = Literal["critical", "warning", "info"]
SEVERITIES = typing.get_args(Severity)
# Labels every alert carries, set by monitor: a user label may not replace one of them.
ALERT_LABELS = ("alertname", "severity", "check", "kind", "target", "vantage", "agent", "verdict")
# What `alerting.dashboard_url` may name; each is replaced by the alert's own value, URL-quoted.
DASHBOARD_FIELDS = ("check", "kind", "target", "vantage", "agent", "verdict")


def _severity(v: Any) -> Any:
    """One severity for every verdict, or a mapping verdict: severity; one readable message
    instead of pydantic's per-union-member ones."""
    one = f"{', '.join(SEVERITIES[:-1])} or {SEVERITIES[-1]}"
    if v is None or (isinstance(v, str) and v in SEVERITIES):
        return v
    if not isinstance(v, dict):
        raise ValueError(f"expected {one}, or a mapping of verdict to severity; got {v!r}")
    verdicts = {n.value for n in VerdictName} - {"ok", "inconclusive"}
    for verdict, severity in v.items():
        if verdict not in verdicts:
            raise ValueError(f"unknown verdict {verdict!r} (alerting verdicts: {', '.join(sorted(verdicts))})")
        if severity not in SEVERITIES:
            raise ValueError(f"{verdict}: expected {one}, got {severity!r}")
    return v


def _no_credentials(v: str) -> str:
    """For a URL that need not be http(s) (a base for runbook links): no userinfo either."""
    if "@" in urlsplit(v).netloc:
        raise ValueError(f"{NO_CREDENTIALS_IN_URLS}; {FROM_ENV_OR_FILE}")
    return v


class AlertConditions(_Model):
    """When the verdict episodes of a check alert (monitor/alerts/policy.py). `defaults.alert`
    applies to every check; a check's own `alert` overrides it key by key (labels merge)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool | None = None  # false: episodes are still stored, but never alert
    verdicts: list[VerdictName] | None = None  # only these verdicts alert (default: all but ok/inconclusive)
    for_: Duration | None = Field(default=None, alias="for")  # the episode has lasted this long since its first round
    rounds: int | None = Field(default=None, ge=1, le=10000)  # ...and said its verdict in at least this many rounds
    severity: Annotated[Severity | dict[VerdictName, Severity] | None, BeforeValidator(_severity)] = None  # one, or per verdict
    labels: dict[str, str] = {}

    @field_validator("verdicts")
    @classmethod
    def _alerting_verdicts(cls, v: list[VerdictName] | None) -> list[VerdictName] | None:
        quiet = [n.value for n in v or () if n in (VerdictName.OK, VerdictName.INCONCLUSIVE)]
        if quiet:
            raise ValueError(f"{', '.join(quiet)}: never alerts (ok and inconclusive describe no problem)")
        return v

    @field_validator("labels")
    @classmethod
    def _own_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name.startswith("__"):
                raise ValueError(f"invalid label name {name!r} (letters, digits and _, not starting with a digit or __)")
            if name in ALERT_LABELS:
                raise ValueError(f"label {name!r} is set by monitor (its own: {', '.join(ALERT_LABELS)})")
        return v


class WebhookConfig(_Model):
    """A generic JSON webhook: one POST per alert that fires and one when it resolves."""

    url: HttpURL
    token_env: EnvName | None = None  # environment variable holding a bearer token (Authorization header)
    token_file: str | None = None  # file whose first line is the bearer token
    secret_env: EnvName | None = None  # environment variable holding the HMAC-SHA256 key that signs each body
    secret_file: str | None = None  # file whose first line is that key

    @model_validator(mode="after")
    def _one_source_each(self) -> WebhookConfig:
        for what in ("token", "secret"):
            if getattr(self, f"{what}_env") is not None and getattr(self, f"{what}_file") is not None:
                raise ValueError(f"give {what}_env or {what}_file, not both")
        return self


def _alertmanager_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.query or parts.fragment:
        raise ValueError(f"{v!r}: expected the Alertmanager's base URL (alerts go to <url>/api/v2/alerts), without query or fragment")
    return v.rstrip("/")


class AlertingConfig(_Model):
    # Every one of them gets every alert, as Prometheus does (an Alertmanager cluster dedupes).
    alertmanager: list[Annotated[HttpURL, AfterValidator(_alertmanager_url)]] = []
    webhook: WebhookConfig | None = None
    poll_interval: Duration = 5.0  # how often the store's episodes are read
    resend_interval: Duration = 60.0  # firing alerts are re-sent this often; their endsAt is 4 of these ahead
    timeout: Duration = 10.0  # per request to a sink
    # runbook_url annotation: this base joined with "<alertname>.md" (docs/runbooks/ of this repository).
    runbook_base_url: Annotated[str, AfterValidator(_no_credentials)] = "docs/runbooks"
    # dashboard_url annotation, e.g. "https://grafana.example/d/monitor?var-check={check}&var-agent={agent}".
    dashboard_url: HttpURL | None = None

    @field_validator("alertmanager")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        twice = sorted({u for u in v if v.count(u) > 1})
        if twice:
            raise ValueError(f"Alertmanager listed twice: {', '.join(twice)}")
        return v

    @field_validator("dashboard_url")
    @classmethod
    def _known_fields(cls, v: str | None) -> str | None:
        unknown = sorted(set(re.findall(r"{([^{}]*)}", v or "")) - set(DASHBOARD_FIELDS))
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} (known: {', '.join('{' + f + '}' for f in DASHBOARD_FIELDS)})")
        return v


class Defaults(_Model):
    interval: Duration = 60.0
    timeout: Duration = 10.0
    vantages: list[Name] = ["local"]
    connect_timeout: Duration | None = None
    tls_timeout: Duration | None = None
    read_timeout: Duration | None = None
    alert: AlertConditions = AlertConditions()  # alert conditions of every check (see AlertConditions)


# ---------------------------------------------------------------------------------------------
# Checks. Every kind shares these fields; `defaults` fills interval/timeout/vantages.


class _CheckBase(_Model):
    name: Name
    interval: Duration
    timeout: Duration
    vantages: list[Name]
    # Separate deadlines per phase, as Go's http.Transport has; each defaults to `timeout`,
    # and the overall `timeout` always caps the whole probe.
    connect_timeout: Duration | None = None
    tls_timeout: Duration | None = None
    read_timeout: Duration | None = None
    alert: AlertConditions | None = None  # overrides defaults.alert key by key

    def phase_timeout(self, which: Literal["connect", "tls", "read"]) -> float:
        value = getattr(self, f"{which}_timeout")
        return min(value, self.timeout) if value is not None else self.timeout


class TcpCheck(_CheckBase):
    kind: Literal["tcp"]
    target: HostPort
    connect_to: IPAddress | None = None


    @property
    def display_target(self) -> str:
        return self.target


class TlsCheck(_CheckBase):
    kind: Literal["tls"]
    target: HostPort
    connect_to: IPAddress | None = None
    sni: str | None = None  # default: the target's host name
    alpn: list[str] = ["h2", "http/1.1"]
    # SNI experiment (monitor/probes/_sni.py): with a control name, the same address is also
    # handshaken with that name and with no SNI, so an SNI filter shows against a working control.
    control_sni: str | None = None
    # After a failure that looks like a censor's trigger, residual blocking may hit any new
    # connection to the same (IP, port) for minutes: the control is not sent there until then.
    holdoff: Duration = 180.0
    # Meanwhile the last control that completed on that (IP, port) is carried forward as the
    # comparison, if it is at most this old; an older one is sent again (see probes/_sni.py).
    control_max_age: Duration = 1800.0

    @model_validator(mode="after")
    def _control_differs(self) -> TlsCheck:
        if self.control_sni is not None and self.control_sni == (self.sni or split_host_port(self.target)[0]):
            raise ValueError(f"control_sni {self.control_sni!r} is the target's own SNI: a control must be another name")
        return self

    @property
    def display_target(self) -> str:
        return self.target


class HttpCheck(_CheckBase):
    kind: Literal["http"]
    url: HttpURL
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: Annotated[dict[str, str], AfterValidator(_no_secret_headers)] = {}
    auth: HttpAuth | None = None
    connect_to: IPAddress | None = None
    # Default: any 2xx, as blackbox_exporter's http prober.
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = []
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    http2: bool = False

    @property
    def display_target(self) -> str:
        return redact_url(self.url)


class DnsCheck(_CheckBase):
    kind: Literal["dns"]
    query: str
    type: Literal["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SOA", "HTTPS"] = "A"
    # udp://IP[:port], tcp://IP[:port], tls://NAME-or-IP[:853][#AUTH-NAME], https://HOST/PATH,
    # system — syntax in monitor/probes/dns_resolvers.py
    resolvers: list[str] = Field(min_length=1)
    # After the first UDP reply keep listening this long: a second, differing reply is the
    # signature of an on-path injector racing the real resolver.
    injection_window: Duration = 0.5
    # How https:// resolvers are asked (RFC 8484 §4.1): POST, or GET (cacheable by HTTP caches).
    doh_method: Literal["GET", "POST"] = "POST"

    @field_validator("query")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        import dns.exception
        import dns.name

        try:
            dns.name.from_text(v)
        except dns.exception.DNSException as e:
            raise ValueError(f"{v!r} is not a valid DNS name: {e}") from None
        return v

    @field_validator("resolvers")
    @classmethod
    def _resolver_specs(cls, v: list[str]) -> list[str]:
        # Imported here: the probes package imports this module, so not at its top.
        from monitor.probes.dns_resolvers import parse_resolver

        for spec in v:
            parse_resolver(spec)
        duplicates = sorted({s for s in v if v.count(s) > 1})
        if duplicates:  # each resolver's result is told apart by its spec
            raise ValueError(f"resolver listed twice: {', '.join(duplicates)}")
        return v

    @model_validator(mode="after")
    def _round_fits(self) -> DnsCheck:
        if "system" in self.resolvers and self.type not in ("A", "AAAA"):
            raise ValueError(f"the system resolver (getaddrinfo) answers only A and AAAA, not {self.type}")
        if self.injection_window >= self.timeout:
            raise ValueError(f"injection_window ({self.injection_window:g}s) must be less than timeout ({self.timeout:g}s)")
        return self

    @property
    def display_target(self) -> str:
        return self.query


class GoproxyCheck(_CheckBase):
    """Fetch module@version through a Go module proxy as `go mod download` does and prove the
    bytes honest: go.sum hashes against the pins and/or the checksum database."""

    kind: Literal["goproxy"]
    proxy: str  # one proxy URL, or a GOPROXY list: "https://a,https://b|direct"
    module: str
    version: str = "latest"  # a canonical version (v1.2.3), or "latest" as the go command picks it
    # Checksum database name, or "off" (then the pins alone decide). YAML reads a bare off as
    # false, so false means off too.
    sumdb: Annotated[str, BeforeValidator(lambda v: "off" if v is False else v)] = "sum.golang.org"
    sumdb_url: HttpURL | None = None  # ask this URL only (as GOSUMDB "name key url"); default: via the proxies, else https://<sumdb>
    sumdb_key: str | None = None  # verifier key; default: sum.golang.org's
    expect_h1: str | None = None  # pinned go.sum hash of the zip, "h1:…"
    expect_gomod_h1: str | None = None  # pinned go.sum hash of the .mod file
    max_zip_bytes: int = Field(default=500 << 20, ge=1, le=500 << 20)  # zip.MaxZipFile is the ceiling
    auth: HttpAuth | None = None  # credentials for the proxies (a private Athens / Artifactory), as .netrc gives the go command

    # Imported inside the validators: the probes package imports this module, so not at its top.
    @field_validator("proxy")
    @classmethod
    def _proxy_list(cls, v: str) -> str:
        from monitor.probes._goproxy_list import DIRECT, OFF, parse_goproxy

        entries = parse_goproxy(v)
        if entries[0].url in (DIRECT, OFF):
            raise ValueError("the list must start with a proxy URL: direct and off leave nothing for this check to fetch")
        if any("@" in urlsplit(e.url).netloc for e in entries):
            raise ValueError(f"{NO_CREDENTIALS_IN_URLS}; {FROM_ENV_OR_FILE}")
        return v

    @field_validator("module")
    @classmethod
    def _module_path(cls, v: str) -> str:
        from monitor.probes._gomod import check_module_path

        check_module_path(v)
        return v

    @field_validator("expect_h1", "expect_gomod_h1")
    @classmethod
    def _h1(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", v):
            raise ValueError(f"expected a go.sum hash h1:<base64 of 32 bytes>, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GoproxyCheck:
        from monitor.probes._gomod import check_module_version
        from monitor.probes._sumdb import verifier_for

        if self.version != "latest":
            check_module_version(self.module, self.version)
        if self.sumdb == "off":
            if self.expect_h1 is None and self.expect_gomod_h1 is None:
                raise ValueError("with sumdb: off, give expect_h1 and/or expect_gomod_h1: nothing else proves the bytes")
            if self.sumdb_url or self.sumdb_key:
                raise ValueError("sumdb_url and sumdb_key have no use with sumdb: off")
        else:
            verifier_for(self.sumdb, self.sumdb_key)
        return self

    @property
    def display_target(self) -> str:
        return f"{self.module}@{self.version} via {redact_url(self.proxy)}"




def url_host_port(url: str) -> tuple[str, int]:
    """(host, port) an http(s) URL connects to, the scheme's port if none is given."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


class ProxyCheck(_CheckBase):
    """Does this proxy carry traffic? mode connect: TCP to the proxy (proxy_connect), the
    tunnel's setup (proxy_handshake: CONNECT's 2xx or the SOCKS5 reply), then through the tunnel
    an HTTP request to `url`, or without one a TLS handshake with `target` (`tls: false`: the
    tunnel alone). mode forward: `url` (plain http://) requested from an HTTP proxy by its
    absolute URI, as a browser's forward proxy is used."""

    kind: Literal["proxy"]
    proxy: ProxyURL
    auth_env: EnvName | None = None  # environment variable holding USER:PASSWORD for the proxy
    auth_file: str | None = None  # file whose first line is USER:PASSWORD for the proxy
    mode: Literal["connect", "forward"] = "connect"
    target: HostPort | None = None  # what the tunnel is asked for; default: the url's host:port
    connect_to: IPAddress | None = None  # ask the proxy for this address instead of the name
    url: HttpURL | None = None
    tls: bool = True
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = []  # default: any 2xx
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> ProxyCheck:
        _one_auth_source(self.auth_env, self.auth_file, self.proxy, "proxy")
        if self.mode == "forward":
            if self.url is None or not self.url.startswith("http://"):
                raise ValueError("mode forward needs an http:// url (https goes through a CONNECT tunnel: mode connect)")
            if not self.proxy.startswith("http://"):
                raise ValueError("mode forward needs an http:// proxy (SOCKS5 has no forward mode)")
            if self.target is not None or self.connect_to is not None:
                raise ValueError("target and connect_to apply to mode connect only")
        elif self.url is None and self.target is None:
            raise ValueError("mode connect needs a target (host:port) or a url")
        elif self.url is not None and self.target is not None and split_host_port(self.target) != url_host_port(self.url):
            raise ValueError(f"url {self.url!r} is not on target {self.target!r}: give one of them, or make them agree")
        if self.url is not None and "tls" in self.model_fields_set:
            raise ValueError("tls applies without url only (the url's scheme says whether TLS is used)")
        return self

    @property
    def display_target(self) -> str:
        return f"{redact_url(self.url) if self.url else self.target} via {self.proxy}"


class GitCheck(_CheckBase):
    """Can this vantage fetch from a Git host? Smart HTTP (`url`: GET info/refs of
    git-upload-pack must answer with the service advertisement and at least one ref) and SSH
    (`ssh`: TCP connect and the server's SSH-2.0 banner, no login), side by side in one result."""

    kind: Literal["git"]
    url: HttpURL | None = None  # the repository's URL, as given to git clone
    ssh: HostPort | None = None  # e.g. "github.com:22"
    auth: HttpAuth | None = None  # credentials for the smart HTTP side (a private repository)

    @model_validator(mode="after")
    def _something_to_check(self) -> GitCheck:
        if self.url is None and self.ssh is None:
            raise ValueError("give url (smart HTTP), ssh (host:port), or both")
        return self

    @property
    def display_target(self) -> str:
        return " + ".join([*([redact_url(self.url)] if self.url else []), *([f"ssh://{self.ssh}"] if self.ssh else [])])


class SiteCheck(_CheckBase):
    """The composite check (monitor/probes/site.py): in one round, `domain` is resolved by the
    plain `resolvers` and the encrypted `references`, every answered address is handshaken
    with the domain's SNI, the control SNI and no SNI, and one HTTPS GET is made; then the
    rules of monitor/analysis/verdicts.py say what stands between this vantage and the site.
    A round that shows a failure is repeated up to `attempts` times and the majority decides."""

    kind: Literal["site"]
    domain: str
    port: int = Field(default=443, ge=1, le=65535)
    path: str = Field(default="/", pattern=r"^/")
    control_sni: str  # a name the same servers answer for (or at least complete a handshake with)
    # Plain resolvers: udp://, tcp://, system. The ones a censor can lie through.
    resolvers: list[str] = Field(default=["system"], min_length=1)
    # Encrypted references (tls:// and https://, at least one of each): the path a censor on
    # the way cannot rewrite, against which the plain answers are judged.
    references: list[str] = Field(min_length=2)
    attempts: int = Field(default=3, ge=1, le=9)  # rounds when the first shows a failure; majority decides
    max_ips: int = Field(default=4, ge=1, le=16)  # answered addresses handshaken per round
    injection_window: Duration = 0.3
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = []  # of the GET; default: any 2xx
    holdoff: Duration = 180.0  # residual blocking, as the tls check's
    control_max_age: Duration = 1800.0  # carried-forward control, as the tls check's

    @field_validator("domain", "control_sni")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        return DnsCheck._dns_name(v)

    @field_validator("resolvers")
    @classmethod
    def _plain(cls, v: list[str]) -> list[str]:
        from monitor.probes.dns_resolvers import parse_resolver

        DnsCheck._resolver_specs(v)
        encrypted = [s for s in v if parse_resolver(s).encrypted]
        if encrypted:
            raise ValueError(f"resolvers are the plain ones (udp://, tcp://, system); put {', '.join(encrypted)} under references")
        return v

    @field_validator("references")
    @classmethod
    def _encrypted(cls, v: list[str]) -> list[str]:
        from monitor.probes.dns_resolvers import parse_resolver

        DnsCheck._resolver_specs(v)
        transports = {parse_resolver(s).transport for s in v}
        if not transports <= {"tls", "https"} or transports != {"tls", "https"}:
            raise ValueError("references need at least one tls:// (DoT) and one https:// (DoH) resolver, and nothing else")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SiteCheck:
        if self.control_sni.rstrip(".").lower() == self.domain.rstrip(".").lower():
            raise ValueError(f"control_sni {self.control_sni!r} is the domain itself: a control must be another name")
        overlap = sorted(set(self.resolvers) & set(self.references))
        if overlap:
            raise ValueError(f"resolver listed twice: {', '.join(overlap)}")
        if self.injection_window >= self.timeout:
            raise ValueError(f"injection_window ({self.injection_window:g}s) must be less than timeout ({self.timeout:g}s)")
        return self

    @property
    def display_target(self) -> str:
        return self.domain

    @property
    def url(self) -> str:
        return f"https://{self.domain}{'' if self.port == 443 else f':{self.port}'}{self.path}"


Check = Annotated[
    Union[TcpCheck, TlsCheck, HttpCheck, DnsCheck, GoproxyCheck, ProxyCheck, GitCheck, SiteCheck], Field(discriminator="kind")
]


class AnalysisConfig(_Model):
    """How verdicts become episodes (monitor/analysis/episodes.py) and which other vantages count."""

    confirmations: int = Field(default=2, ge=1, le=100)  # rounds in a row with one verdict before its episode opens
    clean_rounds: int = Field(default=2, ge=1, le=100)  # ok rounds in a row before an open episode closes
    # Share of a check's attempts that fail, without one explanation holding the majority,
    # from which the check is `degraded` rather than `inconclusive`.
    degraded_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    # Results of other vantages older than this are not consulted ("fails here, works there").
    cross_vantage_max_age: Duration = 900.0
    # Controls: vantages known to be clean, as VANTAGE (any agent's) or VANTAGE@AGENT, besides
    # the vantages of this config marked `role: control`. Only a control that failed the same
    # way makes a failure `server_down`; a failing vantage that is not one may be censored too.
    controls: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*(@[A-Za-z0-9][A-Za-z0-9_.:-]*)?$")]] = []
    # Networks where private answers are expected (split-horizon or internal resolvers): an
    # answer in one of them is never taken for poisoning. Others that are not globally
    # routable are poisoning only when the encrypted resolvers disagree with them.
    private_networks: list[Annotated[str, AfterValidator(_valid_network)]] = []


class ReportSlo(_Model):
    """The service-level objectives the health score measures against (docs/report.md)."""

    availability: float = Field(default=0.995, gt=0.0, lt=1.0)  # share of runs that succeed
    latency_p95: Duration = 2.0  # 95th percentile of successful runs' duration


class ReportWeights(_Model):
    """How much each part weighs in the health score (relative; normalised to their sum)."""

    availability: float = Field(default=0.5, ge=0.0)
    latency: float = Field(default=0.2, ge=0.0)
    blocked: float = Field(default=0.3, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> ReportWeights:
        if self.availability + self.latency + self.blocked <= 0:
            raise ValueError("at least one weight must be positive")
        return self


_LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


class ReportConfig(_Model):
    """`monitor report` (monitor/report/): title, logo and the objectives of the health score."""

    title: str = Field(default="Network and module-proxy health", min_length=1, max_length=200)
    # An image file embedded in the report (HTML/PDF carry no external assets); relative to
    # the working directory. Read when a report is made.
    logo: str | None = None
    slo: ReportSlo = ReportSlo()
    weights: ReportWeights = ReportWeights()

    @field_validator("logo")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().endswith(_LOGO_SUFFIXES):
            raise ValueError(f"logo must be an image file ({', '.join(_LOGO_SUFFIXES)}), got {v!r}")
        return v


class Config(_Model):
    agent: Name = Field(default_factory=lambda: socket.gethostname().split(".")[0] or "agent")
    storage: StorageConfig = StorageConfig()
    exporter: ExporterConfig = ExporterConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    trust: TrustConfig = TrustConfig()
    vantages: list[VantageConfig] = [VantageConfig(name="local")]
    defaults: Defaults = Defaults()
    checks: list[Check] = []
    analysis: AnalysisConfig = AnalysisConfig()
    alerting: AlertingConfig = AlertingConfig()
    report: ReportConfig = ReportConfig()

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def vantage(self, name: str) -> VantageConfig:
        for v in self.vantages:
            if v.name == name:
                return v
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Loading with file:line errors


class ConfigError(Exception):
    """A config that cannot be used; `problems` are ready-to-print 'FILE:LINE: key: message'."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Located:
    """Finds the line of a key path in the YAML node tree (1-based)."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line_and_path(self, loc: tuple[Any, ...]) -> tuple[int, str]:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else 1
        shown: list[Any] = []
        for i, part in enumerate(loc):
            if i > 0 and isinstance(loc[i - 1], int) and part in _CHECK_KINDS:
                continue  # pydantic's tag for the matched union member, not a YAML key
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == part:
                        line, node = k.start_mark.line + 1, v
                        break
                else:
                    node = None  # a missing key: keep the parent's line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                node = None
            shown.append(part)
        return line, _format_path(shown)


_CHECK_KINDS = {typing.get_args(m.model_fields["kind"].annotation)[0] for m in typing.get_args(typing.get_args(Check)[0])}


def _format_path(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...] = (), visited: set[int] | None = None) -> list[tuple[tuple[Any, ...], int, str]]:
    # An alias is the anchored node itself, met again: each node is walked once, so a
    # recursive alias (&a [*a]) ends and nested aliases (a "billion laughs") cost their size.
    visited = set() if visited is None else visited
    if id(node) in visited:
        return []
    visited.add(id(node))
    found = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = getattr(k, "value", None)
            if key in seen:
                found.append((path + (key,), k.start_mark.line + 1, f"duplicate key {key!r}"))
            seen.add(key)
            found += _duplicate_keys(v, path + (key,), visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found += _duplicate_keys(v, path + (i,), visited)
    return found


def _merge_defaults(raw: dict[str, Any]) -> None:
    defaults = raw.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    base = Defaults.model_fields
    checks = raw.get("checks")
    for check in checks if isinstance(checks, list) else []:  # not a list: validation says so
        if not isinstance(check, dict):
            continue
        for key in ("interval", "timeout", "vantages", "connect_timeout", "tls_timeout", "read_timeout"):
            if key not in check:
                if key in defaults:
                    check[key] = defaults[key]
                elif key in base:
                    check[key] = base[key].default


def _cross_checks(cfg: Config) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    seen: dict[str, int] = {}
    for i, v in enumerate(cfg.vantages):
        if v.name in seen:
            problems.append((("vantages", i, "name"), f"duplicate vantage name {v.name!r}"))
        seen[v.name] = i
    names: dict[str, int] = {}
    for i, c in enumerate(cfg.checks):
        if c.name in names:
            problems.append(((("checks", i, "name")), f"duplicate check name {c.name!r} (first at checks[{names[c.name]}])"))
        names.setdefault(c.name, i)
        if c.timeout >= c.interval:
            problems.append((("checks", i, "timeout"), f"timeout ({c.timeout:g}s) must be less than interval ({c.interval:g}s)"))
        for which in ("connect_timeout", "tls_timeout", "read_timeout"):
            value = getattr(c, which)
            if value is not None and value > c.timeout:
                problems.append((("checks", i, which), f"{which} ({value:g}s) exceeds timeout ({c.timeout:g}s)"))
        for vname in c.vantages:
            if vname not in seen:
                problems.append((("checks", i, "vantages"), f"unknown vantage {vname!r} (known: {', '.join(seen)})"))
        if not c.vantages:
            problems.append((("checks", i, "vantages"), "at least one vantage is required"))
        if isinstance(c, (DnsCheck, SiteCheck)):
            problems += _dns_through_proxy(c, i, {v.name for v in cfg.vantages if v.via})
    return problems


def _file_checks(cfg: Config) -> list[tuple[tuple[Any, ...], str]]:
    """Every file the config names must be readable now (and a CA file must hold certificates):
    found at load, by check-config and by a reload, rather than at each probe's run."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i, path in enumerate(cfg.trust.extra_ca_files):
        why = _unusable_ca_file(path)
        if why:
            problems.append((("trust", "extra_ca_files", i), why))
    named: list[tuple[tuple[Any, ...], str | None]] = [(("storage", "password_file"), cfg.storage.password_file)]
    named += [(("vantages", i, "auth_file"), v.auth_file) for i, v in enumerate(cfg.vantages)]
    for i, c in enumerate(cfg.checks):
        named.append((("checks", i, "auth_file"), getattr(c, "auth_file", None)))
        auth = getattr(c, "auth", None)
        if auth is not None:
            named.append((("checks", i, "auth", "basic_file" if auth.basic_file else "bearer_file"), auth.file))
    for loc, path in named:
        if path is not None and (why := _unreadable(path)):
            problems.append((loc, why))
    return problems


def _unreadable(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            if not Path(path).is_file():  # /dev/zero, a FIFO: reading it would never end
                return f"{path} is not a regular file"
            f.read(1)
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"
    return None


def _unusable_ca_file(path: str) -> str | None:
    if why := _unreadable(path):
        return why
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:
        return f"{path} holds no usable PEM certificate ({e.reason or e})"
    return None


def _dns_through_proxy(c: DnsCheck | SiteCheck, i: int, proxied: set[str]) -> list[tuple[tuple[Any, ...], str]]:
    """A proxy carries TCP streams only: UDP queries cannot go through it, and the system
    resolver would ask this host's resolver, not one in the proxy's network."""
    unroutable = [r for r in c.resolvers if r == "system" or r.startswith("udp://")]
    return [
        (("checks", i, "vantages"), f"vantage {v!r} sends through a proxy, which cannot carry {', '.join(unroutable)} (use tcp://, tls:// or https:// resolvers)")
        for v in c.vantages
        if v in proxied and unroutable
    ]


def load_config_text(text: str, filename: str = "<config>") -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{filename}:{line}: yaml: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{filename}:1: yaml: {e}"]) from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise ConfigError([f"{filename}:1: yaml: nested too deeply"]) from None

    located = _Located(root)
    if raw is None:
        raise ConfigError([f"{filename}:1: (top level): the file is empty (`monitor sample-config` prints a documented example)"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{filename}:1: (top level): expected a mapping of sections, got {type(raw).__name__}"])
    problems: list[tuple[int, str]] = []
    for path, line, msg in _duplicate_keys(root):
        problems.append((line, f"{filename}:{line}: {_format_path(list(path))}: {msg}"))

    _merge_defaults(raw)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            line, path = located.line_and_path(tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "union_tag_not_found":
                line, path = located.line_and_path(tuple(err["loc"]) + ("kind",))
                msg = f"missing check kind (known: {', '.join(sorted(_CHECK_KINDS))})"
            elif err["type"] == "union_tag_invalid":
                msg = f"unknown check kind {err['input'].get('kind') if isinstance(err['input'], dict) else err['input']!r} (known: {', '.join(sorted(_CHECK_KINDS))})"
            problems.append((line, f"{filename}:{line}: {path}: {msg}"))
        raise ConfigError([p for _, p in sorted(problems, key=lambda t: t[0])]) from None

    for loc, msg in _cross_checks(cfg) + _file_checks(cfg):
        line, path = located.line_and_path(loc)
        problems.append((line, f"{filename}:{line}: {path}: {msg}"))
    if problems:
        raise ConfigError([p for _, p in sorted(problems, key=lambda t: t[0])])
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: not UTF-8 text: {e}"]) from None
    return load_config_text(text, str(path))


def runnable_problems(cfg: Config, filename: str) -> list[str]:
    """Why a valid config would still give a daemon with nothing to do (check-config and run)."""
    if not cfg.checks:
        return [f"{filename}: checks: no checks configured: the daemon would measure nothing"]
    return []
