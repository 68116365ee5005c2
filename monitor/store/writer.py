"""The only path from probes to the database: a bounded queue drained in batches.

Probes call `submit`, which never waits on the database. `run` writes batches on a worker
thread (the engine is sync SQLAlchemy). While the database is unavailable the batch in
hand is kept and retried with backoff; new results keep queueing up to `queue_size`,
after which the oldest are dropped — a bounded loss instead of unbounded memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from monitor.model import ProbeResult
from monitor.store.engine import make_engine
from monitor.store.repository import save_results

log = logging.getLogger(__name__)

# Retry delays after a failed write: doubling from FIRST up to MAX seconds.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 30.0


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

    Counters: `written` rows stored (a result already stored counts once), `dropped`
    results given up (queue overflow, unwritable data, database still down at the
    close deadline), `write_errors` failed write attempts.
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        queue_size: int = 10000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval > 0")
        if isinstance(url_or_engine, Engine):
            self._engine, self._owns_engine = url_or_engine, False
        else:
            self._engine, self._owns_engine = make_engine(url_or_engine), True
        self._queue: deque[ProbeResult] = deque(maxlen=queue_size)
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
        self.written = 0
        self.dropped = 0
        self.write_errors = 0

    @property
    def queue_depth(self) -> int:
        """Results submitted and not yet stored (including the batch being written)."""
        return len(self._queue) + len(self._batch)

    def submit(self, result: ProbeResult) -> None:
        """Queue a result. Call from the event loop thread; never blocks, never raises."""
        if len(self._queue) == self._queue.maxlen:
            # The deque drops the oldest itself on append; count and report it.
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.warning(
                    "result queue full (%d): dropping the oldest results until the database catches up",
                    self._queue.maxlen,
                )
        self._queue.append(result)
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    async def run(self) -> None:
        """Write batches until `close()` is requested and everything queued is stored."""
        self._running = True
        self._stopped.clear()
        try:
            while not (self._close_requested.is_set() and self.queue_depth == 0):
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

        If the database stays unavailable for `timeout` seconds, what is left is logged and
        counted as dropped: shutdown must end. A write already in progress is waited for;
        its own duration is bounded by the engine's connect and lock timeouts.
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
            if self._owns_engine:
                self._engine.dispose()

    async def _wait_for_batch(self) -> None:
        """Return when a full batch is queued, close is requested, or flush_interval passed."""
        if len(self._queue) >= self._batch_size or self._close_requested.is_set():
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
        """Store self._batch, retrying with backoff while the database fails."""
        delay = RETRY_FIRST_S
        loop = asyncio.get_running_loop()
        while True:
            try:
                written, unwritable = await asyncio.to_thread(self._store, self._batch)
            except DBAPIError as exc:
                self.write_errors += 1
                left = self._close_deadline - loop.time()
                if left <= 0:
                    self._give_up(exc)
                    return
                wait = min(delay, left)
                log.warning(
                    "storing %d results failed (%s); retrying in %.1f s, %d queued",
                    len(self._batch), exc.orig, wait, self.queue_depth,
                )
                await self._sleep_unless_closing(wait)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.written += written
            self.dropped += unwritable
            self._batch = []
            if self._overflowing and len(self._queue) < (self._queue.maxlen or 0):
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

    def _give_up(self, exc: DBAPIError) -> None:
        lost = self.queue_depth
        log.error("database still failing at shutdown (%s); %d results not stored", exc.orig, lost)
        self.dropped += lost
        self._batch = []
        self._queue.clear()

    def _store(self, batch: list[ProbeResult]) -> tuple[int, int]:
        """Runs on a worker thread. Returns (rows written, results that cannot be written).

        Errors that may heal propagate, so the whole batch is retried (already stored ids
        are skipped). A batch refused for its data is retried one result at a time, so
        that one bad result (e.g. facts that are not JSON) costs itself, not the batch.
        """
        try:
            return self._store_together(batch), 0
        except Exception as exc:
            if _may_heal(exc):
                raise
        written = unwritable = 0
        for result in batch:
            try:
                written += self._store_together([result])
            except Exception as exc:
                if _may_heal(exc):
                    raise
                unwritable += 1
                log.error("cannot store result %s of check %r: %r", result.id, result.check, exc)
        return written, unwritable

    def _store_together(self, batch: list[ProbeResult]) -> int:
        with Session(self._engine) as session, session.begin():
            return save_results(session, batch)
