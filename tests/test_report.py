"""`monitor report` on SQLite and the real PostgreSQL: scores equal to a hand computation,
quarter boundaries in UTC, an empty quarter, a check added mid-quarter, the GOPROXY advice,
and the HTML printed to PDF by the real headless Chromium, then turned into PNG images by
pdftoppm and looked at pixel by pixel."""

from __future__ import annotations

import io
import json
from collections import Counter
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode
from monitor.config import Config, load_config_text
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName
from monitor.report import document, make_report
from monitor.report.advice import ProxyView, advise
from monitor.report.charts import LATENCY_COLOURS, VERDICT_COLOURS
from monitor.report.compute import slice_minutes
from monitor.report.period import between, quarter
from monitor.report.progress import Progress
from monitor.report.score import Measured, Slo, Weights, availability_part, blocked_part, grade, latency_part, score
from monitor.store import make_engine, save_results, upgrade
from monitor.store.episodes import save_episode
from tests.conftest import require

F, O, V = FailureClass, Operation, VerdictName
GOOD, BAD = "https://good.example", "https://bad.example"
Q4 = quarter("2026Q4")

CONFIG = """
agent: x
storage: {{url: "{url}"}}
vantages: [{{name: a}}, {{name: b}}]
report: {{title: "Q4 health", slo: {{availability: 0.995, latency_p95: 2s}}}}
checks:
  - {{name: web, kind: http, url: "https://example.com/", interval: 60s, timeout: 10s, vantages: [a, b]}}
  - {{name: mod, kind: goproxy, proxy: "{bad}|{good}", module: golang.org/x/text, version: v0.3.2, interval: 5m, timeout: 60s, vantages: [a]}}
  - {{name: site, kind: site, domain: example.org, control_sni: example.com, references: ["tls://198.18.0.1", "https://198.18.0.2/dns-query"], interval: 5m, timeout: 30s, vantages: [b]}}
"""


def config_for(url: str, extra: str = "") -> Config:
    return load_config_text(CONFIG.format(url=url, bad=BAD, good=GOOD) + extra)


def web(vantage: str, at: datetime, ok: bool, *, target: str = "https://user:secret@example.com/") -> ProbeResult:
    failure = None if ok else Failure(F.CONNECTION_RESET if vantage == "a" else F.GENERIC_TIMEOUT_ERROR, O.TLS_HANDSHAKE if vantage == "a" else O.CONNECT, "x")
    return ProbeResult(check="web", kind="http", vantage=vantage, agent="x", target=target, started_at=at, ok=ok,
                       duration_s=0.1 if ok else 10.0, phases={"connect": 0.02}, failure=failure)


def mod(at: datetime, tampered: bool) -> ProbeResult:
    served = BAD if tampered else GOOD
    requests = [] if tampered else [{"what": "info", "proxy": BAD, "seconds": 0.2, "failure": {"class": "connection_reset", "operation": "tls_handshake"}}]
    requests += [{"what": w, "proxy": served, "status": 200, "seconds": s} for w, s in (("info", 0.1), ("mod", 0.1), ("zip", 0.3))]
    return ProbeResult(
        check="mod", kind="goproxy", vantage="a", agent="x", target=f"golang.org/x/text@v0.3.2 via {BAD}|{GOOD}", started_at=at,
        ok=not tampered, duration_s=0.5,
        failure=Failure(F.CHECKSUM_MISMATCH, O.VERIFY, "zip: got h1:x") if tampered else None,
        verdict=Verdict(V.MODULE_TAMPERED if tampered else V.OK, Confidence.HIGH, ("zip from bad.example hashes to h1:x",) if tampered else ()),
        facts={"requests": requests, "served_by": {w: served for w in ("info", "mod", "zip")}},
    )


