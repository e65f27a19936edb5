"""Virtual keys against a real database (SQLite file and PostgreSQL), the in-process key cache,
and its invalidation over real Redis pub/sub between two authenticators."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import event, update

from sluice.policies.auth import ANONYMOUS, MASTER, Authenticator, narrow_models
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import LocalEvents, RedisEvents
from sluice.store.models import ApiKey, Base, Team, User, new_id, utcnow
from sluice.store.secrets import generate_key, hash_key

MASTER_KEY = "mk-" + "x" * 40


# ---- databases -------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def pg_auth_url(pg_url):
    """A PostgreSQL database of our own (tables from the models, not the migrations)."""
    name = f"sluice_auth_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await db.close()
    yield url
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path, pg_auth_url):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
        async with database.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    else:
        database = Database(pg_auth_url)
    yield database
    await database.close()


@pytest_asyncio.fixture
async def pg(pg_auth_url):
    database = Database(pg_auth_url)
    yield database
    await database.close()


def count_key_queries(database: Database) -> dict[str, int]:
    """Observe the SQL the engine sends: how many statements read the api_keys table."""
    seen = {"n": 0}

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if "api_keys" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen["n"] += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def add_team(database: Database, models: list[str] | None = None) -> Team:
    team = Team(id=new_id("team"), name=f"team-{secrets.token_hex(4)}", models=models, metadata_={})
    async with database.transaction() as s:
        s.add(team)
    return team


async def add_user(database: Database, role: str = "member", team: Team | None = None) -> User:
    user = User(id=new_id("user"), email=f"{secrets.token_hex(4)}@example.com", role=role,
                team_id=team.id if team else None)
    async with database.transaction() as s:
        s.add(user)
    return user


async def add_key(database: Database, *, user: User | None = None, team: Team | None = None, **fields) -> tuple[str, ApiKey]:
    secret, prefix, digest = generate_key()
    key = ApiKey(id=new_id("key"), key_hash=digest, key_prefix=prefix, user_id=user.id if user else None,
                 team_id=team.id if team else None, metadata_=fields.pop("metadata", {}),
                 tags=fields.pop("tags", []), **fields)
    async with database.transaction() as s:
        s.add(key)
    return secret, key


async def set_key(database: Database, key_id: str, **values) -> None:
    async with database.transaction() as s:
        await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))


async def refused(auth: Authenticator, credential: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(credential)
    assert info.value.status == 401 or info.value.status == 503
    return info.value


# ---- master key and the open gateway ---------------------------------------------------------

async def test_open_gateway_without_master_key_or_database():
    auth = Authenticator(None)
    assert auth.open
    assert await auth.authenticate(None) is ANONYMOUS
    assert await auth.authenticate("anything") is ANONYMOUS


async def test_master_key_missing_and_wrong_credentials():
    auth = Authenticator(MASTER_KEY)
    assert await auth.authenticate(MASTER_KEY) is MASTER
    err = await refused(auth, None)
    assert (err.status, err.code) == (401, "missing_api_key")
    assert "Missing API key" in err.message
    err = await refused(auth, MASTER_KEY + "y")
    assert (err.code, err.message) == ("invalid_api_key", "Invalid API key.")
    # A virtual key is meaningless without a database: plain "invalid", and never echoed back.
    secret, _, _ = generate_key()
    err = await refused(auth, secret)
    assert err.code == "invalid_api_key" and secret not in err.message


async def test_database_alone_closes_the_gateway(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        auth = Authenticator(None, database)
        assert not auth.open
        assert (await refused(auth, None)).code == "missing_api_key"
    finally:
        await database.close()


# ---- virtual keys ----------------------------------------------------------------------------

async def test_valid_key_principal(db):
    team = await add_team(db, models=["gpt-4o", "claude-sonnet", "gemini"])
    user = await add_user(db, role="team_admin", team=team)
    secret, key = await add_key(db, user=user, team=team, models=["gpt-4o", "llama", "gemini"],
                                tags=["prod", "web"], metadata={"app": "shop"})
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    p = await auth.authenticate(secret)
    assert p.kind == "key" and p.id == key.id and p.key_id == key.id
    assert p.role == "team_admin"
    assert p.user_id == user.id and p.team_id == team.id
    assert p.models == ("gpt-4o", "gemini")  # key ∩ team, in the key's order
    assert p.tags == ("prod", "web") and p.metadata == {"app": "shop"}
    assert p.actor == f"key:{key.id}"


async def test_unknown_revoked_expired(db):
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    unknown, _, _ = generate_key()
    assert (await refused(auth, unknown)).code == "invalid_api_key"

    revoked, _ = await add_key(db, revoked_at=utcnow() - timedelta(minutes=1))
    err = await refused(auth, revoked)
    assert (err.status, err.code) == (401, "key_revoked")

    expired, _ = await add_key(db, expires_at=utcnow() - timedelta(seconds=1))
    err = await refused(auth, expired)
    assert (err.status, err.code) == (401, "key_expired")
    for e in (err,):
        assert expired not in e.message


async def test_rotated_key_valid_during_grace_then_expired(db):
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    # Rotation as the admin service does it: old key gets expires_at = now + grace; new key points back.
    old_secret, old = await add_key(db, expires_at=utcnow() + timedelta(hours=1))
    new_secret, new = await add_key(db, rotated_from=old.id)
    assert (await auth.authenticate(old_secret)).key_id == old.id
    assert (await auth.authenticate(new_secret)).key_id == new.id

    gone_secret, _ = await add_key(db, expires_at=utcnow() - timedelta(minutes=5))
    assert (await refused(auth, gone_secret)).code == "key_expired"


async def test_role_and_models_defaults(db):
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    bare, _ = await add_key(db)
    p = await auth.authenticate(bare)
    assert (p.role, p.models, p.user_id, p.team_id) == ("member", None, None, None)

    team = await add_team(db, models=["a", "b"])
    team_only, _ = await add_key(db, team=team)
    assert (await auth.authenticate(team_only)).models == ("a", "b")

    key_only, _ = await add_key(db, models=["c"])
    assert (await auth.authenticate(key_only)).models == ("c",)

    # A personal key of a user in a team takes the user's team (and its model list) and role.
    admin = await add_user(db, role="admin", team=team)
    personal, _ = await add_key(db, user=admin, models=["b", "z"])
    p = await auth.authenticate(personal)
    assert (p.role, p.team_id, p.models) == ("admin", team.id, ("b",))


def test_narrow_models():
    assert narrow_models(None, None) is None
    assert narrow_models(["x"], None) == ("x",)
    assert narrow_models(None, ["y"]) == ("y",)
    assert narrow_models(["x", "y"], ["y", "z"]) == ("y",)
    assert narrow_models(["x"], []) == ()


# ---- the cache -------------------------------------------------------------------------------

async def test_second_lookup_does_no_query(db):
    secret, _ = await add_key(db)
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    queries = count_key_queries(db)
    await auth.authenticate(secret)
    assert queries["n"] == 1
    for _ in range(50):
        await auth.authenticate(secret)
    assert queries["n"] == 1


async def test_cache_ttl_bounds_staleness(db):
    secret, key = await add_key(db)
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=0.3)
    queries = count_key_queries(db)
    await auth.authenticate(secret)
    await set_key(db, key.id, revoked_at=utcnow())
    await auth.authenticate(secret)  # still cached: no event was published
    await asyncio.sleep(0.35)
    assert (await refused(auth, secret)).code == "key_revoked"
    assert queries["n"] == 2


async def test_expiry_checked_on_cached_record(db):
    secret, _ = await add_key(db, expires_at=utcnow() + timedelta(seconds=0.6))
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=60)
    queries = count_key_queries(db)
    await auth.authenticate(secret)
    await asyncio.sleep(0.7)
    assert (await refused(auth, secret)).code == "key_expired"
    assert queries["n"] == 1  # decided from the cached record


async def test_negative_cache_and_its_bound(db):
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    auth.cache.negative_ttl = 0.3
    auth.cache.negative_max = 5
    queries = count_key_queries(db)
    bad, _, _ = generate_key()
    for _ in range(20):
        assert (await refused(auth, bad)).code == "invalid_api_key"
    assert queries["n"] == 1
    await asyncio.sleep(0.35)
    await refused(auth, bad)
    assert queries["n"] == 2

    for _ in range(30):
        await refused(auth, generate_key()[0])
    assert len(auth.cache.unknown) <= 5
    assert queries["n"] == 32


async def test_concurrent_misses_share_one_query(db):
    secret, key = await add_key(db)
    auth = Authenticator(MASTER_KEY, db, LocalEvents(), cache_ttl=30)
    queries = count_key_queries(db)
    principals = await asyncio.gather(*(auth.authenticate(secret) for _ in range(25)))
    assert {p.key_id for p in principals} == {key.id}
    assert queries["n"] == 1


async def test_unreachable_database_is_503_not_401():
    database = Database("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        auth = Authenticator(MASTER_KEY, database, LocalEvents(), cache_ttl=30)
        err = await refused(auth, generate_key()[0])
        assert (err.status, err.code) == (503, "auth_unavailable")
    finally:
        await database.close()


# ---- invalidation ----------------------------------------------------------------------------

async def test_local_events_invalidate_key_team_user(db):
    events = LocalEvents()
    team = await add_team(db, models=["a", "b"])
    user = await add_user(db, role="member", team=team)
    secret, key = await add_key(db, user=user, team=team)
    auth = Authenticator(MASTER_KEY, db, events, cache_ttl=60)
    assert (await auth.authenticate(secret)).models == ("a", "b")

    async with db.transaction() as s:
        await s.execute(update(Team).where(Team.id == team.id).values(models=["a"]))
    assert (await auth.authenticate(secret)).models == ("a", "b")  # cached
    await events.publish("team", team.id)
    assert (await auth.authenticate(secret)).models == ("a",)

    async with db.transaction() as s:
        await s.execute(update(User).where(User.id == user.id).values(role="viewer"))
    await events.publish("user", user.id)
    assert (await auth.authenticate(secret)).role == "viewer"

    await set_key(db, key.id, revoked_at=utcnow())
    await auth.authenticate(secret)  # cached
    await events.publish("key", hash_key(secret))
    assert (await refused(auth, secret)).code == "key_revoked"


async def test_key_event_by_id_and_wildcard(db):
    events = LocalEvents()
    s1, k1 = await add_key(db)
    s2, k2 = await add_key(db)
    auth = Authenticator(MASTER_KEY, db, events, cache_ttl=60)
    await auth.authenticate(s1)
    await auth.authenticate(s2)
    await set_key(db, k1.id, revoked_at=utcnow())
    await set_key(db, k2.id, expires_at=utcnow() - timedelta(seconds=1))
    await events.publish("key", k1.id)
    assert (await refused(auth, s1)).code == "key_revoked"
    assert (await auth.authenticate(s2)).key_id == k2.id  # untouched by k1's event
    await events.publish("key", "*")
    assert (await refused(auth, s2)).code == "key_expired"


async def test_key_created_after_a_failed_attempt_is_not_stuck_in_negative_cache(db):
    events = LocalEvents()
    auth = Authenticator(MASTER_KEY, db, events, cache_ttl=60)
    secret, prefix, digest = generate_key()
    await refused(auth, secret)
    async with db.transaction() as s:
        s.add(ApiKey(id=new_id("key"), key_hash=digest, key_prefix=prefix, metadata_={}, tags=[]))
    await events.publish("key", digest)
    assert (await auth.authenticate(secret)).kind == "key"


async def test_revocation_reaches_another_instance_within_one_second(pg_auth_url, redis_url, redis_prefix):
    """Two gateways' worth of state: separate engines and caches, one PostgreSQL, one Redis."""
    prefix = f"{redis_prefix}:auth-{secrets.token_hex(3)}"
    db_a, db_b = Database(pg_auth_url), Database(pg_auth_url)
    events_a, events_b = RedisEvents(redis_url, prefix), RedisEvents(redis_url, prefix)
    await events_a.start()
    await events_b.start()
    try:
        auth_a = Authenticator(MASTER_KEY, db_a, events_a, cache_ttl=60)
        auth_b = Authenticator(MASTER_KEY, db_b, events_b, cache_ttl=60)
        secret, key = await add_key(db_a)
        assert (await auth_a.authenticate(secret)).key_id == key.id
        assert (await auth_b.authenticate(secret)).key_id == key.id

        # What the admin service does on instance A: commit, then announce.
        await set_key(db_a, key.id, revoked_at=utcnow())
        assert (await auth_b.authenticate(secret)).key_id == key.id  # B's cache still trusts it
        started = time.monotonic()
        await events_a.publish("key", key.key_hash)
        assert (await refused(auth_a, secret)).code == "key_revoked"  # A at once

        while True:
            try:
                await auth_b.authenticate(secret)
            except GatewayError as err:
                assert err.code == "key_revoked"
                break
            assert time.monotonic() - started < 1.0, "instance B still accepts the revoked key after 1 s"
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0
    finally:
        await events_a.close()
        await events_b.close()
        await db_a.close()
        await db_b.close()
