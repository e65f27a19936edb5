"""The SQL database: SQLite (embedded default) or PostgreSQL, through SQLAlchemy 2 async."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///./sluice.db"


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, sqlite:///) and pick async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    return url


def database_url(configured: str | None = None) -> str:
    return normalize_url(configured or os.environ.get("SLUICE_DATABASE_URL") or DEFAULT_URL)


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = database_url(url)
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            # One writer at a time is SQLite's model; a longer busy timeout beats "database is locked".
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Bounded connects and statements: a server that stops answering, or a lock nobody
            # releases, must surface as an error, never as a request (or a shutdown) that hangs.
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True,
                          connect_args={"timeout": 10, "command_timeout": 60})
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """WAL lets readers (usage queries) run beside the ledger writer; synchronous=NORMAL fsyncs
    at checkpoints instead of at every commit, which in WAL mode still survives a process
    crash (only an OS crash can lose the last commits)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