def site(at: datetime, blocked: bool) -> list[ProbeResult]:
    part = ProbeResult(check="site", kind="site", vantage="b", agent="x", target="198.18.0.9:443 example.org", started_at=at,
                       ok=not blocked, duration_s=0.3, facts={"role": "handshake", "attempt": 1, "round_id": "r"})
    verdict = Verdict(V.SNI_BLOCKING if blocked else V.OK, Confidence.HIGH, ("control SNI completed, target SNI reset",) if blocked else ())
    summary = ProbeResult(check="site", kind="site", vantage="b", agent="x", target="example.org", started_at=at, ok=not blocked,
                          duration_s=7.0, verdict=verdict, facts={"role": "summary", "round_id": "r"})
    return [part, summary]


def hand_dataset() -> list[ProbeResult]:
    """From 2026-11-02 00:00 UTC:
    web: 1000 minutes from a and b; a fails minutes 0–4, b minutes 0–49; 0.1 s when ok.
    mod (from a, every 5 min): 400 runs; runs 0–9 get tampered bytes from bad.example,
        the rest reset by bad.example and served by good.example; 0.5 s.
    site (from b, every 5 min): 200 rounds; rounds 0–1 are sni_blocking, the rest ok in 7 s.
    And in 2026Q3, for the trend: web from a, 100 ok minutes."""
    t0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
    out = []
    for i in range(1000):
        at = t0 + timedelta(minutes=i, seconds=5)
        out += [web("a", at, ok=i >= 5), web("b", at + timedelta(seconds=20), ok=i >= 50)]
    out += [mod(t0 + timedelta(minutes=5 * i, seconds=30), tampered=i < 10) for i in range(400)]
    for i in range(200):
        out += site(t0 + timedelta(minutes=5 * i, seconds=40), blocked=i < 2)
    q3 = datetime(2026, 8, 10, tzinfo=timezone.utc)
    out += [web("a", q3 + timedelta(minutes=i), ok=True) for i in range(100)]
    return out


def store(url: str, results: list[ProbeResult], episodes: list[Episode] = ()) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        for i in range(0, len(results), 250):  # in batches, as the writer stores them
            with Session(engine) as session, session.begin():
                save_results(session, results[i : i + 250])
        with Session(engine) as session, session.begin():
            for e in episodes:
                save_episode(session, e)
    finally:
        engine.dispose()


EPISODE = Episode(
    check="site", vantage="b", agent="x", verdict=V.SNI_BLOCKING, started_at=datetime(2026, 11, 2, 0, 0, 40, tzinfo=timezone.utc),
    last_seen_at=datetime(2026, 11, 2, 0, 5, 40, tzinfo=timezone.utc), rounds=2, confirmed_at=datetime(2026, 11, 2, 0, 5, 40, tzinfo=timezone.utc),
    ended_at=datetime(2026, 11, 2, 0, 15, 40, tzinfo=timezone.utc), confidence="high", evidence=("control SNI completed, target SNI reset",),
)


@pytest.fixture
def hand(db_url: str) -> Config:
    store(db_url, hand_dataset(), [EPISODE])
    return config_for(db_url)


def by(items: list[dict], **match) -> dict:
    (found,) = [i for i in items if all(i[k] == v for k, v in match.items())]
    return found


# -- scores ---------------------------------------------------------------------------------------


