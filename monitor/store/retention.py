"""Raw-result retention: remove results older than `storage.retention_raw`, now and then, a
whole UTC day at a time (on PostgreSQL by dropping the day's partition). The same pass makes
the partitions of the coming days ahead of time. Rollups are kept: they are what a report
over months reads."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from monitor.model import utcnow
from monitor.store.engine import describe_error
from monitor.store.executor import run_in_store_thread
from monitor.store import partitions
from monitor.store.repository import prune_older_than

log = logging.getLogger(__name__)


def prune_once(engine: Engine, retention_s: float) -> int:
    now = utcnow()
    with Session(engine) as session, session.begin():
        made = partitions.ensure_ahead(session, now)
    if made:
        log.info("retention: made partitions of results for %s", ", ".join(f"{d:%Y-%m-%d}" for d in made))
    with Session(engine) as session, session.begin():
        return prune_older_than(session, now - timedelta(seconds=retention_s))


async def prune_forever(engine: Engine, retention_s: float) -> None:
    """Prune at start and then every tenth of the retention (at most hourly) until cancelled.

    A database error is logged and retried next time: pruning late only costs disk (and a
    partition not made ahead is made by the writer when it needs it)."""
    period = min(retention_s / 10, 3600.0)
    while True:
        try:
            removed = await run_in_store_thread(prune_once, engine, retention_s)
            if removed:
                log.info("retention: removed %d results older than %s (whole UTC days)", removed, timedelta(seconds=retention_s))
        except DBAPIError as e:
            log.warning("retention: pruning failed (%s); will retry in %.0f s", describe_error(e), period)
        await asyncio.sleep(period)
