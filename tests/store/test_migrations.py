"""The packaged Alembic migrations build exactly the schema of sluice/store/models.py, on both databases."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, pool
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.store import migrate
from sluice.store.db import Database, database_url
from sluice.store.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_db(request, tmp_path, pg_url):
    """An empty database; on PostgreSQL one of its own, so the comparison sees only the migrations' work."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/nested/sluice.db"  # the directory does not exist yet
        return
    import asyncpg

    name = f"sluice_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"{pg_url.rsplit('/', 1)[0]}/{name}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _diff_and_tables(url: str) -> tuple[list, set[str]]:
    engine = create_async_engine(database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("usage")})
        return diff, tables | {f"index:{name}" for name in indexes}
    finally:
        await engine.dispose()


async def test_upgrade_matches_models(empty_db):
    assert await migrate.current_revision(empty_db) is None
    await migrate.upgrade(empty_db)
    assert await migrate.current_revision(empty_db) == migrate.head_revision() == "0006"
    diff, names = await _diff_and_tables(empty_db)
    assert diff == []
    assert {"teams", "users", "api_keys", "audit_log", "usage", "usage_daily", "alembic_version"} <= names
    assert {"index:ix_usage_ts", "index:ix_usage_key_ts", "index:ix_usage_team_ts",
            "index:ix_usage_model_ts", "index:ix_usage_user_ts"} <= names


async def test_upgrade_is_idempotent_and_concurrent(empty_db):
    # Two instances starting together: the advisory lock (PostgreSQL) or the re-check (SQLite)
    # makes the loser a no-op instead of a "table already exists" crash.
    await asyncio.gather(migrate.upgrade(empty_db), migrate.upgrade(empty_db))
    await migrate.upgrade(empty_db)
    assert await migrate.current_revision(empty_db) == "0006"
    diff, _ = await _diff_and_tables(empty_db)
    assert diff == []


def test_migrations_are_found_without_alembic_ini():
    cfg = migrate.alembic_config("sqlite:///x.db")
    assert cfg.config_file_name is None
    assert migrate.MIGRATIONS.joinpath("env.py").is_file()
    assert migrate.head_revision() == "0006"


async def test_upgrade_from_the_first_revision_keeps_rows(empty_db):
    """A database created at 0001 with ledger rows upgrades to head and keeps them."""
    from sqlalchemy import text

    await migrate.upgrade(empty_db, revision="0001")
    db = Database(empty_db)
    try:
        async with db.transaction() as s:
            await s.execute(text(
                "INSERT INTO usage (request_id, ts, tags, dialect, endpoint, model, stream, input_tokens, "
                "output_tokens, cached_tokens, cost_usd, cost_unknown, latency_ms, status, attempts, fallback) "
                "VALUES ('old-1', '2026-11-01 00:00:00', '[]', 'openai', 'chat', 'm', false, 1, 2, 0, 0, false, "
                "1.0, 200, 1, false)"))
    finally:
        await db.close()
    await migrate.upgrade(empty_db)
    db = Database(empty_db)
    try:
        async with db.session() as s:
            row = (await s.execute(text("SELECT request_id, route FROM usage"))).one()
        assert tuple(row) == ("old-1", None)
    finally:
        await db.close()


async def _budget_index_and_constraints(url: str) -> tuple[set[str], set[str], set[str]]:
    engine = create_async_engine(database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            def read(c):
                inspector = inspect(c)
                indexes = {i["name"] for i in inspector.get_indexes("budgets")}
                uniques = {u["name"] for u in inspector.get_unique_constraints("budgets")}
                key_columns = {col["name"] for col in inspector.get_columns("api_keys")}
                return indexes, uniques, key_columns
            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def test_limits_and_budgets_migration_keeps_keys_and_downgrades(empty_db):
    """0002 → 0003 keeps existing keys (limits and priority start empty); the downgrade removes it all."""
    from sqlalchemy import text

    await migrate.upgrade(empty_db, revision="0002")
    db = Database(empty_db)
    try:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO teams (id, name, metadata, created_at) "
                                 "VALUES ('team_1', 't', '{}', '2026-11-01 00:00:00')"))
            await s.execute(text("INSERT INTO api_keys (id, key_hash, key_prefix, team_id, metadata, tags, created_at) "
                                 "VALUES ('key_1', 'h', 'sk-slc-x', 'team_1', '{}', '[]', '2026-11-01 00:00:00')"))
    finally:
        await db.close()
    await migrate.upgrade(empty_db)
    indexes, uniques, key_columns = await _budget_index_and_constraints(empty_db)
    assert "ix_budgets_team_id" in indexes and "uq_budget_subject_period" in uniques
    assert {"limits", "priority"} <= key_columns
    db = Database(empty_db)
    try:
        async with db.session() as s:
            row = (await s.execute(text("SELECT id, team_id, limits, priority FROM api_keys"))).one()
        assert tuple(row) == ("key_1", "team_1", None, None)
    finally:
        await db.close()

    engine = create_async_engine(database_url(empty_db), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: migrate.command.downgrade(migrate.alembic_config(empty_db, c), "0002"))
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("api_keys")})
            kept = (await conn.execute(text("SELECT id FROM api_keys"))).scalars().all()
    finally:
        await engine.dispose()
    assert "budgets" not in tables and not {"limits", "priority"} & columns and kept == ["key_1"]
    assert await migrate.current_revision(empty_db) == "0002"


async def test_keys_rotated_before_0006_get_their_lineage(empty_db):
    """0006 follows ``rotated_from`` back to the first key of each chain (a -> b -> c, and d alone)."""
    from sqlalchemy import text

    await migrate.upgrade(empty_db, "0005")
    engine = create_async_engine(database_url(empty_db), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            for key_id, parent in (("a", None), ("b", "a"), ("c", "b"), ("d", None), ("e", "gone")):
                await conn.execute(text(
                    "INSERT INTO api_keys (id, key_hash, key_prefix, metadata, tags, rotated_from, created_at) "
                    "VALUES (:id, :hash, 'sk-', '{}', '[]', :parent, CURRENT_TIMESTAMP)"),
                    {"id": key_id, "hash": f"hash-{key_id}", "parent": parent})
        await migrate.upgrade(empty_db)
        async with engine.connect() as conn:
            rows = dict((await conn.execute(text("SELECT id, lineage FROM api_keys"))).all())
    finally:
        await engine.dispose()
    assert rows == {"a": None, "b": "a", "c": "a", "d": None, "e": "gone"}