def test_scores_equal_the_hand_computation(hand: Config) -> None:
    doc = document(hand, Q4)
    checks = doc["checks"]
    # budget b = 1 − 0.995 = 0.005; a part = 100·(10 − burn)/9 with burn = (1 − A)/b.
    web_ = by(checks, check="web")
    # runs 2000, ok 995 + 950 = 1945: A = 0.9725, burn = 0.0275/0.005 = 5.5, part = 100·4.5/9 = 50.0
    # latency: p95 = 0.1 s ≤ 2 s → 100. No verdicts (http): blocked does not apply.
    # score = (0.5·50 + 0.2·100) / (0.5 + 0.2) = 45/0.7 = 64.2857 → 64.3, grade D
    assert (web_["score"], web_["grade"], web_["parts"]) == (64.3, "D", {"availability": 50.0, "latency": 100.0})
    assert (web_["runs"], web_["successes"], web_["reachability"]) == (2000, 1945, 0.9725)
    # uptime, 1-minute slices (interval 60 s): minutes 0–4 failed from both vantages: 995/1000
    assert (web_["uptime"], web_["slice_minutes"]) == (0.995, 1)
    assert abs(web_["latency_p95_s"] - 0.1) <= 0.02 * 0.1
    assert web_["target"] == "https://REDACTED@example.com/"  # the credentials in the stored target are not shown (monitor.redact)
    # from a: 995/1000 = 0.995, burn 1 → 100; (0.5·100 + 0.2·100)/0.7 = 100.0
    # from b: 950/1000 = 0.95, burn 10 → 0;   (0.5·0 + 0.2·100)/0.7 = 28.5714 → 28.6, grade F
    assert [(v["check"], v["vantage"], v["score"], v["grade"]) for v in web_["vantages"]] == [("web", "a", 100.0, "A"), ("web", "b", 28.6, "F")]
    assert by(web_["vantages"], vantage="b")["failures"] == {"generic_timeout_error@connect": 50}

    mod_ = by(checks, check="mod")
    # 390/400 ok: A = 0.975, burn 5 → 100·5/9 = 55.6; latency 0.5 s → 100; judged 400, blocked 0 → 100
    # raw = 0.5·55.556 + 0.2·100 + 0.3·100 = 77.8; 10 module_tampered runs cap it at 40.0, grade F
    assert (mod_["score"], mod_["grade"], mod_["capped"]) == (40.0, "F", True)
    assert mod_["parts"] == {"availability": 55.6, "latency": 100.0, "blocked": 100.0}
    assert mod_["integrity_events"] == 10 and mod_["verdict_minutes"] == {"module_tampered": 50}  # 10 runs × 5 min

    site_ = by(checks, check="site")
    # 198/200 ok: A = 0.99, burn 2 → 100·8/9 = 88.9; p95 7 s ≥ 3·2 s → 0;
    # 2 sni_blocking of 200 judged: β = 0.01, burn 2 → 88.9
    # score = 0.5·88.889 + 0.2·0 + 0.3·88.889 = 71.111 → 71.1, grade C; the handshake parts are not runs
    assert (site_["score"], site_["grade"], site_["runs"]) == (71.1, "C", 200)
    assert site_["parts"] == {"availability": 88.9, "latency": 0.0, "blocked": 88.9}
    assert site_["blocked_minutes"] == 10 and site_["verdict_minutes"] == {"sni_blocking": 10}  # 2 rounds × 5 min

    # Networks: the mean of their checks' scores, capped if any saw tampering.
    # a@x: (100 + 40)/2 = 70 → capped at 40.0; b@x: (28.5714 + 71.1111)/2 = 49.8413 → 49.8, grade F
    assert [(n["network"], n["score"], n["grade"], n["capped"]) for n in doc["networks"]] == [("a@x", 40.0, "F", True), ("b@x", 49.8, "F", False)]
    # Overall: (64.2857 + 40 + 71.1111)/3 = 58.47 → capped at 40.0 (mod was tampered with)
    s = doc["summary"]
    assert (s["score"], s["grade"], s["capped"], s["checks"], s["networks"], s["runs"]) == (40.0, "F", True, 3, 2, 2600)
    assert s["blocked_minutes"] == 10 and s["integrity_events"] == 10

    # Trend: 2026Q3 had web from a only, 100 ok runs → 100.0; 64.3 − 100.0 = −35.7. mod and site are new.
    assert (web_["previous_score"], web_["trend"], web_["new"]) == (100.0, -35.7, False)
    assert (mod_["new"], site_["new"], s["previous_score"], s["trend"]) == (True, True, 100.0, -60.0)

    # Incidents: the episode, 15 minutes from its first round (00:00:40) to its end (00:15:40).
    (incident,) = doc["incidents"]
    assert (incident["check"], incident["network"], incident["verdict"], incident["duration_s"]) == ("site", "b@x", "sni_blocking", 900.0)
    assert incident["evidence"] == ["control SNI completed, target SNI reset"]


