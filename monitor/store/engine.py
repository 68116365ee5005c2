"""One place that knows how monitor opens a database, for the daemon, migrations and tests."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

# Seconds a SQLite writer waits for another connection's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
# Every database call must fail in bounded time — the server unreachable, stopped, paused, or
# a half-open connection through a NAT that forgot it — so the writer spools and the judge
# gives up instead of holding a thread for TCP's ~15-minute retransmission timeout:
POSTGRES_CONNECT_TIMEOUT_S = 10  # to connect at all
POSTGRES_STATEMENT_TIMEOUT_MS = 30_000  # one statement (the server cancels it)
POSTGRES_LOCK_TIMEOUT_MS = 10_000  # waiting for a row or table lock
# Sent data unacknowledged this long closes the connection (Linux TCP_USER_TIMEOUT), and an
# idle connection is probed by keepalives (every 5 s after 10 s idle, 3 misses): a peer that
# vanished is noticed in ~25 s even when nothing is being sent.
POSTGRES_TCP_USER_TIMEOUT_MS = 20_000
POSTGRES_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# Waiting for a pooled connection while every one is busy.
POOL_TIMEOUT_S = 10


def make_engine(url: str) -> Engine:
    """A sync Engine for `url` (sqlite:///… or postgresql+psycopg://…).

    pool_pre_ping replaces connections that died while idle (Postgres restarted, a
    database recreated) instead of failing the next batch on them.
    """
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if backend == "postgresql":
        options["pool_timeout"] = POOL_TIMEOUT_S
        connect_args.update(
            connect_timeout=POSTGRES_CONNECT_TIMEOUT_S,
            tcp_user_timeout=POSTGRES_TCP_USER_TIMEOUT_MS,
            options=f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS} -c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS}",
            **POSTGRES_KEEPALIVES,
        )
    elif backend == "sqlite" and "cached_statements" not in make_url(url).query:
        # sqlite3 keeps its last 128 prepared statements per connection, and the writer's batch
        # statements change shape with the batch's size (one multi-row INSERT, one id lookup):
        # each connection cached up to 128 large ones, tens of MiB of C memory that grew for
        # the first hours of a run (bench/RESULTS.md, "Soak (one hour)"). Preparing the small
        # fixed queries again costs microseconds.
        connect_args["cached_statements"] = 0
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **options)
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
