"""What every board is made of: the two datasources, the template variables, links between
boards and to runbooks, verdict episodes as annotations, and one call per panel.

    b.row("Answers")
    b.state_timeline("Plain resolvers: answered?", "what it shows, in a sentence",
                     prom(f'probe_success{{kind="dns", {PROBE}}}', "{{check}} · {{target}}"),
                     mappings=OK_FAILED)

Adding a panel is that one call: it gets the next free id, its datasource, reference ids for
its queries, and the next place on the grid (the SDK's layout: left to right, then down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

# The uids the provisioning files give the datasources (deploy/grafana/provisioning/datasources).
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="monitor-prometheus")
POSTGRES = model.DataSourceRef(type_val="grafana-postgresql-datasource", uid="monitor-store")

# Label matchers every probe series takes (they carry check, kind, vantage, target; `agent`
# comes from the Prometheus scrape config, one target label per agent).
PROBE = 'agent=~"$agent", vantage=~"$vantage", kind=~"$kind", check=~"$check"'
# Series per (check, vantage) only, without kind or target: monitor_verdict, the scheduler
# lag, monitor_dns_answers_consistent.
CHECK_VANTAGE = 'agent=~"$agent", vantage=~"$vantage", check=~"$check"'
# Series of the agent process itself.
AGENT = 'agent=~"$agent"'
# Series every exporter has (up, process_*): only the targets a scrape config names as agents.
AGENT_TARGET = 'agent!="", agent=~"$agent"'

# SQL filters over the store's tables, with the same variables (a regex, as in PromQL: "All"
# is .*; Grafana's :regex format escapes a picked value).
SQL_CHECK_VANTAGE_AGENT = (
    """"check" ~ '^${check:regex}$' AND vantage ~ '^${vantage:regex}$' AND agent ~ '^${agent:regex}$'"""
)

Steps = Sequence[tuple[float | None, str]]
Mappings = dict[float, tuple[str, str]]  # value -> (text, colour)

# The colours a reader expects, used by every board.
OK_FAILED: Mappings = {1: ("ok", "green"), 0: ("failed", "red")}
GREEN_UNLESS_POSITIVE: Steps = [(None, "green"), (1, "red")]


@dataclass(frozen=True)
class BoardRef:
    uid: str
    title: str


@dataclass(frozen=True)
class Query:
    """A PromQL target: `instant` for panels that show the value now (stat, bar gauge, table)."""

    expr: str
    legend: str = ""
    instant: bool = False


def prom(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


class SqlQuery(cogvariants.Dataquery):
    """A PostgreSQL target (the SDK has no builder for it): raw SQL in Grafana's macros."""

    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: str = "table") -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.fmt = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    """`fmt` "table", or "time_series" for columns time, metric, value."""

    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: str = "table") -> None:
        self._internal = SqlQuery(" ".join(raw_sql.split()), ref_id, fmt)

    def build(self) -> SqlQuery:
        return self._internal


def runbook(alert: str) -> tuple[str, str]:
    """A panel link to docs/runbooks/<alert>.md, one per alert (served at the `runbooks` base)."""
    return f"Runbook: {alert}", f"${{runbooks}}/{alert}.md"


def thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps]
    )


def mappings(values: Mappings) -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={_number(v): model.ValueMappingResult(text=text, color=colour, index=i) for i, (v, (text, colour)) in enumerate(values.items())}
        )
    ]


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


# --- episodes: the annotation and the filters every SQL query shares ----------------------------

EPISODES_ANNOTATION_SQL = f"""
SELECT confirmed_at AS time,
       COALESCE(ended_at, now()) AS timeend,
       verdict || ': ' || "check" || ' from ' || vantage || ' (' || agent || '), ' || confidence || ' confidence'
         || COALESCE(' · ' || (SELECT string_agg(line, ' · ') FROM jsonb_array_elements_text(evidence) AS line), '') AS text,
       verdict || ',' || "check" || ',' || vantage AS tags
FROM verdict_episodes
WHERE confirmed_at IS NOT NULL
  AND confirmed_at <= $__timeTo()
  AND (ended_at IS NULL OR ended_at >= $__timeFrom())
  AND {SQL_CHECK_VANTAGE_AGENT}
ORDER BY confirmed_at
"""