def test_goproxy_advice_from_each_network(hand: Config) -> None:
    doc = document(hand, Q4)
    (advice,) = doc["advice"]
    # bad.example served tampered bytes 10 times (and reset the TLS handshake the other 390):
    # never recommended; good.example served all 390 runs that reached it.
    assert advice["network"] == "a@x" and advice["goproxy"] == f"{GOOD},direct"
    assert advice["avoid"] == [{"proxy": BAD, "why": "served tampered modules in 10 of 400 fetches (module_tampered): do not use it"}]
    good = by(doc["proxies"], proxy=GOOD)
    assert (good["asked"], good["served"], good["availability"], good["tampered"]) == (390, 390, 1.0, 0)
    assert abs(good["fetch_p95_s"] - 0.5) <= 0.02 * 0.5  # .info 0.1 + .mod 0.1 + .zip 0.3
    bad = by(doc["proxies"], proxy=BAD)
    assert (bad["asked"], bad["served"], bad["tampered"], bad["failures"]) == (400, 10, 10, {"connection_reset@tls_handshake": 390})
    assert "GOSUMDB=off" in doc["advice_note"] and "Never" in doc["advice_note"]


def test_score_parts_and_grades() -> None:
    assert availability_part(0.995, 0.995) == 100.0
    assert availability_part(0.99, 0.995) == pytest.approx(100 * 8 / 9)  # burn 2
    assert availability_part(0.9, 0.995) == 0.0  # burn 20, past ten budgets
    assert latency_part(2.0, 2.0) == 100.0 and latency_part(3.0, 2.0) == 75.0 and latency_part(6.5, 2.0) == 0.0
    assert blocked_part(0.0, 0.995) == 100.0 and blocked_part(0.05, 0.995) == 0.0
    assert [grade(x) for x in (90.0, 89.9, 80.0, 70.0, 60.0, 59.9, None)] == ["A", "B", "B", "C", "D", "F", "–"]
    slo, weights = Slo(0.995, 2.0), Weights(0.5, 0.2, 0.3)
    assert score(Measured(0, 0, None), slo, weights).value is None
    # All three parts: (0.5·100 + 0.2·75 + 0.3·100)/1.0 = 95.0
    assert score(Measured(1000, 1000, 3.0, judged=10), slo, weights).value == 95.0
    # Nothing succeeded: availability alone, 0.
    assert score(Measured(10, 0, None), slo, weights).value == 0.0
    # Integrity caps at 40 whatever the rest.
    capped = score(Measured(1000, 1000, 0.1, judged=1000, integrity=1), slo, weights)
    assert (capped.value, capped.capped) == (40.0, True)


def test_advice_separators_and_unusable_proxies() -> None:
    def view(proxy: str, asked: int, served: int, failures: dict, verdicts: dict = {}, value: float = 90.0, p95: float = 1.0) -> ProxyView:
        from collections import Counter

        from monitor.report.score import Score
        return ProxyView(proxy, asked, served, p95, Counter(failures), Counter(verdicts), Score(value, grade(value), {}))

    flaky = view("https://flaky.example", 100, 97, {"generic_timeout_error@connect": 3}, value=95.0)
    lagging = view("https://lagging.example", 100, 90, {"module_not_found@http_round_trip": 10}, value=80.0)
    last = view("https://last.example", 100, 100, {}, value=70.0)
    blocked = view("https://proxy.golang.org", 100, 2, {"connection_reset@tls_handshake": 98}, {"sni_blocking": 98})
    missing = view("https://empty.example", 10, 0, {"module_not_found@http_round_trip": 10})
    a = advise("cn-1@x", [last, blocked, lagging, flaky, missing])
    # flaky fails with errors: '|' lets them fall through; lagging only says "not found": ','.
    assert a.goproxy == "https://flaky.example|https://lagging.example,https://last.example,direct"
    assert dict((p.proxy, why) for p, why in a.avoid) == {
        "https://empty.example": "does not serve the module: not found in 100% of fetches",
        "https://proxy.golang.org": "blocked: 98% of fetches failed, mostly connection_reset during tls_handshake (verdict sni_blocking)",
    }
    assert advise("n", [blocked]).goproxy == "direct"


