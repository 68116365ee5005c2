"""The spool: results kept on disk while the store is unreachable, replayed in order, once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from monitor.store import ResultWriter, make_engine, save_results, upgrade
from monitor.store.spool import Spool, SpoolInUse
from tests.test_writer import eventually, result, stored_ids


def ids(results) -> list[str]:
    return [r.id for r in results]


def drain(spool: Spool) -> list[str]:
    out = []
    while spool.pending:
        out += ids(spool.oldest())
        spool.remove_oldest()
    return out


def test_replays_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    first, second = [result(i) for i in range(5)], [result(i) for i in range(5, 8)]
    spool = Spool(tmp_path, max_results=100, segment_results=2)
    spool.append(first)
    assert spool.pending == 5 and len(list(tmp_path.glob("*.jsonl"))) == 3
    assert ids(spool.oldest()) == ids(first[:2])
    spool.close()

    # A new run finds them, appends after them (never into an old segment), replays in order.
    spool = Spool(tmp_path, max_results=100, segment_results=2)
    assert spool.pending == 5
    spool.append(second)
    assert drain(spool) == ids(first + second)
    spool.close()
    assert list(tmp_path.glob("*.jsonl")) == []


def test_what_is_replayed_is_exactly_what_was_spooled(tmp_path: Path) -> None:
    original = result(1, answers=["198.18.0.1"], nested={"k": [1, 2]})
    original.agent = "agent-a"
    spool = Spool(tmp_path, max_results=10)
    spool.append([original])
    (replayed,) = spool.oldest()
    assert replayed.to_json() == original.to_json()
    spool.close()


def test_appends_during_a_replay_go_after_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_results=100, segment_results=10)
    spool.append([result(0), result(1)])
    head = spool.oldest()  # replay of the only, still open, segment begins
    spool.append([result(2)])
    assert spool.oldest() is head  # the segment being replayed did not grow
    spool.remove_oldest()
    assert spool.pending == 1
    spool.close()


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_results=10)
    spool.append([result(0), result(1)])
    spool.close()
    segment = next(tmp_path.glob("*.jsonl"))
    segment.write_bytes(segment.read_bytes()[:-20])  # a crash in the middle of the last write
    spool = Spool(tmp_path, max_results=10)
    assert spool.pending == 2
    with caplog.at_level(logging.ERROR, logger="monitor.store.spool"):
        assert len(spool.oldest()) == 1
    assert spool.dropped == 1 and "unreadable result" in caplog.text
    spool.remove_oldest()
    assert spool.pending == 0
    spool.close()


def test_bounded_by_dropping_the_oldest_segments(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    results = [result(i) for i in range(9)]
    spool = Spool(tmp_path, max_results=6, segment_results=2)
    with caplog.at_level(logging.ERROR, logger="monitor.store.spool"):
        spool.append(results[:6])
        spool.append(results[6:])  # needs 3 more places: the two oldest segments go
    assert spool.dropped == 4 and spool.pending == 5
    assert "spool full (6 results)" in caplog.text
    assert drain(spool) == ids(results[4:])
    spool.close()


def test_one_process_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_results=10)
    with pytest.raises(SpoolInUse, match="in use by another process"):
        Spool(tmp_path, max_results=10)
    spool.close()
    Spool(tmp_path, max_results=10).close()


def test_files_that_are_not_segments_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.jsonl").write_text("not ours\n")
    spool = Spool(tmp_path, max_results=10)
    assert spool.pending == 0
    spool.close()
    assert (tmp_path / "notes.jsonl").exists()


# -- the writer with a spool --------------------------------------------------------------------


async def test_store_down_spools_then_replays_in_order_exactly_once(db_url: str, tmp_path: Path) -> None:
    # No schema yet: every write fails the way an unreachable store does, and may heal.
    writer = ResultWriter(db_url, batch_size=2, flush_interval=0.01, spool_dir=tmp_path / "spool")
    task = asyncio.create_task(writer.run())
    results = [result(i) for i in range(7)]
    for r in results[:4]:
        writer.submit(r)
    await eventually(lambda: writer.spooled == 4, "results spooled while the store fails")
    for r in results[4:]:
        writer.submit(r)
    await eventually(lambda: writer.spooled == 7 and writer.queue_depth == 0, "later results spooled behind them")
    assert writer.written == 0 and writer.dropped == 0

    await asyncio.to_thread(upgrade, db_url)
    await eventually(lambda: writer.written == 7, "spool replayed", within=30)
    await writer.close()
    await task
    assert writer.spooled == 0 and writer.dropped == 0
    assert stored_ids(db_url) == set(ids(results))
    if db_url.startswith("sqlite"):  # rowid shows the order rows went in
        engine = make_engine(db_url)
        with engine.connect() as conn:
            assert [row[0] for row in conn.execute(text("SELECT id FROM results ORDER BY rowid"))] == ids(results)
        engine.dispose()


async def test_close_with_the_store_down_keeps_everything_on_disk_for_the_next_start(db_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    writer = ResultWriter(db_url, spool_dir=spool_dir)
    results = [result(i) for i in range(5)]
    for r in results:
        writer.submit(r)
    await writer.close(timeout=60)  # returns at once: nothing waits on the store
    assert (writer.written, writer.dropped, writer.spooled) == (0, 0, 5)

    upgrade(db_url)
    # One of them made it in before (the commit happened, its answer was lost): stored once.
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        save_results(session, results[:1])
    engine.dispose()
    writer = ResultWriter(db_url, spool_dir=spool_dir)
    assert writer.spooled == 5
    await writer.close()
    assert (writer.written, writer.dropped, writer.spooled) == (4, 0, 0)
    assert stored_ids(db_url) == set(ids(results))


async def test_a_full_queue_spills_to_the_spool_instead_of_dropping(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    writer = ResultWriter(db_url, queue_size=3, batch_size=100, flush_interval=60.0, spool_dir=tmp_path / "spool")
    results = [result(i) for i in range(5)]
    for r in results:
        writer.submit(r)  # nothing drains the queue yet: past queue_size, nothing is dropped
    assert writer.dropped == 0 and writer.queue_depth == 5
    task = asyncio.create_task(writer.run())
    await eventually(lambda: writer.written == 5, "spilled results stored")
    await writer.close()
    await task
    assert writer.dropped == 0
    assert stored_ids(db_url) == set(ids(results))


async def test_a_result_that_cannot_be_spooled_costs_only_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    poison = result(1, blob=object())  # facts that are not JSON: a probe bug
    good = [result(0), result(2)]
    writer = ResultWriter(f"sqlite:///{tmp_path / 'monitor.db'}", spool_dir=tmp_path / "spool")  # no schema: spooled
    for r in (good[0], poison, good[1]):
        writer.submit(r)
    with caplog.at_level(logging.ERROR, logger="monitor.store.spool"):
        await writer.close()
    assert (writer.spooled, writer.dropped) == (2, 1)
    assert poison.id in caplog.text


async def test_memory_stays_bounded_while_nothing_drains(tmp_path: Path) -> None:
    writer = ResultWriter(f"sqlite:///{tmp_path / 'monitor.db'}", queue_size=3, spool_dir=tmp_path / "spool")
    for i in range(8):
        writer.submit(result(i))
    assert (writer.queue_depth, writer.dropped) == (6, 2)  # twice queue_size: a hung write's margin
    await writer.close()
