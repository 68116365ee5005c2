"""The report document as one self-contained HTML page (inline CSS and SVG, the logo as a
data: URI): readable in a browser, and what Chromium prints to PDF."""

from __future__ import annotations

from html import escape
from typing import Any

from monitor.report import charts

GRADE_COLOURS = {"A": "#1a7f37", "B": "#4c9a2a", "C": "#bf8700", "D": "#d1600f", "F": "#cf222e", "–": "#777777"}

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: sans-serif; font-size: 10.5pt; color: #1f2328; margin: 0 auto; max-width: 760px; }
header { display: flex; align-items: center; gap: 16px; border-bottom: 2px solid #1f2328; padding-bottom: 8px; }
header img { max-height: 48px; max-width: 160px; }
h1 { font-size: 18pt; margin: 0; } h2 { font-size: 13pt; margin: 22px 0 8px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 11pt; margin: 14px 0 6px; }
.meta { color: #59636e; font-size: 9pt; }
.badge { display: inline-block; min-width: 88px; text-align: center; color: #fff; border-radius: 8px; padding: 8px 12px; margin-right: 14px; }
.badge b { display: block; font-size: 24pt; } .summary { display: flex; align-items: flex-start; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; margin: 6px 0; page-break-inside: auto; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 3px 5px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr { page-break-inside: avoid; }
.grade { display: inline-block; width: 18px; text-align: center; color: #fff; border-radius: 3px; font-weight: bold; }
code, pre { font-family: monospace; font-size: 9pt; } pre { background: #f6f8fa; padding: 6px 8px; white-space: pre-wrap; word-break: break-all; }
.chart { display: block; margin: 6px 0 12px; page-break-inside: avoid; }
.avoid { color: #cf222e; } .small { font-size: 8.5pt; color: #59636e; }
"""


def _grade(grade: str) -> str:
    return f'<span class="grade" style="background:{GRADE_COLOURS.get(grade, "#777")}">{escape(grade)}</span>'


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3f}%"


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f} s" if x >= 1 else f"{x * 1000:.0f} ms")


def _trend(x: float | None, new: bool = False) -> str:
    if new:
        return "new"
    if x is None:
        return "–"
    return f"▲ {x:+.1f}" if x > 0 else (f"▼ {x:+.1f}" if x < 0 else "= 0.0")


def _failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{escape(k.replace('@', ' @ '))} ×{n:,}" for k, n in list(failures.items())[:3]) or "–"


def render_html(doc: dict[str, Any], *, logo: str | None = None) -> str:
    s = doc["summary"]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(doc['title'])} — {escape(doc['period']['label'])}</title><style>{CSS}</style></head><body>",
        "<header>", f'<img src="{escape(logo, quote=True)}" alt="logo">' if logo else "",
        f"<div><h1>{escape(doc['title'])}</h1><div class=\"meta\">{escape(doc['period']['label'])}: "
        f"{escape(doc['period']['from'])} to {escape(doc['period']['to'])} (UTC) · generated {escape(doc['generated_at'])}</div></div>",
        "</header>",
        "<h2>Executive summary</h2><div class=\"summary\">",
        f'<div class="badge" style="background:{GRADE_COLOURS.get(s["grade"], "#777")}"><b>{_num(s["score"])}</b>grade {escape(s["grade"])}</div>',
        "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in s["lines"]) + "</ul></div>",
        _scores(doc),
        "<h2>Charts</h2>",
        charts.availability_chart(doc["series"]["days"], doc["series"]["availability"], doc["series"]["uptime"]),
        charts.latency_chart(doc["series"]["latency"], doc["slo"]["latency_p95_s"]),
        charts.verdict_chart(doc["series"]["weeks"], doc["series"]["verdict_minutes"]),
        _advice(doc),
        _incidents(doc),
        _details(doc),
        _method(doc),
        "</body></html>",
    ]
    return "".join(parts)


def _scores(doc: dict[str, Any]) -> str:
    rows = []
    start = doc["period"]["from"][:10]
    for c in doc["checks"]:
        since = f" · since {escape(c['first_seen'])}" if c["first_seen"] and c["first_seen"] > start else ""
        rows.append(
            f"<tr><td>{escape(c['check'])}<div class=\"small\">{escape(c['kind'])} · {escape(c['target'])}{since}</div></td>"
            f"<td class=\"n\">{_num(c['score'])}</td><td>{_grade(c['grade'])}{' <span class=avoid>capped</span>' if c['capped'] else ''}</td>"
            f"<td class=\"n\">{_trend(c['trend'], c['new'])}</td><td class=\"n\">{_pct(c['uptime'])}</td><td class=\"n\">{_pct(c['reachability'])}</td>"
            f"<td class=\"n\">{_ms(c['latency_p95_s'])}</td><td class=\"n\">{c['blocked_minutes']:,.0f}</td><td class=\"n\">{c['integrity_events']:,}</td></tr>"
        )
    checks = (
        "<table><thead><tr><th>check</th><th>score</th><th>grade</th><th>trend</th><th>uptime</th><th>reachability</th>"
        "<th>p95</th><th>blocked min</th><th>integrity</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        if rows else "<p>No results in this period.</p>"
    )
    nets = "".join(
        f"<tr><td>{escape(n['network'])}</td><td class=\"n\">{_num(n['score'])}</td><td>{_grade(n['grade'])}</td>"
        f"<td class=\"n\">{_trend(n['trend'])}</td><td class=\"n\">{n['checks']}</td><td class=\"n\">{n['runs']:,}</td>"
        f"<td class=\"n\">{_pct(n['reachability'])}</td><td class=\"n\">{n['blocked_minutes']:,.0f}</td><td class=\"n\">{n['integrity_events']:,}</td></tr>"
        for n in doc["networks"]
    )
    networks = (
        "<h3>Networks (vantage@agent)</h3><table><thead><tr><th>network</th><th>score</th><th>grade</th><th>trend</th><th>checks</th>"
        "<th>runs</th><th>reachability</th><th>blocked min</th><th>integrity</th></tr></thead><tbody>" + nets + "</tbody></table>"
        if nets else ""
    )
    return "<h2>Health scores</h2><h3>Checks</h3>" + checks + networks


def _advice(doc: dict[str, Any]) -> str:
    if not doc["advice"]:
        return "<h2>Module proxies</h2><p>No goproxy check ran in this period: no GOPROXY advice.</p>"
    out = ["<h2>Module proxies: GOPROXY per network</h2>"]
    for a in doc["advice"]:
        out.append(f"<h3>From {escape(a['network'])}</h3><pre>GOPROXY={escape(a['goproxy'])}</pre>")
        rows = [p for p in doc["proxies"] if p["network"] == a["network"]]
        avoid = {x["proxy"]: x["why"] for x in a["avoid"]}
        out.append(
            "<table><thead><tr><th>proxy</th><th>score</th><th>availability</th><th>p95 fetch</th><th>integrity</th><th>how it failed</th></tr></thead><tbody>"
            + "".join(
                f"<tr><td>{escape(p['proxy'])}</td><td class=\"n\">{_num(p['score'])} {_grade(p['grade'])}</td><td class=\"n\">{_pct(p['availability'])}</td>"
                f"<td class=\"n\">{_ms(p['fetch_p95_s'])}</td><td>{'tampered ×%d' % p['tampered'] if p['tampered'] else 'clean'}</td>"
                f"<td>{'<span class=avoid>' + escape(avoid[p['proxy']]) + '</span>' if p['proxy'] in avoid else _failures(p['failures'])}</td></tr>"
                for p in rows
            )
            + "</tbody></table>"
        )
    out.append(f"<p class=\"small\">',' falls through to the next proxy only on 404/410 (not found), '|' on any error; direct fetches from the origin VCS. {escape(doc['advice_note'])}</p>")
    return "".join(out)


def _incidents(doc: dict[str, Any]) -> str:
    incidents = doc["incidents"]
    if not incidents:
        return "<h2>Incidents</h2><p>No verdict episode opened or lasted into this period.</p>"
    shown = sorted(incidents, key=lambda i: -i["duration_s"])[:60]
    rows = "".join(
        f"<tr><td>{escape(i['started_at'][:16].replace('T', ' '))}</td><td>{escape(i['ended_at'][:16].replace('T', ' ')) if i['ended_at'] else 'ongoing'}</td>"
        f"<td class=\"n\">{_hours(i['duration_s'])}</td><td>{escape(i['check'])}</td><td>{escape(i['network'])}</td><td>{escape(i['verdict'])} ({escape(i['confidence'])})</td>"
        f"<td class=\"small\">{'<br>'.join(escape(e) for e in i['evidence'][:3])}</td></tr>"
        for i in sorted(shown, key=lambda i: i["started_at"])
    )
    more = f"<p class=\"small\">The {len(shown)} longest of {len(incidents)} incidents; the JSON format lists all.</p>" if len(incidents) > len(shown) else ""
    return (
        "<h2>Incidents</h2><table><thead><tr><th>from</th><th>to</th><th>in period</th><th>check</th><th>network</th><th>verdict</th><th>evidence</th></tr></thead><tbody>"
        + rows + "</tbody></table>" + more
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


DETAIL_ROWS = 100  # beyond this many (check, network) rows, only those below grade A are listed


def _details(doc: dict[str, Any]) -> str:
    pairs = [v for c in doc["checks"] for v in c["vantages"]]
    if not pairs:
        return ""
    shown = pairs if len(pairs) <= DETAIL_ROWS else [v for v in pairs if v["grade"] != "A"]
    rows = "".join(
        f"<tr><td>{escape(v['check'])}</td><td>{escape(v['network'])}</td><td class=\"n\">{_num(v['score'])} {_grade(v['grade'])}</td>"
        f"<td class=\"n\">{_pct(v['reachability'])}</td><td class=\"n\">{_ms(v['latency_p95_s'])}</td><td class=\"n\">{v['blocked_minutes']:,.0f}</td>"
        f"<td>{_failures(v['failures'])}</td></tr>"
        for v in shown
    )
    note = "" if shown is pairs else f"<p class=\"small\">The {len(shown)} of {len(pairs)} below grade A; the JSON format lists all.</p>"
    return (
        "<h2>Each check from each network</h2>" + note + "<table><thead><tr><th>check</th><th>network</th><th>score</th><th>reachability</th>"
        "<th>p95</th><th>blocked min</th><th>commonest failures</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _method(doc: dict[str, Any]) -> str:
    slo, w = doc["slo"], doc["weights"]
    return (
        "<h2>How the score is computed</h2><p class=\"small\">"
        f"Objectives: availability {100 * slo['availability']:g}% of runs, p95 latency of successful runs {_ms(slo['latency_p95_s'])}. "
        f"Weights: availability {w['availability']:g}, latency {w['latency']:g}, blocked time {w['blocked']:g}. "
        "Each part is 100 within its objective and falls linearly to 0 at ten error budgets (latency: three times the objective); "
        "any tampered module or TLS interception caps the score at 40. Reachability: share of all runs that succeeded; uptime: "
        "share of time slices (the check's interval) in which at least one vantage succeeded. Grades: A ≥ 90, B ≥ 80, C ≥ 70, D ≥ 60, F below. "
        "Latency percentiles come from merged log-scale histograms (within 2 %).</p>"
    )