def test_slices_follow_the_check_interval() -> None:
    assert [slice_minutes(s) for s in (1, 45, 60, 90, 300, 420, 3600, 7200, 5 * 3600, 86400, 7 * 86400)] == [1, 1, 1, 2, 5, 10, 60, 120, 360, 1440, 1440]


def test_uptime_over_slices_of_the_interval(db_url: str) -> None:
    # Interval 5 min: a slice is up if any run in it succeeded from any vantage.
    t0 = datetime(2026, 10, 5, 3, 0, tzinfo=timezone.utc)
    results = [
        web("a", t0 + timedelta(minutes=0), ok=False), web("b", t0 + timedelta(minutes=3), ok=True),  # slice 0: up
        web("a", t0 + timedelta(minutes=5), ok=False), web("b", t0 + timedelta(minutes=9), ok=False),  # slice 1: down
        web("a", t0 + timedelta(minutes=57), ok=True),  # slice 11: up
        web("a", t0 + timedelta(hours=1, minutes=1), ok=False),  # next hour, slice 0: down
    ]
    store(db_url, results)
    doc = document(_with_interval(db_url, "5m"), Q4)
    w = by(doc["checks"], check="web")
    assert (w["slice_minutes"], w["uptime"], w["reachability"]) == (5, 0.5, round(2 / 6, 6))


def _with_interval(url: str, interval: str) -> Config:
    return load_config_text(CONFIG.format(url=url, bad=BAD, good=GOOD).replace("interval: 60s", f"interval: {interval}"))


# -- periods ------------------------------------------------------------------------------------


def test_quarter_boundaries_are_utc(db_url: str) -> None:
    beijing = timezone(timedelta(hours=8))
    results = [
        web("a", datetime(2026, 9, 30, 23, 59, 59, 999000, tzinfo=timezone.utc), ok=False),  # Q3
        web("a", datetime(2026, 10, 1, 7, 59, 59, tzinfo=beijing), ok=False),  # 09-30 23:59:59 UTC: Q3
        web("a", datetime(2026, 10, 1, 0, 0, tzinfo=timezone.utc), ok=True),  # Q4
        web("a", datetime(2026, 10, 1, 8, 0, tzinfo=beijing), ok=True),  # 10-01 00:00 UTC: Q4
        web("a", datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), ok=True),  # Q4
        web("a", datetime(2027, 1, 1, 0, 0, tzinfo=timezone.utc), ok=False),  # 2027Q1
    ]
    store(db_url, results)
    config = config_for(db_url)
    q4 = by(document(config, Q4)["checks"], check="web")
    assert (q4["runs"], q4["successes"], q4["score"], q4["previous_score"]) == (3, 3, 100.0, 0.0)
    assert (q4["first_seen"], q4["last_seen"]) == ("2026-10-01", "2026-12-31")
    q3 = by(document(config, quarter("2026Q3"))["checks"], check="web")
    assert (q3["runs"], q3["successes"]) == (2, 0)
    q1 = by(document(config, quarter("2027q1"))["checks"], check="web")
    assert (q1["runs"], q1["successes"], q1["previous_score"]) == (1, 0, 100.0)
    # --from/--to: hours in UTC; a date is midnight UTC, an offset is honoured, the end rounds up.
    span = between("2026-10-01T07:30+08:00", "2026-10-01T00:00:01Z")
    assert (span.start, span.end) == (datetime(2026, 9, 30, 23, tzinfo=timezone.utc), datetime(2026, 10, 1, 1, tzinfo=timezone.utc))
    around = by(document(config, span)["checks"], check="web")
    assert (around["runs"], around["successes"]) == (4, 2)


def test_quarter_arithmetic() -> None:
    q1 = quarter("2027Q1")
    assert (q1.start, q1.end) == (datetime(2027, 1, 1, tzinfo=timezone.utc), datetime(2027, 4, 1, tzinfo=timezone.utc))
    assert q1.previous() == Q4 and Q4.previous().label == "2026Q3"
    assert (Q4.start, Q4.end, Q4.seconds) == (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc), 92 * 86400)
    for bad in ("2026Q5", "Q4", "2026-10"):
        with pytest.raises(ValueError, match="invalid quarter"):
            quarter(bad)
    with pytest.raises(ValueError, match="must be after"):
        between("2026-10-02", "2026-10-01")


