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
        # Also "{<prefix>…}" keys: the limiter and the semantic cache put their prefix in a Redis
        # Cluster hash tag.
        for pattern in (f"{prefix}*", f"{{{prefix}*"):
            async for key in client.scan_iter(match=pattern, count=500):
                await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


class SDKClients:
    """Official SDK clients that are closed when the test ends.

    An SDK client left for the garbage collector closes its connection pool from a finalizer,
    after its sockets' file descriptors may already have been reused — by a gateway running in
    this same event loop — and so unregisters the gateway's socket: requests on it hang. Tests
    therefore close every client they open.
    """

    def __init__(self) -> None:
        self._open: list = []

    def openai(self, base_url: str, api_key: str, **kw):
        import openai

        return self._track(openai.AsyncOpenAI(base_url=base_url, api_key=api_key, **{"max_retries": 0, **kw}))

    def anthropic(self, base_url: str, api_key: str, **kw):
        import anthropic

        return self._track(anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key,
                                                    **{"max_retries": 0, **kw}))

    def _track(self, client):
        self._open.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._open:
            await client.close()
        self._open.clear()


@pytest_asyncio.fixture
async def sdk():
    clients = SDKClients()
    yield clients
    await clients.aclose()
