"""The largest verified checksum-database tree: stored, read back, and only ever grown
(SQLite and the real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from monitor.store import StoredTree, all_sumdb_trees, get_sumdb_tree, make_engine, save_sumdb_tree, upgrade
from monitor.store.models import SumdbTreeRow

H1 = "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo="
H2 = "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
H3 = "SapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw="


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def save(engine: Engine, name: str, size: int, hash: str, **kw) -> bool:
    with Session(engine) as session, session.begin():
        return save_sumdb_tree(session, name, size, hash, **kw)


def get(engine: Engine, name: str) -> StoredTree | None:
    with Session(engine) as session:
        return get_sumdb_tree(session, name)


def test_nothing_stored_is_none(engine):
    assert get(engine, "sum.golang.org") is None


def test_only_a_larger_tree_replaces_the_stored_one(engine):
    assert save(engine, "sum.golang.org", 6476701, H2)
    assert get(engine, "sum.golang.org") == StoredTree(6476701, H2)

    assert save(engine, "sum.golang.org", 65209736, H1)  # grew
    assert not save(engine, "sum.golang.org", 3935567, H3)  # an older tree never goes back
    assert not save(engine, "sum.golang.org", 65209736, H3)  # same size, other hash: kept, not overwritten
    assert get(engine, "sum.golang.org") == StoredTree(65209736, H1)


def test_databases_are_kept_apart_and_listed(engine):
    save(engine, "sum.golang.org", 65209736, H1)
    save(engine, "sum.example.com", 3, H3)
    with Session(engine) as session:
        assert all_sumdb_trees(session) == {
            "sum.golang.org": StoredTree(65209736, H1),
            "sum.example.com": StoredTree(3, H3),
        }


def test_size_beyond_32_bits_and_time_round_trip(engine):
    at = datetime(2026, 11, 21, 8, 0, 0, 123000, tzinfo=timezone.utc)
    assert save(engine, "big.example", (1 << 40) + 1, H1, at=at)
    with Session(engine) as session:
        row = session.get(SumdbTreeRow, "big.example")
        assert (row.size, row.verified_at) == ((1 << 40) + 1, at)


async def test_the_writer_persists_a_tree_a_goproxy_result_verified(db_url: str) -> None:
    from monitor.model import ProbeResult, utcnow
    from monitor.store import ResultWriter

    upgrade(db_url)
    writer = ResultWriter(db_url, flush_interval=0.05)
    task = asyncio.create_task(writer.run())
    # One batch: runs that verified trees of two databases, not in size order; of two trees of
    # the largest size, the first one is kept (as saving them one by one would).
    trees = [("sum.example", 40, "B"), ("sum.example", 42, "A"), ("other.example", 7, "C"), ("sum.example", 42, "D"), ("sum.example", 41, "E")]
    for name, size, letter in trees:
        tree = {"name": name, "size": size, "hash": letter * 43 + "="}
        writer.submit(ProbeResult(check="g", kind="goproxy", vantage="local", target="m@v1.0.0 via p", started_at=utcnow(), ok=True, duration_s=0.1, facts={"sumdb_tree": tree}))
    await writer.close()
    await task
    assert writer.written == len(trees)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            assert get_sumdb_tree(session, "sum.example") == (42, "A" * 43 + "=")
            assert get_sumdb_tree(session, "other.example") == (7, "C" * 43 + "=")
    finally:
        engine.dispose()
