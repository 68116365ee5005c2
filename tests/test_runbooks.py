"""Every alert — the agents' (one per verdict) and the Prometheus rules' — has a runbook in
docs/runbooks/, every runbook_url points at one, and no runbook recommends turning
verification off."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from monitor.alerts.catalog import CATALOG
from monitor.alerts.policy import conditions_for, new_alert
from monitor.analysis.episodes import Episode
from monitor.config import load_config_text
from monitor.model import VerdictName

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = REPO / "docs" / "runbooks"
RULES = REPO / "deploy" / "prometheus" / "rules" / "monitor.yml"
SECTIONS = ("## What it means", "## Confirm by hand", "## What to do")
# Ways to make a checksum or certificate error "go away" that the field notes call dangerous.
DANGEROUS = ("GOSUMDB=off", "GOFLAGS=-insecure", "GOINSECURE", "GIT_SSL_NO_VERIFY")


def rule_alerts() -> dict[str, set[str]]:
    """alertname -> its runbook_url(s) in the Prometheus rules."""
    found: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found.setdefault(rule["alert"], set()).add(rule["annotations"]["runbook_url"])
    return found


ENGINE = sorted(kind.alertname for kind in CATALOG.values())
ALL = sorted(set(ENGINE) | set(rule_alerts()))


@pytest.mark.parametrize("alertname", ALL)
def test_every_alert_has_a_runbook_with_the_three_sections(alertname: str) -> None:
    path = RUNBOOKS / f"{alertname}.md"
    assert path.is_file(), f"no runbook for {alertname}"
    text = path.read_text()
    assert text.startswith(f"# {alertname}\n")
    for section in SECTIONS:
        assert section in text, f"{path.name} lacks {section!r}"
    assert "```" in text, f"{path.name} shows no command to confirm it by hand"


def test_no_runbook_without_an_alert_and_the_index_lists_them_all() -> None:
    files = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert files == set(ALL)
    index = (RUNBOOKS / "README.md").read_text()
    for name in ALL:
        assert f"]({name}.md)" in index


def test_every_verdict_that_is_a_problem_has_an_alertname() -> None:
    assert set(CATALOG) == set(VerdictName) - {VerdictName.OK, VerdictName.INCONCLUSIVE}
    assert len(set(ENGINE)) == len(ENGINE)


def test_rule_runbook_urls_point_at_existing_runbooks() -> None:
    for alertname, urls in rule_alerts().items():
        for url in urls:
            assert (REPO / url).is_file(), f"{alertname}: {url}"
            assert Path(url).stem == alertname


@pytest.mark.parametrize("base", [None, "https://git.example.com/sre/monitor/-/blob/main/docs/runbooks/"])
def test_the_engines_runbook_urls_point_at_existing_runbooks(base: str | None) -> None:
    cfg = load_config_text(
        "checks: [{name: s, kind: site, domain: a.test, control_sni: b.test, references: ['tls://127.0.0.1', 'https://localhost/q']}]\n"
        + (f"alerting: {{runbook_base_url: '{base}'}}\n" if base else "")
    )
    now = datetime.now(UTC)
    for verdict, kind in CATALOG.items():
        episode = Episode(check="s", vantage="local", agent="a", verdict=verdict, started_at=now, last_seen_at=now, confirmed_at=now)
        alert = new_alert(episode, cfg.checks[0], kind, conditions_for(cfg.checks[0], cfg.defaults.alert), cfg.alerting, now)
        url = alert.annotations["runbook_url"]
        if base is None:
            assert (REPO / url).is_file(), url
        else:
            assert url == base + f"{kind.alertname}.md"
            assert (RUNBOOKS / url.rsplit("/", 1)[1]).is_file()


def test_no_runbook_recommends_turning_verification_off() -> None:
    for path in RUNBOOKS.glob("*.md"):
        # Each paragraph or list item that names one must be refusing it.
        for block in re.split(r"\n\s*\n|\n(?=- )", path.read_text()):
            if any(word in block for word in DANGEROUS):
                assert re.search(r"\b(never|do not)\b", block, re.I), f"{path.name}: {block}"


def test_runbooks_link_only_inside_the_repository() -> None:
    for path in RUNBOOKS.glob("*.md"):
        assert not re.search(r"\]\((https?:|/)", path.read_text()), path.name
