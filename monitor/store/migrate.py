"""Bring a database's schema to the newest Alembic revision, from code (no alembic.ini, no CWD)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from monitor.store.engine import make_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR_ENV = "MONITOR_MIGRATIONS_DIR"
# Any constant shared by every agent; spells "monitor" in ASCII so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72


def migrations_dir() -> Path:
    """The migrations shipped inside the package (monitor/store/migrations), wherever it is
    installed; $MONITOR_MIGRATIONS_DIR overrides them (e.g. to try a revision by hand)."""
    override = os.environ.get(MIGRATIONS_DIR_ENV)
    path = Path(override) if override else Path(__file__).resolve().parent / "migrations"
    if not (path / "env.py").is_file():
        raise FileNotFoundError(f"no Alembic migrations at {path}" + (f" (from ${MIGRATIONS_DIR_ENV})" if override else ""))
    return path


def alembic_config(connection: Connection) -> Config:
    """An Alembic Config whose env.py runs on `connection` (see monitor/store/migrations/env.py)."""
    config = Config()
    # ConfigParser interpolates '%': a path holding one must be escaped.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str) -> None:
    """Apply every migration not yet applied to the database at `url`.

    On PostgreSQL, agents starting together against one central database take turns (a
    transaction-scoped advisory lock): the first migrates, the others then find the schema
    current. Without it two would both create the tables and one would fail to start.
    """
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(alembic_config(connection), "head")
            after = MigrationContext.configure(connection).get_current_revision()
        if after != before:  # Alembic's own INFO lines are kept out of the default log: say it once
            log.info("store schema migrated from %s to %s", before or "empty", after)
    finally:
        engine.dispose()
