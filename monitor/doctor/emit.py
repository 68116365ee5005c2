"""`--emit-config FILE`: the path doctor measured, as a monitor config that watches it.

The checks are the ones doctor ran (monitor/doctor/run.py builds them as config models):
a site check per host the go command reaches directly, a goproxy check per proxy on the
GOPROXY path (and one for the recommended list), the git repository of `direct`, the
environment's proxy. What doctor learned is pinned: the resolved module version and its
go.sum hashes (only hashes a checksum database vouched for, or go.sum's own). The text is
validated with the config loader before it is written, so it passes `monitor check-config`.
"""

from __future__ import annotations

from typing import Any

import yaml

from monitor.config import GoproxyCheck, load_config_text
from monitor.doctor import Result
from monitor.doctor.diagnose import fetch_status
from monitor.doctor.goenv import redact
from monitor.model import format_time, utcnow

_PATH_VANTAGE = "go-path"  # the vantage with HTTPS_PROXY, when the environment has one


def emit_config(result: Result) -> str:
    m, plan, d = result.measured, result.plan, result.diagnosis
    vantage = m.vantage
    base: dict[str, Any] = {"name": vantage.name}
    if vantage.netns:
        base["netns"] = vantage.netns
    if vantage.bind:
        base["bind"] = vantage.bind
    if vantage.via:
        base["via"] = vantage.via[0].url
    vantages = [base]
    path_name = vantage.name
    if m.path_vantage is not vantage:
        proxy = m.path_vantage.via[-1]
        path_name = _PATH_VANTAGE if vantage.name != _PATH_VANTAGE else f"{_PATH_VANTAGE}-2"
        vantages.append({**{k: v for k, v in base.items() if k != "name"}, "name": path_name, "via": proxy.url,
                         **({"auth_env": proxy.auth_env} if proxy.auth_env else {})})

    checks: list[dict[str, Any]] = []
    for h in m.hosts.values():
        if h.check is not None and _on_path(plan, h, d):
            checks.append(_dump(h.check, vantage.name))
    pins = _learned_pins(result)
    on_path = {p for r in plan.routes for p in r.proxies}
    fix = next((f for f in d.fixes if f.kind == "goproxy"), None)
    for (proxy, path), f in m.fetches.items():
        if proxy in on_path or (fix is not None and proxy in fix.command):
            checks.append(_dump(_pinned(f.check, pins), path_name, name=_unique(checks, f.check.name)))
    if m.verification is not None and m.verification.result is not None and m.verification.result.ok:
        checks.append(_dump(_pinned(m.verification.check, pins), path_name, name=_unique(checks, "module-fix")))
    for dct in m.directs.values():
        if dct.check is not None:
            checks.append(_dump(dct.check, vantage.name if dct.check.ssh else path_name, name=_unique(checks, dct.check.name)))
    for p in m.env_proxies:
        checks.append(_dump(p.check, vantage.name, name=_unique(checks, p.check.name)))

    config: dict[str, Any] = {
        "vantages": vantages,
        "defaults": {"vantages": [vantage.name], "interval": f"{result.settings.interval:g}s", "timeout": f"{result.settings.timeout:g}s"},
        "checks": checks,
    }
    if vantage.extra_ca_files:
        config["trust"] = {"extra_ca_files": list(vantage.extra_ca_files)}
    env = ", ".join(f"{k}={redact(v)}" for k, v in d.goenv.settings().items() if v)
    header = (
        f"# Written by `monitor doctor` at {format_time(utcnow())} from vantage {vantage.name}\n"
        f"# ({d.goenv.source}: {env}).\n"
        "# It watches the path `go mod download` takes from there. Validate: monitor check-config FILE;\n"
        "# run: monitor run -c FILE (or monitor probe -c FILE --once).\n"
    )
    if any(v.get("auth_env") for v in vantages):
        header += "# The proxy's credentials are read from the environment variable named by auth_env (USER:PASSWORD).\n"
    text = header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=200)
    load_config_text(text, "<emitted>")  # a config we cannot load is a bug here, not the user's problem
    return text


def _on_path(plan: Any, h: Any, d: Any) -> bool:
    """Hosts of candidate proxies that failed are not on any path worth watching."""
    if h.role != "goproxy":
        return True
    on_path = [p for r in plan.routes for p in r.proxies]
    fix = next((f.command for f in d.fixes if f.kind == "goproxy"), "")
    return any(f"//{h.host}" in p for p in on_path) or f"//{h.host}" in fix


def _learned_pins(result: Result) -> dict[tuple[str, str], tuple[str, str]]:
    """(module, version) -> go.sum hashes that a checksum database vouched for in this run."""
    pins: dict[tuple[str, str], tuple[str, str]] = {}
    for f in [*result.measured.fetches.values(), result.measured.verification]:
        r = f.result if f is not None else None
        if r is None or not isinstance(f.check, GoproxyCheck):
            continue
        facts = r.facts
        version = facts.get("version")
        if fetch_status(r)[0] == "ok" and r.ok and facts.get("checksum_ok") and facts.get("h1") and facts.get("gomod_h1"):
            pins[(f.check.module, version)] = (facts["h1"], facts["gomod_h1"])
        elif (facts.get("sumdb") or {}).get("verified"):
            expected = facts.get("expected") or {}
            zip_h1 = next((v for k, v in (expected.get("zip") or {}).items() if "record" in k), None)
            mod_h1 = next((v for k, v in (expected.get("go.mod") or {}).items() if "record" in k), None)
            if zip_h1 and mod_h1:
                pins.setdefault((f.check.module, version), (zip_h1, mod_h1))
    return pins


def _pinned(check: Any, pins: dict[tuple[str, str], tuple[str, str]]) -> Any:
    if not isinstance(check, GoproxyCheck):
        return check
    for (module, version), (zip_h1, mod_h1) in pins.items():
        if module == check.module and (check.version in (version, "latest")):
            return check.model_copy(update={"version": version, "expect_h1": zip_h1, "expect_gomod_h1": mod_h1})
    return check


def _dump(check: Any, vantage: str, *, name: str | None = None) -> dict[str, Any]:
    data = check.model_dump(mode="json", exclude_defaults=True)
    data["kind"] = check.kind
    data["vantages"] = [vantage]
    data.pop("interval", None)
    data.pop("timeout", None)
    if name:
        data["name"] = name
    for key in ("connect_timeout", "tls_timeout", "read_timeout", "injection_window", "holdoff"):
        if isinstance(data.get(key), (int, float)):
            data[key] = f"{data[key]:g}s"
    order = ["name", "kind"]
    return {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}


def _unique(checks: list[dict[str, Any]], name: str) -> str:
    taken = {c["name"] for c in checks}
    if name not in taken:
        return name
    for i in range(2, 1000):
        if f"{name}-{i}" not in taken:
            return f"{name}-{i}"
    raise ValueError(f"too many checks named {name}")
