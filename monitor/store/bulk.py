"""The batch insert of results, one statement per batch (or per few thousand rows), per dialect.

repository.save_results decides what to insert; this module only gets rows into `results` fast
and says exactly which went in. Rows are handed to the driver as they are — JSON serialised
once, here; times through the model's own UTCDateTime, so naive instants are still refused —
not through the ORM's per-row parameter processing, which cost more than the database's work:

- SQLite: a multi-row `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING id`, as many
  rows per statement as the library's bound-parameter limit allows;
- PostgreSQL: `INSERT … SELECT … FROM json_populate_recordset(NULL::results, $1) ON CONFLICT
  DO NOTHING RETURNING id`, the batch as one JSON document: one short statement, planned once,
  parsed by the server in C. (psycopg adapts a list of strings, e.g. a text[] of facts, by a
  regular-expression escape per element in Python: slower than the insert itself.)

Both go through SQLAlchemy's connection (exec_driver_sql), in the caller's transaction, so that
database errors arrive wrapped as DBAPIError like every other statement's (the writer's retry
and spool decisions depend on it). RETURNING names only the rows this statement inserted: a row
already there (a replay, a racing writer) is skipped by ON CONFLICT and not returned — the ids
the rollups count.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from monitor.model import ProbeResult
from monitor.store.models import ResultRow

COLUMNS = ("id", "agent", "check", "kind", "vantage", "target", "started_at", "ok", "duration_s", "phases",
           "failure_class", "failure_operation", "failure_detail", "facts", "verdict")
JSON_COLUMNS = frozenset({"phases", "facts", "verdict"})
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
_PG_INSERT = (
    f"INSERT INTO results ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM json_populate_recordset(NULL::results, %s::json) "
    "ON CONFLICT (id, started_at) DO NOTHING RETURNING id"
)
_SQLITE_ROW = "(" + ", ".join("?" * len(COLUMNS)) + ")"
# The ids travel as one parameter (an array; a JSON array on SQLite), whatever the batch size.
_STORED = {
    "postgresql": "SELECT id FROM results WHERE id = ANY(%s::text[]) AND started_at >= %s AND started_at <= %s",
    "sqlite": "SELECT id FROM results WHERE id IN (SELECT value FROM json_each(?)) AND started_at >= ? AND started_at <= ?",
}


def values(r: ProbeResult) -> dict[str, Any]:
    """A result as the values of the `results` columns (JSON columns as Python objects)."""
    return {
        "id": r.id,
        "agent": r.agent,
        "check": r.check,
        "kind": r.kind,
        "vantage": r.vantage,
        "target": r.target,
        "started_at": r.started_at,
        "ok": r.ok,
        "duration_s": r.duration_s,
        "phases": r.phases,
        "failure_class": r.failure.cls.value if r.failure else None,
        "failure_operation": r.failure.operation.value if r.failure else None,
        "failure_detail": r.failure.detail if r.failure else None,
        "facts": r.facts,
        "verdict": r.verdict.to_json() if r.verdict else None,
    }


def stored_ids(session: Session, ids: Sequence[str], since: datetime, until: datetime) -> set[str]:
    """Which of `ids` are stored with a started_at in [since, until]."""
    conn = session.connection()
    sql = _STORED[conn.dialect.name]
    with _binding(sql):
        when = time_processor(conn.dialect)
        params = (list(ids) if conn.dialect.name == "postgresql" else json.dumps(list(ids)), when(since), when(until))
    return set(conn.exec_driver_sql(sql, params).scalars())


def insert_new(session: Session, results: Sequence[ProbeResult]) -> set[str]:
    """Insert `results` (distinct ids) into `results`, skipping rows already stored; returns the
    ids of the rows inserted."""
    conn = session.connection()
    when = time_processor(conn.dialect)
    if conn.dialect.name == "postgresql":
        with _binding(_PG_INSERT):
            document = json.dumps([_pg_row(r, when) for r in results])
        return set(conn.exec_driver_sql(_PG_INSERT, (document,)).scalars())
    with _binding("INSERT INTO results"):
        rows = [_sqlite_row(r, when) for r in results]
    per_statement = max(1, conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS))
    inserted: set[str] = set()
    for i in range(0, len(rows), per_statement):
        chunk = rows[i : i + per_statement]
        sql = f"INSERT INTO results ({_COLUMN_LIST}) VALUES {', '.join([_SQLITE_ROW] * len(chunk))} ON CONFLICT DO NOTHING RETURNING id"
        inserted.update(conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row)).scalars())
    return inserted


@contextmanager
def _binding(sql: str) -> Iterator[None]:
    """Values that cannot be bound (a naive time, facts that are not JSON) raise StatementError,
    as they do through the ORM: an error of the data, never retried as the database's."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise StatementError(str(exc), sql, None, exc) from exc


def _pg_row(r: ProbeResult, when: Any) -> dict[str, Any]:
    row = values(r)
    row["started_at"] = when(r.started_at).isoformat()
    if not math.isfinite(r.duration_s):  # JSON has no NaN or infinity; the float8 column reads them as text
        row["duration_s"] = repr(r.duration_s)
    return row


def _sqlite_row(r: ProbeResult, when: Any) -> tuple[Any, ...]:
    row = values(r)
    row["started_at"] = when(r.started_at)
    for c in JSON_COLUMNS:
        if row[c] is not None:  # no verdict: SQL NULL, not the JSON null
            row[c] = json.dumps(row[c])
    return tuple(row[c] for c in COLUMNS)


def time_processor(dialect: Dialect) -> Callable[[datetime], Any]:
    """An instant as `dialect` stores it (models.UTCDateTime: UTC, naive refused; on SQLite the
    text SQLAlchemy writes, so that rows written here and through the ORM compare equal)."""
    column_type = ResultRow.__table__.c.started_at.type
    return column_type.dialect_impl(dialect).bind_processor(dialect)
