"""A diagnosis for people (short plain text) and for machines (`--json`, docs/doctor.md)."""

from __future__ import annotations

from typing import Any

from monitor.doctor.diagnose import Diagnosis, Hop
from monitor.model import format_time, utcnow

JSON_VERSION = 1
_MARK = {"ok": "ok  ", "failed": "FAIL", "not_found": "404 ", "unmeasured": "--  "}


def to_json(d: Diagnosis, *, duration_s: float) -> dict[str, Any]:
    return {
        "doctor": JSON_VERSION,
        "generated_at": format_time(utcnow()),
        "duration_s": round(duration_s, 3),
        "vantage": d.vantage,
        "compared_with": d.compared_with,
        "healthy": d.healthy,
        "exit_code": d.exit_code,
        "goenv": {"source": d.goenv.source, **d.goenv.settings()},
        "modules": [m.to_json() for m in d.modules],
        "hosts": d.hosts,
        "fixes": [f.to_json() for f in d.fixes],
        "refused": d.refused,
        "warnings": d.warnings,
    }


def to_text(d: Diagnosis, *, duration_s: float) -> str:
    env = d.goenv.settings()
    lines = [
        f"monitor doctor: go mod download from {d.vantage}"
        + (f" (compared with {', '.join(d.compared_with)})" if d.compared_with else "") + f", {duration_s:.1f} s",
        f"  {d.goenv.source}: GOPROXY={env['GOPROXY']} GOSUMDB={_short(env['GOSUMDB'])}"
        + "".join(f" {k}={v}" for k, v in env.items() if v and k not in ("GOPROXY", "GOSUMDB")),
        "",
    ]
    for m in d.modules:
        lines.append(f"{m.module.path}@{m.version}{' (private)' if m.private else ''}: {m.summary}")
        for hop in m.hops:
            lines += _hop(hop)
        lines.append("")
    if d.fixes:
        lines.append("Fix:")
        for f in d.fixes:
            lines.append(f"  {f.command}")
            lines.append(f"      {f.why}")
    elif d.healthy:
        lines.append("Healthy: every hop works from here; nothing to fix.")
    else:
        lines.append("No fix found: nothing doctor tried works from here (try --try-proxy URL, or another vantage).")
    for r in d.refused:
        lines.append(f"Not recommended: {r['setting']}: {r['why']}")
    for w in d.warnings:
        lines.append(f"Warning: {w}")
    lines.append(f"exit code {d.exit_code}")
    return "\n".join(lines) + "\n"


def _hop(hop: Hop) -> list[str]:
    role = {"goproxy": "proxy", "git_https": "git https", "git_ssh": "git ssh", "env_proxy": "HTTPS_PROXY",
            "sumdb": "checksum db", "discovery": "go-get"}.get(hop.role, hop.role)
    state = _MARK.get(hop.status, hop.status)
    tail = "" if hop.reached else "   (not reached)"
    line = f"  {state} {role:<12} {hop.target}{hop.separator or ''}{tail}"
    out = [line]
    if hop.status == "failed":
        if hop.failure:
            out.append(f"       {hop.failure.cls.value} during {hop.failure.operation.value}: {_clip(hop.failure.detail)}")
        if hop.verdict:
            out.append(f"       {hop.verdict.name.value} ({hop.verdict.confidence.value})")
            out += [f"         - {_clip(e)}" for e in hop.verdict.evidence[:4]]
    out += [f"       {n}" for n in hop.notes if hop.status != "ok" or hop.role == "sumdb"]
    return out


def _short(value: str) -> str:
    """A verifier key is long; its name says which database."""
    first, *rest = value.split()
    if first.count("+") == 2:
        first = first.split("+")[0] + "+…"
    return " ".join([first, *rest])


def _clip(s: str, n: int = 160) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
