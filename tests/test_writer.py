"""ResultWriter against real databases: batching, bounded queue, retries, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.model import ProbeResult
from monitor.store import ResultWriter, make_engine, upgrade
from monitor.store.models import ResultRow
from tests.conftest import (
    create_postgres_database,
    drop_postgres_database,
    fresh_postgres_database_name,
    postgres_unavailable,
    require,
)


def result(n: int = 0, **facts) -> ProbeResult:
    return ProbeResult(
        check="gh-tls", kind="tls", vantage="local", target="github.com:443",
        started_at=datetime.now(timezone.utc), ok=True, duration_s=0.01, facts={"n": n, **facts},
    )


def stored_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return set(session.scalars(select(ResultRow.id)))
    finally:
        engine.dispose()


async def eventually(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Wait (bounded) for `condition`; the bound is a hang guard, not a performance claim."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for: {what}")


@pytest.fixture
def url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


async def test_writes_full_batches_and_flushes_the_rest_on_close(url):
    writer = ResultWriter(url, batch_size=7, flush_interval=60.0)
    task = asyncio.create_task(writer.run())
    results = [result(i) for i in range(20)]
    for r in results:
        writer.submit(r)
    # Full batches go without waiting for the (long) flush interval...
    await eventually(lambda: writer.written == 14, "two full batches written")
    assert writer.queue_depth == 6
    # ...and close stores the partial one.
    await writer.close()
    await task
    assert writer.written == 20 and writer.queue_depth == 0 and writer.dropped == 0
    assert stored_ids(url) == {r.id for r in results}


async def test_flush_interval_writes_a_partial_batch(url):
    writer = ResultWriter(url, batch_size=500, flush_interval=0.05)
    task = asyncio.create_task(writer.run())
    writer.submit(result())
    await eventually(lambda: writer.written == 1, "partial batch written after flush_interval")
    await writer.close()
    await task


async def test_close_without_run_still_stores_everything(url):
    writer = ResultWriter(url, batch_size=3)
    results = [result(i) for i in range(8)]
    for r in results:
        writer.submit(r)
    await writer.close()
    assert writer.written == 8
    assert stored_ids(url) == {r.id for r in results}


async def test_full_queue_drops_oldest(url, caplog):
    writer = ResultWriter(url, queue_size=3)
    results = [result(i) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="monitor.store.writer"):
        for r in results:
            writer.submit(r)  # nothing drains the queue yet
    assert writer.dropped == 2 and writer.queue_depth == 3
    # One warning when dropping starts, not one per result.
    assert len([rec for rec in caplog.records if "queue full" in rec.getMessage()]) == 1
    await writer.close()
    assert stored_ids(url) == {r.id for r in results[2:]}


async def test_unwritable_result_costs_only_itself(url, caplog):
    poison = result(1, blob=object())  # facts that are not JSON: a probe bug
    good = [result(0), result(2)]
    writer = ResultWriter(url)
    for r in (good[0], poison, good[1]):
        writer.submit(r)
    with caplog.at_level(logging.ERROR, logger="monitor.store.writer"):
        await writer.close()
    assert (writer.written, writer.dropped) == (2, 1)
    assert stored_ids(url) == {r.id for r in good}
    assert poison.id in caplog.text


async def test_retries_until_the_schema_exists(db_url):
    # The operator forgot `monitor db upgrade`: writes fail, results wait, then go in.
    writer = ResultWriter(db_url, queue_size=100, batch_size=2, flush_interval=0.01)
    task = asyncio.create_task(writer.run())
    first = [result(i) for i in range(3)]
    for r in first:
        writer.submit(r)
    await eventually(lambda: writer.write_errors >= 1, "a failed write")
    later = [result(i) for i in range(3, 6)]
    for r in later:
        writer.submit(r)  # still accepted while the database fails
    assert writer.queue_depth == 6 and writer.written == 0

    await asyncio.to_thread(upgrade, db_url)
    await eventually(lambda: writer.written == 6, "all results written after the schema appeared")
    await writer.close()
    await task
    assert writer.dropped == 0
    assert stored_ids(db_url) == {r.id for r in first + later}


@pytest.fixture
def postgres_name() -> Iterator[str]:
    reason = postgres_unavailable()
    require(reason is None, reason or "")
    name = fresh_postgres_database_name()
    yield name
    drop_postgres_database(name)


@pytest.mark.postgres
async def test_survives_the_database_being_dropped_and_recreated(postgres_name):
    url = create_postgres_database(postgres_name)
    upgrade(url)
    writer = ResultWriter(url, batch_size=1, flush_interval=0.01)
    task = asyncio.create_task(writer.run())
    writer.submit(result(0))
    await eventually(lambda: writer.written == 1, "first result written")

    # Pooled connections die with the database; the writer must reconnect, not give up.
    await asyncio.to_thread(drop_postgres_database, postgres_name)
    after_drop = [result(i) for i in range(1, 4)]
    for r in after_drop:
        writer.submit(r)
    await eventually(lambda: writer.write_errors >= 1, "a failed write")

    await asyncio.to_thread(create_postgres_database, postgres_name)
    await asyncio.to_thread(upgrade, url)
    await eventually(lambda: writer.written == 4, "results written to the recreated database")
    await writer.close()
    await task
    assert stored_ids(url) == {r.id for r in after_drop}


async def test_close_gives_up_at_its_deadline(tmp_path, caplog):
    # A database that cannot come back (its directory does not exist) must not hang shutdown.
    writer = ResultWriter(f"sqlite:///{tmp_path / 'missing' / 'monitor.db'}")
    writer.submit(result(0))
    writer.submit(result(1))
    with caplog.at_level(logging.ERROR, logger="monitor.store.writer"):
        await writer.close(timeout=0.3)
    assert writer.write_errors >= 1
    assert (writer.written, writer.dropped, writer.queue_depth) == (0, 2, 0)
    assert "2 results not stored" in caplog.text


@pytest.mark.parametrize("settings", [{"queue_size": 0}, {"batch_size": 0}, {"flush_interval": 0}])
def test_rejects_settings_that_could_never_drain(settings, tmp_path):
    with pytest.raises(ValueError):
        ResultWriter(f"sqlite:///{tmp_path / 'monitor.db'}", **settings)
