"""The largest verified tree of each Go checksum database (see models.SumdbTreeRow).

The daemon reads it before goproxy probes run and saves what they newly verified; the probe
itself never touches the database. Both functions take a Session: callers own the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.model import utcnow
from monitor.store.models import SumdbTreeRow

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class StoredTree(NamedTuple):
    size: int
    hash: str  # base64 of the root hash


def get_sumdb_tree(session: Session, name: str) -> StoredTree | None:
    row = session.get(SumdbTreeRow, name)
    return StoredTree(row.size, row.hash) if row is not None else None


def save_sumdb_tree(session: Session, name: str, size: int, hash: str, *, at: datetime | None = None) -> bool:
    """Store the tree if it is larger than the one stored; True if it was stored.

    One atomic INSERT … ON CONFLICT DO UPDATE … WHERE stored.size < new.size, so agents
    saving at once through a shared database can only move it forward. A tree of the same
    size is never replaced: if its hash differs, that is a fork for the probes to find, not
    something to overwrite.
    """
    table = SumdbTreeRow.__table__
    insert = _INSERT[session.get_bind().dialect.name]
    values = {"name": name, "size": size, "hash": hash, "verified_at": at or utcnow()}
    stmt = insert(table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"size": stmt.excluded.size, "hash": stmt.excluded.hash, "verified_at": stmt.excluded.verified_at},
        where=table.c.size < stmt.excluded.size,
    ).returning(table.c.name)
    return session.execute(stmt).first() is not None


def all_sumdb_trees(session: Session) -> dict[str, StoredTree]:
    """Every stored tree by database name: what the daemon seeds the probes with."""
    return {row.name: StoredTree(row.size, row.hash) for row in session.scalars(select(SumdbTreeRow))}
