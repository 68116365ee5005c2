"""Typed configuration (DESIGN §3.7): load_config(path) -> Config, or ConfigError.

Every problem is reported as ``FILE:LINE: key.path: message`` so that an operator can jump
to the line; all problems are collected, not just the first. Validation is pydantic v2 with
unknown keys forbidden; cross-field rules (unique names, timeout < interval, known
vantages) run after `defaults` have been merged into each check.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

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


HostPort = Annotated[str, AfterValidator(_valid_host_port)]
IPAddress = Annotated[str, AfterValidator(_valid_ip)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Sections


class StorageConfig(_Model):
    url: str = "sqlite:///monitor.db"
    retention_raw: Duration = 30 * 86400.0
    # Results wait here between probes and the batch writer; a full queue drops the oldest
    # result with a log line and a counter rather than blocking probes.
    queue_size: int = Field(default=10000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    flush_interval: Duration = 1.0

    @field_validator("url")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("storage url must be sqlite:///PATH or postgresql+psycopg://…")
        return v


class ExporterConfig(_Model):
    listen: HostPort = "127.0.0.1:9464"


class SchedulerConfig(_Model):
    # Probes running at once across all checks; the rest wait (and that wait shows as lag).
    max_concurrency: int = Field(default=64, ge=1, le=10000)


class TrustConfig(_Model):
    extra_ca_files: list[str] = []


class VantageConfig(_Model):
    name: Name
    via: str | None = None
    bind: str | None = None
    netns: str | None = None

    @field_validator("via")
    @classmethod
    def _not_yet(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError("proxy vantages (via) are not supported yet")
        return v

    @field_validator("netns")
    @classmethod
    def _netns_not_yet(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError("network-namespace vantages (netns) are not supported yet")
        return v


class Defaults(_Model):
    interval: Duration = 60.0
    timeout: Duration = 10.0
    vantages: list[Name] = ["local"]


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


    @property
    def display_target(self) -> str:
        return self.target


class HttpCheck(_CheckBase):
    kind: Literal["http"]
    url: str
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = {}
    connect_to: IPAddress | None = None
    # Default: any 2xx, as blackbox_exporter's http prober.
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = []
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    http2: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v

    @property
    def display_target(self) -> str:
        return self.url


class DnsCheck(_CheckBase):
    kind: Literal["dns"]
    query: str
    type: Literal["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SOA", "HTTPS"] = "A"
    # udp://IP[:port], tcp://IP[:port], tls://NAME-or-IP[:853], https://HOST/PATH, system
    resolvers: list[str] = Field(min_length=1)
    # After the first UDP reply keep listening this long: a second, differing reply is the
    # signature of an on-path injector racing the real resolver.
    injection_window: Duration = 0.5

    @property
    def display_target(self) -> str:
        return self.query


Check = Annotated[Union[TcpCheck, TlsCheck, HttpCheck, DnsCheck], Field(discriminator="kind")]


class Config(_Model):
    agent: Name = Field(default_factory=lambda: socket.gethostname().split(".")[0] or "agent")
    storage: StorageConfig = StorageConfig()
    exporter: ExporterConfig = ExporterConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    trust: TrustConfig = TrustConfig()
    vantages: list[VantageConfig] = [VantageConfig(name="local")]
    defaults: Defaults = Defaults()
    checks: list[Check] = []

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


def _duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], int, str]]:
    found = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = getattr(k, "value", None)
            if key in seen:
                found.append((path + (key,), k.start_mark.line + 1, f"duplicate key {key!r}"))
            seen.add(key)
            found += _duplicate_keys(v, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found += _duplicate_keys(v, path + (i,))
    return found


def _merge_defaults(raw: dict[str, Any]) -> None:
    defaults = raw.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    base = Defaults.model_fields
    for check in raw.get("checks") or []:
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
    return problems


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

    located = _Located(root)
    if raw is None:
        raw = {}
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

    for loc, msg in _cross_checks(cfg):
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
        raise ConfigError([f"{p}:0: (file): cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}:0: (file): not UTF-8 text: {e}"]) from None
    return load_config_text(text, str(path))
