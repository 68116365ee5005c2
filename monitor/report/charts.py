"""Charts as inline SVG, written by hand: no JavaScript, no fonts or images to fetch, so the
HTML file is the whole report and Chromium prints it as it is shown.

Each function takes the report document's `series` data and returns one <svg> element
(class "chart", data-chart naming it). Colours are solid fills/strokes from PALETTE and
VERDICT_COLOURS, so a printed page can be checked for them pixel by pixel.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 16, 36  # plot margins; the legend sits in RIGHT
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
UPTIME_COLOUR = "#111111"
# Verdicts and percentiles have colours of their own, none in PALETTE: a printed chart can
# be told apart by colour (tests count them).
VERDICT_COLOURS = {
    "dns_poisoning": "#a50026", "dns_blocking": "#f46d43", "encrypted_dns_blocked": "#dd3497", "ip_blocking": "#8c2d04",
    "sni_blocking": "#e6550d", "rst_injection": "#b8b800", "tls_mitm": "#54278f", "http_blocking": "#c49c94",
    "proxy_failure": "#6baed6", "module_tampered": "#7b0000", "degraded": "#9ecae1", "failing": "#525252",
    "server_down": "#3182bd",
}
LATENCY_COLOURS = {"p50": "#74c476", "p95": "#08519c", "p99": "#fb6a4a"}


def _svg(name: str, title: str, body: list[str], height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" data-chart="{name}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" font-family="sans-serif" font-size="11">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _empty(name: str, title: str, message: str) -> str:
    return _svg(name, title, [f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" fill="#666">{escape(title)}: {escape(message)}</text>'], 60)


def _legend(items: list[tuple[str, str]], *, dashed: set[str] = frozenset()) -> list[str]:
    out = []
    x = WIDTH - RIGHT + 12
    for i, (label, colour) in enumerate(items[:14]):
        y = TOP + 10 + 15 * i
        dash = ' stroke-dasharray="4 3"' if label in dashed else ""
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 16}" y2="{y}" stroke="{colour}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{x + 21}" y="{y + 4}">{escape(_short(label, 20))}</text>')
    if len(items) > 14:
        out.append(f'<text x="{x}" y="{TOP + 10 + 15 * 14 + 4}" fill="#666">+{len(items) - 14} more</text>')
    return out


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def availability_chart(days: list[str], networks: dict[str, list[float | None]], uptime: list[float | None]) -> str:
    """Daily reachability per network (solid) and the daily uptime of all checks (dashed)."""
    title = "Availability per day: reachability per network, uptime of all checks"
    values = [v for line in [*networks.values(), uptime] for v in line if v is not None]
    if not values or len(days) < 1:
        return _empty("availability", title, "no runs in this period")
    low = min(values)
    floor = 0.0 if low < 0.5 else math.floor(low * 20) / 20  # a 5 % step under the lowest day
    floor = min(floor, 0.95)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(i: int, v: float) -> tuple[float, float]:
        x = LEFT + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)
        return round(x, 1), round(TOP + plot_h * (1 - (v - floor) / (1 - floor)), 1)

    body = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for step in range(5):
        v = floor + (1 - floor) * step / 4
        _, y = xy(0, v)
        body.append(f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + plot_w}" y2="{y}" stroke="#e5e5e5"/>')
        body.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{100 * v:.1f}%</text>')
    every = max(1, len(days) // 6)
    ticks = [i for i in range(0, len(days), every) if len(days) - 1 - i >= every / 2 or i == 0] + [len(days) - 1]
    for i in sorted(set(ticks)):
        x, _ = xy(i, floor)
        body.append(f'<text x="{x}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(days[i][5:])}</text>')
    legend = []
    for n, (name, line) in enumerate(sorted(networks.items())):
        colour = PALETTE[n % len(PALETTE)]
        body += _polyline(line, xy, colour)
        legend.append((name, colour))
    body += _polyline(uptime, xy, UPTIME_COLOUR, dashed=True)
    legend.append(("uptime, all checks", UPTIME_COLOUR))
    return _svg("availability", title, body + _legend(legend, dashed={"uptime, all checks"}))


def _polyline(values: list[float | None], xy, colour: str, *, dashed: bool = False) -> list[str]:
    """One line per run of days with data (a day without runs breaks the line)."""
    out, points = [], []
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    for i, v in enumerate([*values, None]):
        if v is not None:
            points.append("%s,%s" % xy(i, v))
            continue
        if len(points) == 1:
            x, y = points[0].split(",")
            out.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
        elif points:
            out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        points = []
    return out


def latency_chart(rows: list[dict], objective_s: float, *, limit: int = 15) -> str:
    """p50, p95 and p99 of successful runs per check (the `limit` slowest by p95), log scale,
    with the latency objective as a vertical line."""
    title = "Latency of successful runs per check: p50, p95, p99 (log scale)"
    rows = sorted(rows, key=lambda r: -r["p95_s"])[:limit]
    if not rows:
        return _empty("latency", title, "no successful runs in this period")
    values = [r[k] for r in rows for k in ("p50_s", "p95_s", "p99_s") if r[k]] + [objective_s]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values) * 1.0001))
    row_h = 18
    height = TOP + BOTTOM + row_h * len(rows)
    label_w = 150
    plot_w = WIDTH - label_w - 24

    def x_of(v: float) -> float:
        return round(label_w + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)), 1)

    body = []
    decade = lo
    while decade <= hi * 1.0001:
        x = x_of(decade)
        body.append(f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{height - BOTTOM}" stroke="#e5e5e5"/>')
        body.append(f'<text x="{x}" y="{height - BOTTOM + 14}" text-anchor="middle">{_duration(decade)}</text>')
        decade *= 10
    x = x_of(objective_s)
    body.append(f'<line x1="{x}" y1="{TOP - 4}" x2="{x}" y2="{height - BOTTOM}" stroke="#d62728" stroke-dasharray="5 3"/>')
    body.append(f'<text x="{x + 4}" y="{TOP + 6}" fill="#d62728">objective {_duration(objective_s)}</text>')
    for i, r in enumerate(rows):
        y = TOP + row_h * i + row_h / 2
        body.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">{escape(_short(r["check"], 22))}</text>')
        body.append(f'<line x1="{x_of(r["p50_s"])}" y1="{y}" x2="{x_of(r["p99_s"])}" y2="{y}" stroke="#999" stroke-width="2"/>')
        for k, size in (("p99", 4), ("p50", 4), ("p95", 5)):  # p95, the one the objective is about, on top
            body.append(f'<rect x="{x_of(r[k + "_s"]) - size}" y="{y - size}" width="{2 * size}" height="{2 * size}" fill="{LATENCY_COLOURS[k]}"/>')
    legend_y = height - 8
    for j, (k, colour) in enumerate(LATENCY_COLOURS.items()):
        body.append(f'<rect x="{label_w + 60 * j}" y="{legend_y - 8}" width="9" height="9" fill="{colour}"/><text x="{label_w + 60 * j + 13}" y="{legend_y}">{k}</text>')
    return _svg("latency", title, body, height)


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:g} s"
    return f"{seconds * 1000:g} ms"


def verdict_chart(weeks: list[str], minutes: dict[str, list[float]]) -> str:
    """Minutes under each non-ok verdict per week, stacked (summed over networks)."""
    title = "Minutes under each verdict per week (summed over networks)"
    totals = [sum(series[i] for series in minutes.values()) for i in range(len(weeks))]
    if not weeks or not any(totals):
        return _empty("verdicts", title, "no time under a non-ok verdict in this period")
    top = _nice(max(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar = plot_w / len(weeks)
    body = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for step in range(5):
        v = top * step / 4
        y = round(TOP + plot_h * (1 - v / top), 1)
        body.append(f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + plot_w}" y2="{y}" stroke="#e5e5e5"/>')
        body.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{_count(v)}</text>')
    body.append(f'<text x="10" y="{TOP + plot_h / 2}" transform="rotate(-90 10 {TOP + plot_h / 2})" text-anchor="middle">minutes</text>')
    base = [0.0] * len(weeks)
    legend = []
    for verdict in sorted(minutes):
        colour = VERDICT_COLOURS.get(verdict, "#444444")
        legend.append((verdict, colour))
        for i, m in enumerate(minutes[verdict]):
            if m <= 0:
                continue
            h = plot_h * m / top
            y = TOP + plot_h - plot_h * base[i] / top - h
            body.append(f'<rect x="{round(LEFT + bar * i + bar * 0.15, 1)}" y="{round(y, 1)}" width="{round(bar * 0.7, 1)}" height="{round(h, 1)}" fill="{colour}"/>')
            base[i] += m
    for i, week in enumerate(weeks):
        if i % max(1, len(weeks) // 7) == 0:
            body.append(f'<text x="{round(LEFT + bar * (i + 0.5), 1)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(week[5:])}</text>')
    return _svg("verdicts", title, body + _legend(legend))


def _count(v: float) -> str:
    return f"{v / 1e6:g}M" if v >= 1e6 else (f"{v / 1e3:g}k" if v >= 1e4 else f"{v:,.0f}")


def _nice(x: float) -> float:
    """A round axis maximum at or above x."""
    if x <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(x))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= x:
            return step * magnitude
    return 10 * magnitude
