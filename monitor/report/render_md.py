"""The report document as Markdown (GitHub-flavoured tables): for a wiki page or a ticket.
Charts are left to the HTML and PDF formats."""

from __future__ import annotations

from typing import Any


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3f}%"


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f} s" if x >= 1 else f"{x * 1000:.0f} ms")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def render_md(doc: dict[str, Any]) -> str:
    s, p = doc["summary"], doc["period"]
    out = [f"# {doc['title']} — {p['label']}", "", f"{p['from']} to {p['to']} (UTC), generated {doc['generated_at']}.", ""]
    out += ["## Executive summary", "", f"**{_num(s['score'])} / 100, grade {s['grade']}**", ""]
    out += [f"- {line}" for line in s["lines"]] + [""]
    out += ["## Health scores", ""]
    if doc["checks"]:
        out += _table(
            ["check", "kind", "score", "grade", "trend", "uptime", "reachability", "p95", "blocked min", "integrity", "since"],
            [[c["check"], c["kind"], _num(c["score"]), c["grade"] + (" (capped)" if c["capped"] else ""),
              "new" if c["new"] else (f"{c['trend']:+.1f}" if c["trend"] is not None else "–"), _pct(c["uptime"]), _pct(c["reachability"]),
              _ms(c["latency_p95_s"]), f"{c['blocked_minutes']:,.0f}", c["integrity_events"], c["first_seen"] or "–"] for c in doc["checks"]],
        ) + [""]
        out += ["### Networks", ""] + _table(
            ["network", "score", "grade", "trend", "checks", "runs", "reachability", "blocked min", "integrity"],
            [[n["network"], _num(n["score"]), n["grade"], f"{n['trend']:+.1f}" if n["trend"] is not None else "–", n["checks"],
              f"{n['runs']:,}", _pct(n["reachability"]), f"{n['blocked_minutes']:,.0f}", n["integrity_events"]] for n in doc["networks"]],
        ) + [""]
    else:
        out += ["No results in this period.", ""]
    out += ["## Module proxies: GOPROXY per network", ""]
    if not doc["advice"]:
        out += ["No goproxy check ran in this period: no GOPROXY advice.", ""]
    for a in doc["advice"]:
        out += [f"### From {a['network']}", "", "```sh", f"GOPROXY={a['goproxy']}", "```", ""]
        avoid = {x["proxy"]: x["why"] for x in a["avoid"]}
        out += _table(
            ["proxy", "score", "availability", "p95 fetch", "integrity", "how it failed"],
            [[x["proxy"], f"{_num(x['score'])} {x['grade']}", _pct(x["availability"]), _ms(x["fetch_p95_s"]),
              f"tampered ×{x['tampered']}" if x["tampered"] else "clean",
              avoid.get(x["proxy"]) or ", ".join(f"{k} ×{n:,}" for k, n in list(x["failures"].items())[:3]) or "–"]
             for x in doc["proxies"] if x["network"] == a["network"]],
        ) + [""]
    if doc["advice"]:
        out += ["',' falls through to the next proxy only on 404/410 (not found), '|' on any error; direct fetches from the origin VCS. " + doc["advice_note"], ""]
    out += ["## Incidents", ""]
    if doc["incidents"]:
        out += _table(
            ["from", "to", "in period (min)", "check", "network", "verdict", "evidence"],
            [[i["started_at"], i["ended_at"] or "ongoing", f"{i['duration_s'] / 60:,.0f}", i["check"], i["network"],
              f"{i['verdict']} ({i['confidence']})", "; ".join(i["evidence"][:3])] for i in doc["incidents"]],
        ) + [""]
    else:
        out += ["No verdict episode opened or lasted into this period.", ""]
    slo, w = doc["slo"], doc["weights"]
    out += [
        "## How the score is computed", "",
        f"Objectives: availability {100 * slo['availability']:g}% of runs, p95 of successful runs {_ms(slo['latency_p95_s'])}; "
        f"weights availability {w['availability']:g}, latency {w['latency']:g}, blocked {w['blocked']:g}. See docs/report.md.", "",
    ]
    return "\n".join(out)
