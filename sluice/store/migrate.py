"""Schema migrations: Alembic, shipped inside the package and configured in code.

``upgrade()`` is safe to run from many instances at once. The whole upgrade runs in one
transaction that is serialised before it reads the current revision: on PostgreSQL by a
transaction-level advisory lock, on SQLite by ``BEGIN IMMEDIATE`` (the file's write lock). The
second instance waits, then finds the schema already at head and does nothing. Both databases
have transactional DDL this way, so a failed migration leaves no half-built schema behind.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.store.db import database_url

log = logging.getLogger("sluice.store.migrate")


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A fixed 64-bit key every Sluice instance agrees on (pg_advisory_xact_lock takes a bigint).
LOCK_KEY = zlib.crc32(b"sluice.store.migrate") << 16


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations; no alembic.ini involved."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # The URL travels in attributes, not options: ConfigParser would choke on '%' in passwords.
    cfg.attributes["url"] = database_url(url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _engine(url: str | None) -> AsyncEngine:
    resolved = database_url(url)
    if not resolved.startswith("sqlite"):
        # A bounded connect: a server that accepts but does not answer must not stall start-up.
        return create_async_engine(resolved, poolclass=pool.NullPool,
                                   connect_args={"timeout": 10, "command_timeout": 120})
    _ensure_sqlite_dir(resolved)
    engine = create_async_engine(resolved, poolclass=pool.NullPool, connect_args={"timeout": 60})
    _sqlite_immediate_transactions(engine)
    return engine


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, start transactions, and start them IMMEDIATE.

    The sqlite3 module would otherwise run DDL outside any transaction and take the write lock
    only at the first INSERT, which lets two upgraders both see an empty database.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _upgrade_sync(connection: Connection, url: str, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Another instance migrating holds the lock for seconds; a minute means a stuck holder.
        connection.execute(text("SET LOCAL lock_timeout = '60s'"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    command.upgrade(alembic_config(url, connection), revision)


def _current_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(url: str | None = None, revision: str = "head", attempts: int = 3) -> None:
    """Bring the database at ``url`` (default: configured/env/SQLite file) up to ``revision``.

    Connection failures are retried a few times with a short pause: instances often start
    together with their database, which may still be coming up.
    """
    for attempt in range(1, attempts + 1):
        engine = _engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade_sync, engine.url.render_as_string(hide_password=False), revision)
            return
        except (OSError, TimeoutError) as exc:
            if attempt == attempts:
                raise
            log.warning("database not reachable for migrations (%s); retrying", type(exc).__name__)
            await asyncio.sleep(attempt)
        finally:
            await engine.dispose()


async def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None for an empty database."""
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current_sync)
    finally:
        await engine.dispose()


def _main(argv: list[str]) -> None:
    """Developer entry point: ``python -m sluice.store.migrate upgrade|current|revision -m MSG``."""
    if not argv or argv[0] not in ("upgrade", "current", "revision"):
        raise SystemExit("usage: python -m sluice.store.migrate upgrade|current|revision -m MESSAGE")
    if argv[0] == "upgrade":
        asyncio.run(upgrade())
    elif argv[0] == "current":
        print(asyncio.run(current_revision()))
    else:
        message = argv[argv.index("-m") + 1] if "-m" in argv else "change"
        command.revision(alembic_config(), message=message, autogenerate=True)


if __name__ == "__main__":
    _main(sys.argv[1:])


__all__ = ["LOCK_KEY", "MIGRATIONS", "alembic_config", "current_revision", "head_revision", "upgrade"]