class Board:
    """One dashboard: `uid`, title, the check kinds its `kind` variable offers (a regex)."""

    def __init__(self, uid: str, title: str, description: str, *, kinds: str, boards: Sequence[BoardRef], runbooks_url: str):
        self.uid = uid
        self._next_id = 1
        self._dash = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["monitor"])
            .time("now-6h", "now")
            .refresh("1m")
            .timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .editable()
        )
        for variable in _variables(kinds, runbooks_url):
            self._dash.with_variable(variable)
        self._dash.annotation(
            dashboard.AnnotationQuery()
            .name("Verdict episodes")
            .datasource(POSTGRES)
            .enable(True)
            .icon_color("red")
            .target(Sql(EPISODES_ANNOTATION_SQL, "Anno"))  # type: ignore[arg-type]  # any query the datasource runs
        )
        for other in boards:
            if other.uid != uid:
                self._dash.link(
                    dashboard.DashboardLink(other.title)
                    .type(model.DashboardLinkType.LINK)
                    .url(f"/d/{other.uid}?${{agent:queryparam}}&${{vantage:queryparam}}")
                    .icon("dashboard")
                    .keep_time(True)
                    .tooltip(f"{other.title}, same agent, vantage and time range")
                )
        self._dash.link(
            dashboard.DashboardLink("Runbooks").type(model.DashboardLinkType.LINK).url("${runbooks}/").icon("doc").target_blank(True)
            .tooltip("What each alert means, how to confirm it by hand, what to do")
        )

    def build(self) -> model.Dashboard:
        return self._dash.build()

    # --- layout ------------------------------------------------------------------------------

    def row(self, title: str) -> None:
        self._dash.with_row(dashboard.Row(title).id(self._take_id()))

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _place(self, panel: Any, title: str, description: str, queries: Sequence[Query | Sql], *, w: int, h: int,
               unit: str | None, steps: Steps | None, values: Mappings | None, no_value: str | None,
               links: Sequence[tuple[str, str]], decimals: float | None = None, min_value: float | None = None,
               max_value: float | None = None) -> None:
        panel.id(self._take_id()).title(title).description(description).span(w).height(h)
        sql = any(isinstance(q, Sql) for q in queries)
        panel.datasource(POSTGRES if sql else PROMETHEUS)
        for i, q in enumerate(queries):
            ref_id = chr(ord("A") + i)
            if isinstance(q, Sql):
                q.build().ref_id = ref_id
                panel.with_target(q)
            else:
                panel.with_target(_prometheus(q, ref_id))
        if unit is not None:
            panel.unit(unit)
        if steps is not None:
            panel.thresholds(thresholds(steps))
        if values is not None:
            panel.mappings(mappings(values))
        if no_value is not None:
            panel.no_value(no_value)
        if decimals is not None:
            panel.decimals(decimals)
        if min_value is not None:
            panel.min(min_value)
        if max_value is not None:
            panel.max(max_value)
        if links:
            panel.links([dashboard.DashboardLink(text).url(url).target_blank(True) for text, url in links])
        self._dash.with_panel(panel)

    # --- panels: one call each -----------------------------------------------------------------

    def timeseries(self, title: str, description: str, *queries: Query | Sql, unit: str = "short", w: int = 12, h: int = 8,
                   steps: Steps | None = None, values: Mappings | None = None, no_value: str | None = None,
                   axis_label: str | None = None, bars: bool = False, stack: bool = False, min_value: float | None = None,
                   links: Sequence[tuple[str, str]] = (), interval: str | None = None) -> None:
        panel = (
            timeseries.Panel()
            .legend(_legend(["lastNotNull", "max"]))
            .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
            .fill_opacity(10)
            .show_points(common.VisibilityMode.NEVER)
            .span_nulls(False)
        )
        if axis_label:
            panel.axis_label(axis_label)
        if bars:
            panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
        if stack:
            panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        if steps is not None:
            panel.thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE))
        if interval:
            panel.interval(interval)
        self._place(panel, title, description, queries, w=w, h=h, unit=unit, steps=steps, values=values, no_value=no_value,
                    links=links, min_value=min_value)

    def state_timeline(self, title: str, description: str, *queries: Query, values: Mappings, w: int = 12, h: int = 8,
                       no_value: str | None = None, links: Sequence[tuple[str, str]] = (),
                       data_links: Sequence[tuple[str, str]] = ()) -> None:
        panel = (
            statetimeline.Panel()
            .show_value(common.VisibilityMode.NEVER)
            .merge_values(True)
            .row_height(0.8)
            .fill_opacity(80)
            .legend(_legend([]))
            .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE))
        )
        if data_links:
            panel.data_links([dashboard.DashboardLink(text).url(url) for text, url in data_links])
        # The mapped colours are the meaning; thresholds would repaint unmapped values.
        panel.color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        self._place(panel, title, description, queries, w=w, h=h, unit=None, steps=[(None, "#808080")], values=values,
                    no_value=no_value, links=links)

    def stat(self, title: str, description: str, query: Query, *, unit: str = "short", w: int = 6, h: int = 4,
             steps: Steps | None = None, values: Mappings | None = None, no_value: str | None = None,
             decimals: float | None = None, links: Sequence[tuple[str, str]] = ()) -> None:
        panel = (
            stat.Panel()
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
        self._place(panel, title, description, [query], w=w, h=h, unit=unit, steps=steps, values=values,
                    no_value=no_value, links=links, decimals=decimals)

    def bar_gauge(self, title: str, description: str, query: Query, *, unit: str = "short", w: int = 12, h: int = 8,
                  steps: Steps | None = None, min_value: float | None = None, max_value: float | None = None,
                  no_value: str | None = None, decimals: float | None = None,
                  links: Sequence[tuple[str, str]] = ()) -> None:
        panel = (
            bargauge.Panel()
            .display_mode(common.BarGaugeDisplayMode.BASIC)
            .orientation(common.VizOrientation.HORIZONTAL)
            .show_unfilled(True)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
        self._place(panel, title, description, [query], w=w, h=h, unit=unit, steps=steps, values=None, no_value=no_value,
                    links=links, decimals=decimals, min_value=min_value, max_value=max_value)

    def table(self, title: str, description: str, query: Query, *, w: int = 12, h: int = 8, unit: str | None = None,
              steps: Steps | None = None, no_value: str | None = None, links: Sequence[tuple[str, str]] = ()) -> None:
        """An instant PromQL query as a table: one row per series, its labels as columns."""
        panel = table.Panel().cell_height(common.TableCellHeight.SM).with_transformation(
            model.DataTransformerConfig(id_val="labelsToFields", options={"mode": "columns"})
        )
        self._place(panel, title, description, [query], w=w, h=h, unit=unit, steps=steps, values=None, no_value=no_value,
                    links=links)

    def sql_table(self, title: str, description: str, sql: str, *, w: int = 24, h: int = 8, no_value: str | None = None,
                  links: Sequence[tuple[str, str]] = ()) -> None:
        """A table read from the store (the PostgreSQL datasource, Grafana's read-only role)."""
        panel = table.Panel().cell_height(common.TableCellHeight.SM)
        self._place(panel, title, description, [Sql(sql)], w=w, h=h, unit=None, steps=None, values=None, no_value=no_value,
                    links=links)


def _prometheus(q: Query, ref_id: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(q.expr).ref_id(ref_id).datasource(PROMETHEUS).legend_format(q.legend or "__auto")
    return target.instant() if q.instant else target.range()


def _legend(calcs: list[str]) -> common_builders.VizLegendOptions:
    mode = common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(mode)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs(calcs)
    )


def _variables(kinds: str, runbooks_url: str) -> list[Any]:
    """agent → vantage → kind → check, each narrowing the next; every one multi-valued with
    an All of `.*`, so a series lacking the label (no `agent` in a scrape config) still shows."""

    def variable(name: str, label: str, query: str, description: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(label)
            .description(description)
            .query(query)
            .datasource(PROMETHEUS)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )

    return [
        variable("agent", "Agent", "label_values(probe_success, agent)",
                 "The agent process measuring (one per network), as the Prometheus scrape config names it"),
        variable("vantage", "Vantage", 'label_values(probe_success{agent=~"$agent"}, vantage)',
                 "Where an agent measures from: direct, through a proxy, a source address or a network namespace"),
        variable("kind", "Kind", f'label_values(probe_success{{agent=~"$agent", vantage=~"$vantage", kind=~"{kinds}"}}, kind)',
                 "Check kind"),
        variable("check", "Check", 'label_values(probe_success{agent=~"$agent", vantage=~"$vantage", kind=~"$kind"}, check)',
                 "A configured check (the agent's config names it)"),
        dashboard.ConstantVariable("runbooks").label("Runbooks").value(runbooks_url)
        .description("Where docs/runbooks is served; set with grafana/generate.py --runbooks-url"),
    ]
