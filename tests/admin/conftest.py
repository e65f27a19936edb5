"""Fixtures for the admin tests: real databases (a temp SQLite file; a fresh PostgreSQL database)
and a populated "world" of two teams, their users and keys, created through the services."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio

from sluice.admin import KeySpec, TeamSpec, UserSpec, create_key, create_team, create_user
from sluice.observability.ledger import UsageEvent
from sluice.policies.auth import MASTER, Authenticator, Principal
from sluice.store.db import Database
from sluice.store.events import LocalEvents
from sluice.store.models import Base
from sluice.store.usage import write_usage


async def fresh_database(url: str) -> Database:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return db


@pytest_asyncio.fixture
async def sqlite_db(tmp_path):
    db = await fresh_database(f"sqlite:///{tmp_path}/admin.db")
    yield db
    await db.close()


@pytest_asyncio.fixture(scope="session")
async def pg_admin_url(pg_url):
    """A database of its own inside the run's PostgreSQL, so create_all never meets migrated tables."""
    import asyncpg

    name = f"sluice_admin_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield f"{pg_url.rsplit('/', 1)[0]}/{name}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def pg_db(pg_admin_url):
    db = await fresh_database(pg_admin_url)
    yield db
    await db.close()


@dataclass
class World:
    """Team A and team B with one user per role, each holding a key; plus an admin user."""

    db: Database
    events: LocalEvents
    auth: Authenticator
    team_a: str = ""
    team_b: str = ""
    users: dict[str, str] = field(default_factory=dict)  # name → user id
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (key id, secret)
    published: list[tuple[str, str]] = field(default_factory=list)

    async def principal(self, name: str) -> Principal:
        return MASTER if name == "master" else await self.auth.authenticate(self.keys[name][1])

    def secret(self, name: str) -> str:
        return self.keys[name][1]


USERS = {  # name → (role, team letter or None)
    "root": ("admin", None),
    "a_admin": ("team_admin", "a"),
    "a_member": ("member", "a"),
    "a_member2": ("member", "a"),
    "a_viewer": ("viewer", "a"),
    "b_admin": ("team_admin", "b"),
    "b_member": ("member", "b"),
    "b_viewer": ("viewer", "b"),
}
MASTER_KEY = "test-master-" + "x" * 40


async def build_world(db: Database) -> World:
    events = LocalEvents()
    world = World(db, events, Authenticator(MASTER_KEY, db=db, events=events, cache_ttl=30.0))
    events.subscribe(lambda topic, value: world.published.append((topic, value)))
    tag = secrets.token_hex(3)
    world.team_a = (await create_team(db, MASTER, TeamSpec(f"alpha-{tag}", models=["gpt-a", "shared"])))["id"]
    world.team_b = (await create_team(db, MASTER, TeamSpec(f"beta-{tag}", models=None)))["id"]
    teams = {"a": world.team_a, "b": world.team_b, None: None}
    for name, (role, team) in USERS.items():
        user = await create_user(db, MASTER, UserSpec(email=f"{name}-{tag}@example.com", name=name, role=role,
                                                      team_id=teams[team]))
        world.users[name] = user["id"]
        view, secret = await create_key(db, MASTER, KeySpec(name=f"{name}'s key", user_id=user["id"]))
        world.keys[name] = (view["id"], secret)
    view, secret = await create_key(db, MASTER, KeySpec(name="team b service key", team_id=world.team_b))
    world.keys["b_service"] = (view["id"], secret)
    return world


# (key name, model, status, input tokens, cost) per call
USAGE_ROWS = [("a_member", "gpt-a", 200, 10, 0.5), ("a_member", "shared", 500, 5, 0.0),
              ("a_member2", "gpt-a", 200, 7, 0.25), ("b_member", "big", 200, 100, 3.0),
              ("b_service", "big", 200, 50, 1.0)]


async def write_ledger(world: World, rows: list[tuple[str, str, int, int, float]]) -> datetime:
    """Ledger rows written through the ledger's own SQL writer, all at one instant of the last
    day picked at random (so a test can select this world's rows alone in a shared database)."""
    ts = datetime.now(timezone.utc) - timedelta(hours=2, microseconds=random.randrange(3600 * 10**6))
    events = []
    for n, (name, model, status, tokens, cost) in enumerate(rows):
        principal = await world.principal(name)
        events.append(UsageEvent(request_id=f"usage-{world.team_a}-{n}", ts=ts, dialect="openai", endpoint="chat",
                                 model=model, status=status, key_id=principal.key_id, team_id=principal.team_id,
                                 user_id=principal.user_id, input_tokens=tokens, output_tokens=1, cost_usd=cost,
                                 tags=["batch"] if name == "b_service" else []))
    async with world.db.transaction() as session:
        await write_usage(session, events)
    return ts


@pytest.fixture(params=["sqlite", "postgresql"])
def db_any(request):
    """Each test using it runs twice: on a temp SQLite file and on the run's PostgreSQL."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


@pytest_asyncio.fixture
async def world(db_any):
    return await build_world(db_any)


@pytest_asyncio.fixture
async def sqlite_world(sqlite_db):
    return await build_world(sqlite_db)
