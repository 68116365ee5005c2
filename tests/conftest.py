"""Shared fixtures: `db_url` over SQLite and the real PostgreSQL, and `require`.

`require(condition, reason)` is how a test says "this needs X": locally it skips with the
reason, under CI=true it fails, so CI cannot go green by skipping.
    from tests.conftest import require
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

# The loopback-server fixtures (pki, vantage, serve) for every test module.
pytest_plugins = ["tests.servers.fixtures"]

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# The database we connect to in order to create and drop the per-test ones.
POSTGRES_ADMIN_URL = f"{POSTGRES_SERVER}/test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: object, reason: str) -> None:
    """Skip the calling test unless `condition` holds; under CI=true, fail instead."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_admin(statement: str) -> None:
    """Run one statement on the admin database in autocommit (CREATE/DROP DATABASE need it)."""
    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def create_postgres_database(name: str) -> str:
    """Create database `name` and return its URL. Call only after require(postgres_available())."""
    postgres_admin(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_SERVER}/{name}"


def drop_postgres_database(name: str) -> None:
    # FORCE ends sessions a test left open (pooled connections), so the drop cannot hang.
    postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_postgres_status: list[str | None] = []


def postgres_unavailable() -> str | None:
    """None if the test PostgreSQL answers, else why not (probed once per run)."""
    if not _postgres_status:
        try:
            postgres_admin("SELECT 1")
            _postgres_status.append(None)
        except OperationalError as exc:
            _postgres_status.append(f"PostgreSQL at {POSTGRES_ADMIN_URL} unreachable: {exc.orig}")
    return _postgres_status[0]


def fresh_postgres_database_name() -> str:
    return f"monitor_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of a fresh, empty database (no schema): a SQLite file, or a new Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty Postgres database for the duration (required: skip, or fail under CI)."""
    reason = postgres_unavailable()
    require(reason is None, reason or "")
    name = fresh_postgres_database_name()
    url = create_postgres_database(name)
    try:
        yield url
    finally:
        drop_postgres_database(name)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL."""
    with fresh_postgres_database() as url:
        yield url
