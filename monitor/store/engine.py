"""One place that knows how monitor opens a database, for the daemon, migrations and tests."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

# Seconds a SQLite writer waits for another connection's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
# An unreachable central Postgres must fail a write in bounded time, so the writer can retry.
POSTGRES_CONNECT_TIMEOUT_S = 10


def make_engine(url: str) -> Engine:
    """A sync Engine for `url` (sqlite:///… or postgresql+psycopg://…).

    pool_pre_ping replaces connections that died while idle (Postgres restarted, a
    database recreated) instead of failing the next batch on them.
    """
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def describe_error(exc: BaseException) -> str:
    """A database error as one log-friendly line: the driver's own message (psycopg's spans
    several lines), without SQLAlchemy's statement echo and "Background on this error" link."""
    orig = getattr(exc, "orig", None)
    text = _BACKGROUND.sub("", str(orig if orig is not None else exc))
    return " ".join(text.split()) or type(exc).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers (exporter, reports) do not block the writer, nor it them.
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a crash of the process in WAL mode; only a power loss
        # can lose the last commits, and it saves an fsync per batch.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
