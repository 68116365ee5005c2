"""The cross-vantage query: the newest result of a check from every (vantage, agent) that
reported recently — what analysis compares to tell server_down from censorship."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from monitor.model import ProbeResult, utcnow
from monitor.store import latest_per_check_vantage, make_engine, save_results, upgrade


def test_max_age_leaves_out_vantages_that_went_quiet(db_url: str) -> None:
    upgrade(db_url)
    now = utcnow()

    def measured(vantage: str, agent: str, ago: timedelta, ok: bool, check: str = "gh-tls") -> ProbeResult:
        return ProbeResult(
            check=check, kind="tls", vantage=vantage, target="github.com:443",
            started_at=now - ago, ok=ok, duration_s=0.01, agent=agent,
        )

    minute = timedelta(minutes=1)
    fresh_fail = measured("local", "probe-hk-1", minute, ok=False)
    fresh_ok = measured("local", "probe-fra-1", 2 * minute, ok=True)
    quiet = measured("corp-proxy", "probe-hk-1", 30 * minute, ok=True)  # its agent stopped reporting
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            save_results(session, [
                fresh_fail, fresh_ok, quiet,
                measured("local", "probe-hk-1", 20 * minute, ok=True),  # older than its newest
                measured("local", "probe-fra-1", minute, ok=True, check="other"),
            ])
        with Session(engine) as session:
            recent = latest_per_check_vantage(session, "gh-tls", max_age=5 * minute)
            everything = latest_per_check_vantage(session, "gh-tls")
    finally:
        engine.dispose()
    assert [r.id for r in recent] == [fresh_ok.id, fresh_fail.id]  # by vantage, then agent
    assert [(r.vantage, r.agent, r.ok) for r in recent] == [("local", "probe-fra-1", True), ("local", "probe-hk-1", False)]
    assert [r.id for r in everything] == [quiet.id, fresh_ok.id, fresh_fail.id]


def test_the_peer_query_reads_only_the_recent_results_of_the_check(tmp_path) -> None:
    """latest_summaries is asked once per run judged: on SQLite its plan must use the
    (check, started_at) index for the time bound too, not read every stored result of the check."""
    from sqlalchemy import event

    from monitor.store.episodes import latest_summaries

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = make_engine(url)
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, parameters, context, many: seen.append((statement, parameters)))
    try:
        with Session(engine) as session:
            latest_summaries(session, "gh-tls", "tls", utcnow() - timedelta(minutes=5))
        statement, parameters = next((s, p) for s, p in seen if "row_number()" in s)
        with engine.connect() as connection:
            plan = " | ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    finally:
        engine.dispose()
    assert "USING INDEX ix_results_check_started_at (check=? AND started_at>?)" in plan, plan