def test_an_empty_quarter(db_url: str) -> None:
    store(db_url, [])
    doc = document(config_for(db_url), Q4)
    assert doc["checks"] == [] and doc["networks"] == [] and doc["advice"] == [] and doc["incidents"] == []
    s = doc["summary"]
    assert (s["score"], s["grade"], s["runs"], s["uptime"]) == (None, "–", 0, None)
    assert s["lines"] == ["No results were stored for 2026Q4: nothing to score."]
    from monitor.report.render_html import render_html
    from monitor.report.render_md import render_md

    assert "No results in this period." in render_html(doc) and "no runs in this period" in render_html(doc)
    assert "No results in this period." in render_md(doc)


def test_a_check_added_mid_quarter(db_url: str) -> None:
    # "old" ran hourly all quarter; "new" (hourly too) from 2026-11-15 on, always ok: it is
    # scored over the time it ran, not marked down for the weeks before it existed.
    extra = (
        "  - {name: old, kind: tcp, target: \"198.18.0.1:443\", interval: 1h, timeout: 10s, vantages: [a]}\n"
        "  - {name: new, kind: tcp, target: \"198.18.0.2:443\", interval: 1h, timeout: 10s, vantages: [a]}\n"
    )
    results = []
    for h in range(92 * 24):
        at = Q4.start + timedelta(hours=h, minutes=2)
        results.append(ProbeResult(check="old", kind="tcp", vantage="a", agent="x", target="198.18.0.1:443", started_at=at, ok=h % 100 != 0, duration_s=0.05))
        if at >= datetime(2026, 11, 15, tzinfo=timezone.utc):
            results.append(ProbeResult(check="new", kind="tcp", vantage="a", agent="x", target="198.18.0.2:443", started_at=at, ok=True, duration_s=0.05))
    store(db_url, results)
    doc = document(config_for(db_url, extra), Q4)
    new, old = by(doc["checks"], check="new"), by(doc["checks"], check="old")
    assert (new["first_seen"], new["new"], new["score"], new["runs"], new["slice_minutes"]) == ("2026-11-15", True, 100.0, 47 * 24, 60)
    # coverage: 47 days × 24 hourly slices of 60 min over 92 days × 1440 min = 67680/132480
    assert new["coverage"] == round(67680 / 132480, 6) and old["coverage"] == 1.0
    # old: 2208 runs, every 100th failed (h = 0, 100, …, 2200): 23 failures;
    # A = 2185/2208 = 0.98958, burn 2.083 → 100·(10 − 2.083)/9 = 87.96; latency 100 → (43.98 + 20)/0.7 = 91.4
    assert (old["runs"], old["successes"], old["score"]) == (2208, 2185, 91.4)
    assert "New this period: new, old (scored over the time they were measured)." in doc["summary"]["lines"]


# -- output ----------------------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress(2, stream=stream)
        p.step("reading rollups")
        p.step("scoring")
        p.finish()
    assert pipe.getvalue() == ""
    assert "[" + "-" * 30 + "]   0% reading rollups" in tty.getvalue() and "100% done" in tty.getvalue()


