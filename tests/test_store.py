"""Repository round trips and queries on SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName
from monitor.store import (
    latest_per_check_vantage,
    make_engine,
    prune_older_than,
    results_between,
    save_results,
    upgrade,
)
from monitor.store.models import ResultRow

T0 = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=timezone.utc)


def result(check: str = "gh-tls", vantage: str = "local", at: datetime = T0, **kw) -> ProbeResult:
    fields = {"kind": "tls", "target": "github.com:443", "ok": True, "duration_s": 0.0123} | kw
    return ProbeResult(check=check, vantage=vantage, started_at=at, **fields)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def save(engine: Engine, results: list[ProbeResult]) -> int:
    with Session(engine) as session, session.begin():
        return save_results(session, results)


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(ResultRow))


def test_round_trip_is_exact(engine):
    failed = result(
        agent="probe-hk-1",
        ok=False,
        phases={"resolve": 0.0011, "connect": 0.1 + 0.2, "tls": 1e-7},
        failure=Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE, "peer reset: 连接被重置"),
        facts={"ip": "140.82.112.3", "alpn": None, "answers": ["a", "b"], "nested": {"n": 3, "ok": False}},
        verdict=Verdict(VerdictName.SNI_BLOCKING, Confidence.HIGH, ("control SNI completed", "target SNI reset")),
    )
    plain = result(check="gh-dns", at=T0 + timedelta(microseconds=1))
    empty_detail = result(
        check="gh-http", failure=Failure(FailureClass.HTTP_STATUS, Operation.HTTP_ROUND_TRIP), ok=False
    )
    assert save(engine, [failed, plain, empty_detail]) == 3

    with Session(engine) as session:
        for original in (failed, plain, empty_detail):
            (back,) = results_between(session, original.check, "local", T0, T0 + timedelta(seconds=1))
            assert back == original
            assert back.started_at.tzinfo is timezone.utc
            assert back.to_json() == original.to_json()
        # "no verdict" is SQL NULL, not a JSON null, so analysis can filter with IS NULL.
        assert session.scalar(select(func.count()).where(ResultRow.verdict.is_(None))) == 2


def test_instants_in_any_zone_are_stored_as_utc(engine):
    # Agents on hosts in different zones still order correctly on one time axis.
    beijing = timezone(timedelta(hours=8))
    early = result(at=datetime(2026, 11, 20, 17, 0, tzinfo=beijing))  # 09:00 UTC
    late = result(at=datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc))
    save(engine, [late, early])
    with Session(engine) as session:
        got = results_between(session, "gh-tls", "local", datetime(2026, 11, 20, 8, 59, tzinfo=timezone.utc),
                              datetime(2026, 11, 20, 9, 1, tzinfo=timezone.utc))
    assert [r.id for r in got] == [early.id]
    assert got[0].started_at == datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    assert got[0].started_at.tzinfo is timezone.utc


def test_naive_datetime_is_refused(engine):
    with pytest.raises(StatementError, match="naive datetime"):
        save(engine, [result(at=datetime(2026, 11, 20, 10, 0))])
    assert count(engine) == 0


def test_insert_is_idempotent(engine):
    a, b, c = result(), result(), result()
    assert save(engine, [a, b]) == 2
    assert save(engine, [a, b]) == 0
    assert save(engine, [b, c, c]) == 1  # a duplicate inside one batch is stored once too
    assert save(engine, []) == 0
    assert count(engine) == 3


def test_results_between_is_half_open_and_filtered(engine):
    minute = timedelta(minutes=1)
    inside = [result(at=T0 + i * minute) for i in range(3)]
    save(engine, [
        *reversed(inside),
        result(at=T0 - timedelta(microseconds=1)),
        result(at=T0 + 3 * minute),  # == until: excluded
        result(check="other", at=T0 + minute),
        result(vantage="corp-proxy", at=T0 + minute),
    ])
    with Session(engine) as session:
        got = results_between(session, "gh-tls", "local", T0, T0 + 3 * minute)
    assert [r.id for r in got] == [r.id for r in inside]


def test_latest_per_check_vantage(engine):
    minute = timedelta(minutes=1)
    newest = {
        ("corp-proxy", "probe-hk-1"): result(vantage="corp-proxy", agent="probe-hk-1", at=T0 + minute),
        ("local", "probe-fra-1"): result(agent="probe-fra-1", at=T0),
        ("local", "probe-hk-1"): result(agent="probe-hk-1", at=T0 + 2 * minute),
    }
    older = [
        result(vantage="corp-proxy", agent="probe-hk-1", at=T0),
        result(agent="probe-hk-1", at=T0 + minute),
        result(agent="probe-fra-1", at=T0 - minute),
    ]
    save(engine, [*older, *newest.values(), result(check="other", agent="probe-hk-1", at=T0 + 5 * minute)])
    with Session(engine) as session:
        got = latest_per_check_vantage(session, "gh-tls")
        assert latest_per_check_vantage(session, "unknown") == []
    assert got == [newest[k] for k in sorted(newest)]


def test_latest_per_check_vantage_returns_one_row_on_a_tie(engine):
    twins = [result(agent="a"), result(agent="a")]
    save(engine, twins)
    with Session(engine) as session:
        got = latest_per_check_vantage(session, "gh-tls")
    assert [r.id for r in got] == [max(t.id for t in twins)]


def test_prune_older_than_removes_whole_utc_days(engine):
    # Whole days on both dialects (on PostgreSQL a day is a partition, dropped at once): with
    # the cutoff at 2026-10-21 10:00:00.123456, every day up to 2026-10-20 goes, and 2026-10-21
    # stays whole, even its results before the cutoff.
    day = timedelta(days=1)
    cutoff = T0 - 30 * day
    old = [
        result(at=T0 - 31 * day),
        result(check="other", at=datetime(2026, 10, 20, 23, 59, 59, 999999, tzinfo=timezone.utc)),
        result(at=datetime(2026, 9, 1, tzinfo=timezone.utc)),
    ]
    kept = [
        result(at=datetime(2026, 10, 21, tzinfo=timezone.utc)),
        result(at=cutoff - timedelta(microseconds=1)),
        result(at=cutoff),
        result(at=T0),
    ]
    save(engine, old + kept)
    with Session(engine) as session, session.begin():
        assert prune_older_than(session, cutoff) == 3
    with Session(engine) as session, session.begin():
        assert prune_older_than(session, cutoff) == 0
        left = results_between(session, "gh-tls", "local", T0 - 100 * day, T0 + day)
        assert results_between(session, "other", "local", T0 - 100 * day, T0 + day) == []
    assert [r.id for r in left] == [r.id for r in kept]
    # A result of a pruned day can still be stored (a spool replayed late): its day comes back.
    late = result(at=T0 - 31 * day)
    assert save(engine, [late]) == 1
