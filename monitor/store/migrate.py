"""Bring a database's schema to the newest Alembic revision, from code (no alembic.ini, no CWD)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


class SchemaBehind(Exception):
    """The store's schema is older than this agent needs and it may not migrate it."""


# How long an agent waits for another one that is migrating the same database.
MIGRATION_LOCK_WAIT_S = 120.0


def upgrade(url: str, *, migrate: bool = True, lock_wait: float = MIGRATION_LOCK_WAIT_S) -> None:
    """Bring the database at `url` to this version's newest schema.

    - Already there: nothing to do (every start of every agent).
    - Newer than this version knows (another agent, upgraded first, migrated it): left as it
      is and logged; this agent writes with the columns it knows — migrations are additive
      (new tables, nullable columns) so that older agents keep working.
    - Older, and `migrate` is false (storage.migrate: an operator runs `monitor db upgrade`):
      SchemaBehind; the daemon spools and tries again.
    - Older: migrated. On PostgreSQL agents starting together take turns (a transaction-scoped
      advisory lock, waited for at most `lock_wait` seconds): the first migrates, the others
      then find the schema current. The server's statement timeout is lifted for the
      migration (a back-fill may take long) and its lock timeout raised.
    """
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(connection)
            script = ScriptDirectory.from_config(config)
            head = script.get_current_head()
            before = MigrationContext.configure(connection).get_current_revision()
            if before == head:
                return
            if before is not None and before not in {r.revision for r in script.walk_revisions()}:
                log.warning("store schema %s is newer than this version of monitor knows (%s): not migrating; "
                            "writing with the columns it knows (upgrade this agent)", before, head)
                return
            if not migrate:
                raise SchemaBehind(f"store schema {before or 'empty'} is older than this version needs ({head}) and "
                                   "storage.migrate is false: run `monitor db upgrade`")
            if connection.dialect.name == "postgresql":
                _take_migration_lock(connection, lock_wait)
                connection.execute(text("SET LOCAL statement_timeout = 0"))
                connection.execute(text("SET LOCAL lock_timeout = '60s'"))
                before = MigrationContext.configure(connection).get_current_revision()  # another agent may have done it
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
        if after != before:  # Alembic's own INFO lines are kept out of the default log: say it once
            log.info("store schema migrated from %s to %s", before or "empty", after)
    finally:
        engine.dispose()


def _take_migration_lock(connection: Connection, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}).scalar():
        if time.monotonic() > deadline:
            raise TimeoutError(f"another agent has been migrating this database for over {wait:g}s; giving up for now")
        time.sleep(0.5)