@pytest.mark.timeout(600)
def test_pdf_printed_by_chromium_has_the_scores_and_the_charts(hand: Config, tmp_path: Path) -> None:
    require(shutil.which("chromium"), "chromium (Debian package chromium) prints the PDF")
    require(shutil.which("pdftoppm") and shutil.which("pdftotext"), "poppler-utils (pdftoppm, pdftotext)")
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="#123456"/></svg>')
    config = hand.model_copy(update={"report": hand.report.model_copy(update={"logo": str(logo)})})
    pdf = tmp_path / "q4.pdf"
    make_report(config, Q4, "pdf", pdf, stdout=io.StringIO(), progress=Progress(9, stream=io.StringIO()))
    assert pdf.read_bytes().startswith(b"%PDF")

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=120).stdout
    for expected in ("Q4 health", "64.3", "71.1", "28.6", f"GOPROXY={GOOD},direct", "sni_blocking", "Executive summary"):
        assert expected in text, expected
    assert "secret" not in text

    subprocess.run(["pdftoppm", "-r", "96", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages
    counts: dict[str, int] = {}
    for page in pages:
        with Image.open(page) as image:
            pixels = image.convert("RGB")
        histogram = Counter({rgb: n for n, rgb in pixels.getcolors(pixels.width * pixels.height)})
        ink = sum(n for (r, g, b), n in histogram.items() if min(r, g, b) < 235)
        if page == pages[0]:
            assert ink / (pixels.width * pixels.height) > 0.03, "the first page is (nearly) blank"
        for name, colour in (
            ("module_tampered bar", VERDICT_COLOURS["module_tampered"]), ("sni_blocking bar", VERDICT_COLOURS["sni_blocking"]),
            ("p95 markers", LATENCY_COLOURS["p95"]), ("logo", "#123456"),
        ):
            counts[name] = counts.get(name, 0) + count_colour(histogram, colour)
    # Solid fills of the charts (and the logo) are on the printed pages, in colours used nowhere
    # else. The week of 2026-11-02 stacks 50 minutes of module_tampered and 10 of sni_blocking
    # on an axis to 100: bars of about 104 and 21 px high, some 24 px wide.
    assert counts["module_tampered bar"] > 1500, counts
    assert counts["sni_blocking bar"] > 300, counts
    assert counts["p95 markers"] > 3 * 60, counts  # a 10×10 square per check, three checks
    assert counts["logo"] > 1000, counts  # 40×40


def count_colour(histogram: Counter, colour: str, tolerance: int = 6) -> int:
    """Pixels within `tolerance` of `colour` (#rrggbb) per channel."""
    want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(n for rgb, n in histogram.items() if all(abs(a - b) <= tolerance for a, b in zip(rgb, want)))


def test_cli_writes_json_and_refuses_bad_arguments(hand: Config, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=db_url, bad=BAD, good=GOOD))
    out = tmp_path / "q4.json"

    def monitor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "monitor", "--log-level", "warning", *args], capture_output=True, text=True, timeout=300)

    done = monitor("report", "-c", str(config), "--quarter", "2026Q4", "--format", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar: stderr is not a terminal
    doc = json.loads(out.read_text())
    assert [(c["check"], c["score"]) for c in doc["checks"]] == [("mod", 40.0), ("site", 71.1), ("web", 64.3)]
    assert [(v["check"], v["vantage"], v["score"]) for v in by(doc["checks"], check="web")["vantages"]] == [("web", "a", 100.0), ("web", "b", 28.6)]
    md = monitor("report", "-c", str(config), "--from", "2026-11-01", "--to", "2026-11-03", "--format", "md")
    assert md.returncode == 0 and "| web | http | 64.3 | D |" in md.stdout

    assert monitor("report", "-c", str(config), "--quarter", "2026Q5").returncode == 2
    refused = monitor("report", "-c", str(config), "--quarter", "2026Q4", "--format", "pdf")
    assert refused.returncode == 2 and "--format pdf needs -o FILE" in refused.stderr
    assert monitor("report", "-c", str(config), "--from", "2026-11-01").returncode == 2


def test_cli_says_when_the_store_is_not_migrated(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=f"sqlite:///{tmp_path / 'empty.db'}", bad=BAD, good=GOOD))
    done = subprocess.run([sys.executable, "-m", "monitor", "report", "-c", str(config), "--quarter", "2026Q4"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "monitor db upgrade" in done.stderr


def test_the_report_never_imports_probes() -> None:
    # DESIGN §2: store, export and report never import probes.
    code = "import sys, monitor.report, monitor.cli; print(sorted(m for m in sys.modules if m.startswith('monitor.probes')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
