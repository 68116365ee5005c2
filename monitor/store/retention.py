"""Raw-result retention: delete results older than `storage.retention_raw`, now and then."""

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
from monitor.store.repository import prune_older_than

log = logging.getLogger(__name__)


def prune_once(engine: Engine, retention_s: float) -> int:
    with Session(engine) as session, session.begin():
        return prune_older_than(session, utcnow() - timedelta(seconds=retention_s))


async def prune_forever(engine: Engine, retention_s: float) -> None:
    """Prune at start and then every tenth of the retention (at most hourly) until cancelled.

    A database error is logged and retried next time: pruning late only costs disk."""
    period = min(retention_s / 10, 3600.0)
    while True:
        try:
            removed = await run_in_store_thread(prune_once, engine, retention_s)
            if removed:
                log.info("retention: removed %d results older than %s", removed, timedelta(seconds=retention_s))
        except DBAPIError as e:
            log.warning("retention: pruning failed (%s); will retry in %.0f s", describe_error(e), period)
        await asyncio.sleep(period)
