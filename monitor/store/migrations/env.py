"""Alembic environment for monitor.

Run from code, `monitor.store.migrate` hands over an open connection in
`config.attributes["connection"]`. Run from the alembic CLI (to write a new revision),
the URL comes from `-x url=…` or `sqlalchemy.url` in alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from monitor.store.engine import make_engine
from monitor.store.models import Base
from monitor.store.partitions import NAME as PARTITION_NAME

config = context.config


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate spells monitor's own column types as the plain SQLAlchemy type under them:
    a revision is history and must not import the models it predates."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """The daily partitions of results (PostgreSQL) are made at run time, not by the models:
    comparing models with the database leaves them out."""
    return not (type_ == "table" and name is not None and PARTITION_NAME.match(name))


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: give the database as -x url=… or sqlalchemy.url in alembic.ini")
    return url


if context.is_offline_mode():
    # `alembic upgrade head --sql`: DDL for a DBA to review and apply to the central Postgres.
    context.configure(url=cli_url(), target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    run_on(shared)
else:
    engine = make_engine(cli_url())
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()
