"""The only path from probes to the database: a bounded queue drained in batches, and a
spool on local disk for when the database cannot be written.

Probes call `submit`, which never waits on the database. `run` writes batches on a store
thread (monitor/store/executor.py; the engine is sync SQLAlchemy); the spool's file work runs
on asyncio's default threads, so a hung database cannot keep results from reaching the disk. With a spool (the daemon always has one), a write the
database fails — unreachable, schema missing, disk full — moves that batch and everything
queued to the spool, fsync'd; from then on results go through the spool, oldest first, while
the database is retried with backoff, until the spool is empty again. A queue that fills up
faster than the database takes it spills to the spool the same way. Results are lost only if
the spool is full (spool_max_results) or the disk refuses them; both are counted and logged.

Without a spool the batch in hand is kept and retried, new results queue up to `queue_size`
after which the oldest are dropped, and what is left at the close deadline is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from monitor.model import ProbeResult
from monitor.store.engine import describe_error, make_engine
from monitor.store.executor import run_in_store_thread
from monitor.store.repository import save_results
from monitor.store.sumdb import save_sumdb_tree
from monitor.store.spool import Spool

log = logging.getLogger(__name__)

# Retry delays after a failed write: doubling from FIRST up to MAX seconds. MAX is how long
# the end of an outage may go unnoticed; each retry costs one connection attempt.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
# The longest the writer waits for one write. A server that accepts connections but answers
# nothing (paused, wedged) trips no TCP timeout — the kernel still acknowledges — so without
# this bound the writer would wait for it while the queue fills. On timeout the batch goes to
# the spool; should the stuck write commit later, the replay stores nothing twice (ids).
WRITE_TIMEOUT_S = 10.0


class StoreTimeout(Exception):
    """The database did not answer a write in WRITE_TIMEOUT_S."""


def _may_heal(exc: Exception) -> bool:
    """True when the database, not the data, made a write fail: retrying may succeed.

    Unreachable server, missing database or table, read-only or full disk, lock timeouts
    all may heal. Data the database refuses (DataError, IntegrityError) or that cannot
    even be encoded (SQLAlchemy wraps a bind error in StatementError; psycopg's JSON
    dumper raises the bare TypeError) would fail forever.
    """
    return isinstance(exc, DBAPIError) and not isinstance(exc, (DataError, IntegrityError))


class ResultWriter:
    """Batches ProbeResults into the database. Create, `submit` from the event loop,
    run `run()` as a task, and `await close()` on shutdown.

    `spool_dir` turns the spool on (see the module doc). Memory stays bounded with it too:
    the queue spills to disk at `queue_size`, and should a single write hang, the oldest
    results beyond twice that are dropped.

    Counters: `written` rows stored (a result already stored counts once), `dropped`
    results given up (queue overflow, unwritable data, spool full, database still down at
    the close deadline without a spool), `write_errors` failed write attempts, `spooled`
    results waiting on disk.
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        queue_size: int = 10000,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        spool_dir: str | Path | None = None,
        spool_max_results: int = 100000,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval > 0")
        # A segment is replayed in one write, so it is at most a batch; and small enough that
        # dropping the oldest one when the spool is full costs a tenth of it at most.
        self._spool = (
            Spool(spool_dir, max_results=spool_max_results, segment_results=max(1, min(batch_size, spool_max_results // 10)))
            if spool_dir is not None
            else None
        )
        if isinstance(url_or_engine, Engine):
            self._engine, self._owns_engine = url_or_engine, False
        else:
            self._engine, self._owns_engine = make_engine(url_or_engine), True
        self._queue: deque[ProbeResult] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        # Taken from the queue, not yet stored: held across retries so it is never lost.
        self._batch: list[ProbeResult] = []
        # Set when a full batch is queued or close is requested: ends the flush_interval wait.
        self._wakeup = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._close_deadline = float("inf")
        self._running = False
        self._stopped = asyncio.Event()
        self._overflowing = False
        self._spill_failing = False
        # What the last write said about the database, and when to try it again if it failed.
        self._store_ok = True
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST_S
        self._lost = 0
        self.written = 0
        self.write_errors = 0
        self.last_write_at: float | None = None  # time.time() of the last batch the database took
        if self._spool is not None and self._spool.pending:
            log.info("%d results spooled in %s by an earlier run: replaying them first", self._spool.pending, self._spool.directory)

    @property
    def queue_depth(self) -> int:
        """Results submitted and not yet stored, in memory (including the batch being written)."""
        return len(self._queue) + len(self._batch)

    @property
    def store_ok(self) -> bool:
        """Whether the last write (or replay) reached the database."""
        return self._store_ok

    @property
    def spooled(self) -> int:
        """Results waiting on disk for the database."""
        return self._spool.pending if self._spool is not None else 0

    @property
    def dropped(self) -> int:
        return self._lost + (self._spool.dropped if self._spool is not None else 0)

    def submit(self, result: ProbeResult) -> None:
        """Queue a result. Call from the event loop thread; never blocks, never raises."""
        self._queue.append(result)
        limit = self._queue_size if self._spool is None else 2 * self._queue_size
        if len(self._queue) > limit:
            self._queue.popleft()
            self._lost += 1
            if not self._overflowing:
                self._overflowing = True
                log.warning("result queue full (%d): dropping the oldest results until the database catches up", limit)
        if len(self._queue) >= min(self._batch_size, self._queue_size):
            self._wakeup.set()

    async def run(self) -> None:
        """Write until `close()` is requested and everything queued is stored (or spooled)."""
        self._running = True
        self._stopped.clear()
        try:
            while True:
                if self._spool is not None and self._spool.pending:
                    if not await self._spooled_round():
                        break
                    continue
                if self._close_requested.is_set() and self.queue_depth == 0:
                    break
                if self._spool is not None and len(self._queue) >= self._queue_size and await self._spill():
                    continue  # the database is slower than the probes: their results wait on disk
                if not self._batch:
                    await self._wait_for_batch()
                    self._take_batch()
                if self._batch:
                    await self._write_batch()
        finally:
            self._running = False
            self._stopped.set()

    async def close(self, *, timeout: float = 30.0) -> None:
        """Stop, after storing everything still queued.

        With a spool, what the database cannot take — it is down, or the spool is still
        being replayed at the deadline — stays on disk and is replayed at the next start.
        Without one, if the database stays unavailable for `timeout` seconds, what is left is
        logged and counted as dropped: shutdown must end. A write already in progress is
        waited for; its own duration is bounded by the engine's connect and lock timeouts.
        """
        loop = asyncio.get_running_loop()
        self._close_deadline = loop.time() + timeout
        self._close_requested.set()
        self._wakeup.set()
        try:
            if self._running:
                await self._stopped.wait()
            else:
                await self.run()
        finally:
            if self._spool is not None:
                if self.queue_depth:  # the disk refused them too
                    self._give_up("nor spooled")
                self._spool.close()
            if self._owns_engine:
                self._engine.dispose()

    # -- writing straight from the queue --------------------------------------------------------

    async def _wait_for_batch(self) -> None:
        """Return when a full batch is queued, close is requested, or flush_interval passed."""
        if len(self._queue) >= min(self._batch_size, self._queue_size) or self._close_requested.is_set():
            return
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
        except TimeoutError:
            pass

    def _take_batch(self) -> None:
        n = min(self._batch_size, len(self._queue))
        self._batch = [self._queue.popleft() for _ in range(n)]

    async def _write_batch(self) -> None:
        """Store self._batch; if the database fails, spool it, else retry with backoff."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                written, unwritable = await self._write(self._batch)
            except (DBAPIError, StoreTimeout) as exc:
                self._store_failed(exc, len(self._batch))
                if self._spool is not None and await self._spill():
                    return  # from now on through the spool, until the database is back
                left = self._close_deadline - loop.time()
                if left <= 0:
                    self._give_up(f"database still failing at shutdown ({describe_error(exc)})")
                    return
                await self._sleep_unless_closing(min(self._retry_at - loop.time(), left))
                continue
            self.written += written
            self._lost += unwritable
            self._batch = []
            self._store_succeeded()
            if self._overflowing and len(self._queue) < self._queue_size:
                self._overflowing = False
                log.warning("result queue has room again; %d results dropped so far", self.dropped)
            return

    async def _sleep_unless_closing(self, seconds: float) -> None:
        # A close request cuts a long backoff short: shutdown retries at once, then by deadline.
        if self._close_requested.is_set():
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._close_requested.wait(), seconds)
        except TimeoutError:
            pass

    def _give_up(self, why: str) -> None:
        lost = self.queue_depth
        log.error("%s; %d results not stored", why, lost)
        self._lost += lost
        self._batch = []
        self._queue.clear()

    # -- through the spool ------------------------------------------------------------------------

    async def _spooled_round(self) -> bool:
        """One step while results wait on disk: replay the oldest segment if the database may
        be back; else put what is queued on disk too and wait. False: stop (closing)."""
        assert self._spool is not None
        loop = asyncio.get_running_loop()
        if not self._store_ok or len(self._queue) >= self._queue_size:
            await self._spill()
        closing = self._close_requested.is_set()
        may_try = loop.time() >= self._retry_at and not (closing and loop.time() >= self._close_deadline)
        if may_try and await self._replay_oldest():
            return True
        if closing:
            # The database is down, or the deadline came: the rest waits on disk for the next start.
            await self._spill()
            log.warning("stopping with %d results spooled in %s; they are replayed at the next start", self._spool.pending, self._spool.directory)
            return False
        await self._sleep_unless_closing(max(0.0, min(self._retry_at - loop.time(), self._flush_interval)))
        return True

    async def _replay_oldest(self) -> bool:
        """Store the oldest spooled segment and remove it; False if the database failed."""
        assert self._spool is not None
        results = await asyncio.to_thread(self._spool.oldest)
        if results:
            try:
                written, unwritable = await self._write(results)
            except (DBAPIError, StoreTimeout) as exc:
                self._store_failed(exc, len(results))
                return False
            self.written += written
            self._lost += unwritable
        await asyncio.to_thread(self._spool.remove_oldest)
        self._store_succeeded()
        if not self._spool.pending:
            log.info("spool replayed: the database has every result again")
        return True

    async def _spill(self) -> bool:
        """Move the batch in hand and everything queued, in order, to the spool. False if the
        disk refused: they then stay in memory, in front of what arrived meanwhile."""
        assert self._spool is not None
        moving = self._batch + list(self._queue)
        if not moving:
            return True
        self._batch = []
        self._queue.clear()
        try:
            await asyncio.to_thread(self._spool.append, moving)
        except OSError as exc:
            self._queue.extendleft(reversed(moving))
            if not self._spill_failing:  # once per episode: this repeats every flush_interval
                self._spill_failing = True
                log.error("cannot spool %d results in %s (%s); keeping them in memory", len(moving), self._spool.directory, exc)
            return False
        if self._spill_failing:
            self._spill_failing = False
            log.warning("spooling to %s works again", self._spool.directory)
        return True

    # -- the database -----------------------------------------------------------------------------

    async def _write(self, batch: list[ProbeResult]) -> tuple[int, int]:
        try:
            return await run_in_store_thread(self._store, batch, timeout=WRITE_TIMEOUT_S)
        except TimeoutError:
            raise StoreTimeout(f"no answer from the database within {WRITE_TIMEOUT_S:g} s") from None

    def _store_failed(self, exc: Exception, n: int) -> None:
        loop = asyncio.get_running_loop()
        self.write_errors += 1
        self._retry_at = loop.time() + self._retry_delay
        log.warning(
            "storing %d results failed (%s); retrying in %.1f s; %d queued, %d spooled%s",
            n, describe_error(exc), self._retry_delay, self.queue_depth, self.spooled,
            f"; results wait in {self._spool.directory} until it answers" if self._spool is not None and self._store_ok else "",
        )
        self._store_ok = False
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def _store_succeeded(self) -> None:
        self.last_write_at = time.time()
        if not self._store_ok:
            log.warning("the database takes results again; %d spooled to replay", self.spooled)
        self._store_ok = True
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST_S

    def _store(self, batch: list[ProbeResult]) -> tuple[int, int]:
        """Runs on a worker thread. Returns (rows written, results that cannot be written).

        Errors that may heal propagate, so the whole batch is retried (already stored ids
        are skipped). A batch refused for its data is split in halves, each stored or split
        again, so that one bad result (e.g. facts that are not JSON) costs itself, not the
        batch — in about 2·log2(batch) writes rather than one write per result.
        """
        try:
            return self._store_together(batch), 0
        except Exception as exc:
            if _may_heal(exc):
                raise
            if len(batch) == 1:
                log.error("cannot store result %s of check %r: %r", batch[0].id, batch[0].check, exc)
                return 0, 1
        half = len(batch) // 2
        first, second = self._store(batch[:half]), self._store(batch[half:])
        return first[0] + second[0], first[1] + second[1]

    def _store_together(self, batch: list[ProbeResult]) -> int:
        with Session(self._engine) as session, session.begin():
            written = save_results(session, batch)
            # A goproxy probe that verified a larger checksum-database tree says so in its
            # facts; keeping it in the same transaction as the result means a replay from the
            # spool stores it too, and saving it twice is harmless (only a larger tree wins —
            # so each database's largest of the batch is all there is to save).
            for name, tree in _largest_trees(batch).items():
                save_sumdb_tree(session, name, tree["size"], tree["hash"])
            return written


def _largest_trees(batch: list[ProbeResult]) -> dict[str, dict]:
    """Per checksum database, the first tree of the largest size in the batch (what saving
    them one by one, in order, would leave)."""
    largest: dict[str, dict] = {}
    for result in batch:
        tree = result.facts.get("sumdb_tree")
        if isinstance(tree, dict) and (tree["name"] not in largest or tree["size"] > largest[tree["name"]]["size"]):
            largest[tree["name"]] = tree
    return largest
