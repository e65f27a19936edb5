"""Alembic environment for Sluice: async engines, no alembic.ini needed.

Two ways in:
- ``sluice.store.migrate.upgrade()`` hands over an open connection (already inside a transaction
  that holds the PostgreSQL advisory lock) through ``config.attributes["connection"]``;
- the ``alembic`` command line (for developers writing a new revision) gets the URL from
  ``config.attributes["url"]``, the ``sqlalchemy.url`` option or ``$SLUICE_DATABASE_URL`` and
  opens its own async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.store.db import database_url
from sluice.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return database_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rewrites the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
