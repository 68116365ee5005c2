"""Daily partitions of `results` on PostgreSQL (range on started_at, one per UTC day).

Retention then drops a whole expired day (DROP TABLE of its partition: no row-by-row DELETE,
no bloat, no vacuum debt) instead of deleting rows. A partition is named results_pYYYYMMDD
and holds [that day 00:00 UTC, the next day 00:00 UTC).

Partitions are made ahead of time (the migration and the daemon's retention loop: today and
the next AHEAD_DAYS days), and, so that a result of any day can always be stored — a spool
replayed after a long outage, an agent whose clock is off — `ensure` is also called for the
days of each batch, in the batch's own transaction, before the insert. There is no DEFAULT
partition: a row in it would stop the creation of its day's partition later.

Locks: a partition is created as a plain table and then ATTACHed, which takes SHARE UPDATE
EXCLUSIVE on `results` (inserts and reads go on); CREATE TABLE … PARTITION OF would take
ACCESS EXCLUSIVE. Agents creating partitions at once take turns (a transaction-level advisory
lock). DROP of an expired partition briefly needs ACCESS EXCLUSIVE on `results`; it waits at
most DROP_LOCK_TIMEOUT for it (then retention tries again next time) so that a waiting DROP
never queues every writer behind it for long.

SQLite has no partitions: these functions do nothing there (is_partitioned is False).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

TABLE = "results"
AHEAD_DAYS = 7
DROP_LOCK_TIMEOUT = "2s"
# Spells "partitn" in ASCII: distinct from the migration lock (monitor.store.migrate).
PARTITION_LOCK_KEY = 0x706172746974_6E
NAME = re.compile(rf"^{TABLE}_p(\d{{8}})$")


def partition_name(day: date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def day_of(instant: datetime) -> date:
    return instant.astimezone(timezone.utc).date()


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def is_partitioned(bind: Session | Connection) -> bool:
    """True on PostgreSQL, where `results` is partitioned (migration 0005)."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return dialect.name == "postgresql"


def existing(bind: Session | Connection) -> dict[date, str]:
    """The partitions of `results` by day."""
    rows = bind.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table AND p.relnamespace = to_regnamespace(current_schema())"
        ),
        {"table": TABLE},
    ).scalars()
    found = {}
    for name in rows:
        m = NAME.match(name)
        if m:
            found[datetime.strptime(m.group(1), "%Y%m%d").date()] = name
    return found


def ensure(bind: Session | Connection, days: Iterable[date]) -> list[date]:
    """Make sure each day has its partition; returns the days whose partition was created.
    Runs in the caller's transaction (a partition made for a batch commits with it)."""
    if not is_partitioned(bind):
        return []
    wanted = set(days)
    if not wanted:
        return []
    missing = wanted - existing(bind).keys()
    if not missing:
        return []
    bind.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
    missing -= existing(bind).keys()  # another agent may have made them while we waited
    for day in sorted(missing):
        name = partition_name(day)
        bind.execute(text(f'CREATE TABLE "{name}" (LIKE "{TABLE}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'))
        # DDL takes no bind parameters; the bounds are made here from a date, never from input.
        lo, hi = _start(day).isoformat(), _start(day + timedelta(days=1)).isoformat()
        bind.execute(text(f"ALTER TABLE \"{TABLE}\" ATTACH PARTITION \"{name}\" FOR VALUES FROM ('{lo}') TO ('{hi}')"))
    return sorted(missing)


def ensure_ahead(bind: Session | Connection, now: datetime) -> list[date]:
    """Partitions for today and the next AHEAD_DAYS days, so writers rarely create one."""
    today = day_of(now)
    return ensure(bind, (today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)))


def drop_before(bind: Session | Connection, cutoff: datetime) -> int:
    """Drop every partition whose whole day ended at or before `cutoff`; returns how many
    results they held."""
    if not is_partitioned(bind):
        return 0
    expired = [name for day, name in sorted(existing(bind).items()) if _start(day + timedelta(days=1)) <= cutoff]
    if not expired:
        return 0
    bind.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
    removed = 0
    for name in expired:
        removed += bind.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
        bind.execute(text(f'DROP TABLE "{name}"'))
    return removed
