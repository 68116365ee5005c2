"""Reading the generated Grafana boards as Grafana would: their queries, template variables
substituted the way Grafana substitutes them, and the metric and label names a PromQL
expression uses. Shared by tests/test_dashboards.py and tests/test_dashboards_data.py.

No Grafana server runs here, so the substitution rules are Grafana's own, written out:
- PromQL: a multi-value or include-All variable is regex-escaped for a PromQL string
  (prometheusSpecialRegexEscape: a backslash doubled, so the string's unescaping leaves the
  regex escape); several values become (a|b); All with a custom all value is that value, raw.
- SQL `${var:regex}`: each value regex-escaped (kbn.regexEscape), several as (a|b); All raw.
- $__interval, $__rate_interval (max(interval + scrape, 4 × scrape)), $__range, and the SQL
  macros $__timeFilter(col), $__timeFrom(), $__timeTo().
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALL = object()  # the "All" selection


def load_boards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))]


@dataclass(frozen=True)
class Target:
    board: str
    panel: str  # the panel's title, or "annotation: NAME"
    datasource: dict[str, str]
    query: dict[str, Any]
    min_interval: float = 0.0  # the panel's "Min interval": $__interval is never shorter

    @property
    def promql(self) -> str | None:
        return self.query.get("expr")

    @property
    def sql(self) -> str | None:
        return self.query.get("rawSql")

    @property
    def instant(self) -> bool:
        return bool(self.query.get("instant"))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's


def targets(board: dict[str, Any]) -> Iterator[Target]:
    for panel in panels(board):
        for query in panel.get("targets", []):
            yield Target(board["uid"], panel["title"], query.get("datasource") or panel["datasource"], query, seconds(panel.get("interval") or "0s"))
    for annotation in board.get("annotations", {}).get("list", []):
        if "target" in annotation:
            yield Target(board["uid"], f"annotation: {annotation['name']}", annotation["datasource"], annotation["target"])


def query_variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]


# --- substitution ------------------------------------------------------------------------------

_PROM_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def _prometheus_escape(value: str) -> str:
    return _PROM_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _joined(values: list[str], escape) -> str:
    escaped = [escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert m, f"not a duration: {duration}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass(frozen=True)
class TimeRange:
    start: float  # unix seconds
    end: float
    step: float  # $__interval, seconds
    scrape: float  # the datasource's scrape interval

    @property
    def rate_interval(self) -> float:
        return max(self.step + self.scrape, 4 * self.scrape)

    def for_panel(self, target: Target) -> TimeRange:
        """As Grafana asks for a panel's range query: the step at least the panel's min
        interval, start and end aligned to whole steps."""
        step = max(self.step, target.min_interval)
        return TimeRange(math.floor(self.start / step) * step, math.ceil(self.end / step) * step, step, self.scrape)


# A variable or macro left ($name, ${...}, $__x); a regex's end anchor ($' or $") is not one.
_UNSUBSTITUTED = re.compile(r"\$(\{|__|[a-zA-Z])")


def _seconds(s: float) -> str:
    return f"{int(round(s))}s"


def promql(expr: str, selection: dict[str, Any], variables: list[dict[str, Any]], time: TimeRange) -> str:
    """`expr` with Grafana's substitutions; `selection` maps a variable to a list of values or ALL."""
    expr = expr.replace("$__rate_interval", _seconds(time.rate_interval))
    expr = expr.replace("$__interval", _seconds(time.step)).replace("$__range", _seconds(time.end - time.start))
    for v in variables:
        chosen = selection.get(v["name"], ALL)
        value = v["allValue"] if chosen is ALL else _joined(chosen, _prometheus_escape)
        expr = re.sub(r"\$\{" + v["name"] + r"\}|\$" + v["name"] + r"\b", lambda _: value, expr)
    assert not _UNSUBSTITUTED.search(expr), f"unsubstituted variable in {expr}"
    return expr


def _sql_time(t: float) -> str:
    return "'" + datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def sql(text: str, selection: dict[str, Any], variables: list[dict[str, Any]], time: TimeRange) -> str:
    text = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {_sql_time(time.start)} AND {_sql_time(time.end)}", text)
    text = text.replace("$__timeFrom()", _sql_time(time.start)).replace("$__timeTo()", _sql_time(time.end))
    for v in variables:
        chosen = selection.get(v["name"], ALL)
        value = v["allValue"] if chosen is ALL else _joined(chosen, _regex_escape)
        text = text.replace("${" + v["name"] + ":regex}", value)
    assert not _UNSUBSTITUTED.search(text), f"unsubstituted variable or macro in {text}"
    return text


def label_values_query(query: str) -> tuple[str, str]:
    """label_values(SELECTOR, LABEL) -> (SELECTOR, LABEL)."""
    m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", query.strip())
    assert m, f"not a label_values query: {query}"
    return m.group(1), m.group(2)


# --- the names an expression uses --------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')'
    r"|(?P<duration>\[[^\]]*\])"
    r"|(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){},])"
    r"|(?P<space>\s+)"
)
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        assert m, f"cannot read PromQL at {expr[pos:pos + 20]!r} in {expr}"
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression reads or writes: selectors' names and
    matchers, by/without/on/ignoring/group_* lists, label_replace's target and source."""
    metrics: set[str] = set()
    labels: set[str] = set()
    toks = _tokens(expr)
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in _LABEL_LISTS and nxt == "(":
            j = i + 2
            while toks[j][1] != ")":
                if toks[j][0] == "ident":
                    labels.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and text == "label_replace" and nxt == "(":
            strings = _label_replace_strings(toks, i + 2)
            labels.update(s for s in (strings[0], strings[2]) if s)
        elif kind == "ident" and (nxt == "(" or nxt in ("by", "without")):
            pass  # a function or an aggregation (sum by (…) (…))
        elif kind == "ident" and text not in _KEYWORDS:
            metrics.add(text)
        if text == "{":
            j = i + 1
            while toks[j][1] != "}":
                if toks[j][0] == "ident" and toks[j + 1][1] in ("=", "!=", "=~", "!~"):
                    labels.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        i += 1
    return metrics, labels


def _label_replace_strings(toks: list[tuple[str, str]], start: int) -> list[str]:
    """The four string arguments after label_replace's first (an expression)."""
    depth, j = 0, start
    while not (depth == 0 and toks[j][1] == ","):
        depth += toks[j][1] in "({"
        depth -= toks[j][1] in ")}"
        j += 1
    strings = [t for k, t in toks[j:j + 8] if k == "string"][:4]
    return [s[1:-1] for s in strings]
