"""Retention removes only results older than storage.retention_raw, on SQLite and Postgres."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.model import ProbeResult, utcnow
from monitor.store import make_engine, save_results, upgrade
from monitor.store.models import ResultRow
from monitor.store.retention import prune_once


def _result(age_s: float) -> ProbeResult:
    return ProbeResult(check="c", kind="tcp", vantage="local", target="t:1", started_at=utcnow() - timedelta(seconds=age_s), ok=True, duration_s=0.1)


def test_prune_once_keeps_recent_results(db_url: str) -> None:
    # Whole UTC days go once they are past the retention: three days old with a retention of
    # one day is always past it, a minute old never.
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        old, recent = _result(3 * 86400), _result(60)
        with Session(engine) as s, s.begin():
            save_results(s, [old, recent])
        assert prune_once(engine, retention_s=86400) == 1
        with Session(engine) as s:
            assert s.scalars(select(ResultRow.id)).all() == [recent.id]
            assert s.scalar(select(func.count()).select_from(ResultRow)) == 1
    finally:
        engine.dispose()
