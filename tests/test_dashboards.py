"""The committed boards are exactly what grafana/generate.py makes, and are well-formed
Grafana dashboards (no Grafana server here: the structure Grafana relies on is checked
instead — schema version, unique ids, datasources, a grid without overlaps, variables, links,
units and legends). Their data is checked in tests/test_dashboards_data.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grafana.board import POSTGRES, PROMETHEUS
from grafana.boards import BOARDS, overview
from grafana.generate import render
from monitor.model import VerdictName
from tests.grafana_queries import DASHBOARDS, ROOT, load_boards, panels, targets

VARIABLES = ["agent", "vantage", "kind", "check", "runbooks"]
DATASOURCES = {(PROMETHEUS.type_val, PROMETHEUS.uid), (POSTGRES.type_val, POSTGRES.uid)}


def test_committed_json_is_exactly_what_the_code_generates() -> None:
    rendered = render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS.glob("*.json")}
    assert sorted(committed) == sorted(rendered), "run: python -m grafana.generate"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} differs from what the code makes: run python -m grafana.generate"


def test_generate_check_fails_on_a_stale_file_and_passes_on_fresh_ones(tmp_path: Path) -> None:
    def generate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "grafana.generate", "--out", str(tmp_path), *args], capture_output=True, text=True, cwd=ROOT)

    assert generate().returncode == 0
    assert generate("--check").returncode == 0
    board = tmp_path / "monitor-dns.json"
    board.write_text(board.read_text().replace("Injected replies", "Injected"))
    done = generate("--check")
    assert done.returncode == 1 and "monitor-dns.json" in done.stderr


def test_runbooks_url_is_the_base_of_every_runbook_link() -> None:
    rendered = json.loads(render("https://runbooks.example/docs/runbooks/")["monitor-overview.json"])
    runbooks = next(v for v in rendered["templating"]["list"] if v["name"] == "runbooks")
    assert runbooks["query"] == "https://runbooks.example/docs/runbooks" and runbooks["type"] == "constant"


@pytest.fixture(scope="module")
def boards() -> list[dict]:
    return load_boards()


def test_one_board_per_module_with_unique_uids_and_the_sdk_schema(boards: list[dict]) -> None:
    assert [b["uid"] for b in boards] == sorted(m.UID for m in BOARDS)
    for board in boards:
        assert board["schemaVersion"] == 41, "Grafana 11.6's schema, as the pinned SDK writes it"
        assert board["title"].startswith("monitor · ") and board["description"]
        assert "monitor" in board["tags"]


def test_panels_have_unique_ids_titles_descriptions_and_a_known_datasource(boards: list[dict]) -> None:
    for board in boards:
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), board["uid"]
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            where = f"{board['uid']} / {panel.get('title')}"
            assert panel.get("title") and len(panel.get("description", "")) > 20, f"{where}: a title and a description that explains it"
            assert (panel["datasource"]["type"], panel["datasource"]["uid"]) in DATASOURCES, where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(ref_ids) == len(set(ref_ids)), where
        for t in targets(board):
            assert (t.datasource["type"], t.datasource["uid"]) in DATASOURCES, f"{board['uid']} / {t.panel}"
            assert (t.promql is None) != (t.sql is None), f"{board['uid']} / {t.panel}: PromQL or SQL"
            assert (t.datasource["uid"] == PROMETHEUS.uid) == (t.promql is not None), f"{board['uid']} / {t.panel}"


def test_grid_positions_fit_24_columns_and_never_overlap(boards: list[dict]) -> None:
    for board in boards:
        taken: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{board['uid']} / {panel['title']}: {g}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, f"{board['uid']}: {panel['title']} overlaps {taken[(x, y)]} at {x},{y}"
                    taken[(x, y)] = panel["title"]


def test_every_board_has_the_template_variables_and_the_episode_annotations(boards: list[dict]) -> None:
    for board in boards:
        variables = board["templating"]["list"]
        assert [v["name"] for v in variables] == VARIABLES, board["uid"]
        for v in variables[:4]:
            assert v["type"] == "query" and v["query"].startswith("label_values(") and v["multi"] and v["includeAll"], v
            assert v["allValue"] == ".*" and v["refresh"] == 2 and v["label"], v
        annotations = board["annotations"]["list"]
        assert [a["name"] for a in annotations] == ["Verdict episodes"]
        assert annotations[0]["enable"] and "FROM verdict_episodes" in annotations[0]["target"]["rawSql"]


def test_boards_link_to_each_other_and_to_the_runbooks(boards: list[dict]) -> None:
    uids = {b["uid"] for b in boards}
    for board in boards:
        links = {link["url"].split("?")[0].removeprefix("/d/") for link in board["links"] if link["url"].startswith("/d/")}
        assert links == uids - {board["uid"]}, board["uid"]
        assert any(link["url"].startswith("${runbooks}") for link in board["links"]), board["uid"]
        for link in board["links"]:
            if link["url"].startswith("/d/"):
                assert link["keepTime"] and "${agent:queryparam}" in link["url"], link


def test_units_legends_and_colours_read_without_the_readme(boards: list[dict]) -> None:
    for board in boards:
        for panel in panels(board):
            where = f"{board['uid']} / {panel.get('title')}"
            defaults = panel.get("fieldConfig", {}).get("defaults", {})
            if panel["type"] in ("timeseries", "stat", "bargauge"):
                assert defaults.get("unit"), f"{where}: a unit"
            if panel["type"] == "state-timeline":
                assert defaults.get("mappings"), f"{where}: each state named and coloured"
            if panel["type"] in ("timeseries", "state-timeline", "bargauge"):
                for t in panel["targets"]:
                    if "expr" in t:
                        assert "{{" in t["legendFormat"], f"{where}: a legend naming the series"


def test_the_health_matrix_names_and_colours_every_verdict() -> None:
    assert set(overview.VERDICT_COLOURS) == set(VerdictName), "a new verdict needs a colour in grafana/boards/overview.py"
    board = next(b for b in load_boards() if b["uid"] == overview.UID)
    matrix = next(p for p in panels(board) if p["title"].startswith("Health matrix"))
    options = matrix["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {o["text"] for o in options.values()} == {v.value for v in VerdictName}
    assert matrix["targets"][0]["expr"].count("label_replace(") == len(VerdictName)


def test_runbook_links_name_runbooks_that_exist() -> None:
    runbooks = ROOT / "docs" / "runbooks"
    written = {p.name for p in runbooks.glob("*.md")}
    if not written:
        pytest.skip("docs/runbooks holds no runbook yet: nothing to hold the links to")
    for board in load_boards():
        for panel in panels(board):
            for link in panel.get("links", []):
                if link["url"].startswith("${runbooks}/") and link["url"].endswith(".md"):
                    assert link["url"].removeprefix("${runbooks}/") in written, f"{board['uid']} / {panel['title']}: {link['url']}"
