"""Shared fixtures for the real services: a PostgreSQL database and a Redis key prefix per test run.

Both are created for this run and removed at its end, so runs never see each other's data.
"""

from __future__ import annotations

import os
import secrets

import pytest
import pytest_asyncio

PG_ADMIN_DSN = os.environ.get("SLUICE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SLUICE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest_asyncio.fixture(scope="session")
async def pg_url():
    """A fresh PostgreSQL database for this run: ``postgresql://…/sluice_test_<random>``."""
    import asyncpg

    name = f"sluice_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="session")
async def redis_prefix():
    """A Redis key prefix unique to this run; every key under it is deleted at the end."""
    import redis.asyncio as redis

    prefix = f"sluice-test-{secrets.token_hex(4)}"
    yield prefix
    client = redis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL
