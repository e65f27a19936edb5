"""Budgets: the service on SQLite and PostgreSQL, tenancy, validation, audit, announcements, the
HTTP API with a live-status provider, and the schema built by the migrations."""

from __future__ import annotations

import math
import secrets

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from sluice.admin import (AuditQuery, BudgetSpec, KeySpec, UserSpec, add_member, create_budget, create_key,
                          create_user, delete_budget, delete_team, delete_user, get_budget, list_budgets, query_audit,
                          update_budget, update_user)
from sluice.api.admin import create_admin_app
from sluice.policies.auth import MASTER
from sluice.schema import GatewayError
from sluice.store.models import Budget

from .conftest import MASTER_KEY, build_world


async def expect_error(status: int, pending, param: str | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        await pending
    assert exc.value.status == status, exc.value.message
    if param is not None:
        assert exc.value.param == param, exc.value.message
    return exc.value


def unique_name(prefix: str) -> str:
    """Model, tag and end-user subjects are global; the PostgreSQL database is shared by the run."""
    return f"{prefix}-{secrets.token_hex(4)}"


# --- the service -------------------------------------------------------------------------------

async def test_budget_lifecycle_audited_and_announced(world):
    db = world.db
    key_id = world.keys["a_member"][0]
    world.published.clear()
    created = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=50, soft_usd=40,
                                                         period="daily", name="laptop"),
                                  request_id="rid-bud-1", events=world.events)
    assert created["id"].startswith("bud_") and created["team_id"] == world.team_a
    assert (created["scope"], created["subject"], created["period"]) == ("key", key_id, "daily")
    assert (created["max_usd"], created["soft_usd"], created["name"]) == (50.0, 40.0, "laptop")
    assert world.published == [("budget", created["id"])]
    assert await get_budget(db, MASTER, created["id"]) == created

    world.published.clear()
    updated = await update_budget(db, MASTER, created["id"], {"max_usd": 80, "soft_usd": None, "name": "bigger"},
                                  request_id="rid-bud-2", events=world.events)
    assert (updated["max_usd"], updated["soft_usd"], updated["name"]) == (80.0, None, "bigger")
    assert updated["updated_at"] >= created["updated_at"] and world.published == [("budget", created["id"])]
    world.published.clear()
    same = await update_budget(db, MASTER, created["id"], {"max_usd": 80}, events=world.events)
    assert same == updated and world.published == []  # nothing changed: no audit entry, no announcement

    await delete_budget(db, MASTER, created["id"], request_id="rid-bud-3", events=world.events)
    assert world.published == [("budget", created["id"])]
    await expect_error(404, get_budget(db, MASTER, created["id"]))
    audit = await query_audit(db, MASTER, AuditQuery(object_type="budget", object_id=created["id"]))
    assert [(e["action"], e["request_id"], e["team_id"]) for e in audit] == [
        ("budget.delete", "rid-bud-3", world.team_a), ("budget.update", "rid-bud-2", world.team_a),
        ("budget.create", "rid-bud-1", world.team_a)]
    assert audit[0]["after"] is None and audit[0]["before"]["max_usd"] == 80
    assert audit[1]["before"]["soft_usd"] == 40 and audit[1]["after"]["soft_usd"] is None
    assert audit[2]["before"] is None and audit[2]["after"]["name"] == "laptop"


async def test_team_id_comes_from_the_subject(world):
    db = world.db
    loner = await create_user(db, MASTER, UserSpec(name="loner"))
    teamless_key, _ = await create_key(db, MASTER, KeySpec(user_id=loner["id"]))
    cases = [("key", world.keys["b_service"][0], world.team_b),  # a team's key without an owner
             ("key", world.keys["a_member"][0], world.team_a),
             ("user", world.users["b_member"], world.team_b),
             ("user", loner["id"], None),
             ("key", teamless_key["id"], None),
             ("team", world.team_a, world.team_a),
             ("model", unique_name("gpt"), None), ("tag", unique_name("batch"), None),
             ("end_user", unique_name("customer"), None)]
    for scope, subject, team_id in cases:
        budget = await create_budget(db, MASTER, BudgetSpec(scope=scope, subject=subject, max_usd=1))
        assert budget["team_id"] == team_id and budget["period"] == "monthly", (scope, subject)
    mine = await list_budgets(db, MASTER, team_id=world.team_a)
    assert sorted((b["scope"], b["subject"]) for b in mine) == [("key", world.keys["a_member"][0]),
                                                                  ("team", world.team_a)]
    users = await list_budgets(db, MASTER, scope="user", subject=world.users["b_member"])
    assert [b["team_id"] for b in users] == [world.team_b]


@pytest.mark.parametrize("spec, param", [
    (dict(scope="wallet", subject="x", max_usd=1), "scope"),
    (dict(scope="model", subject="m", max_usd=1, period="hourly"), "period"),
    (dict(scope="model", subject="m", max_usd=0), "max_usd"),
    (dict(scope="model", subject="m", max_usd=-3), "max_usd"),
    (dict(scope="model", subject="m", max_usd=math.inf), "max_usd"),
    (dict(scope="model", subject="m", max_usd=math.nan), "max_usd"),
    (dict(scope="model", subject="m", max_usd=True), "max_usd"),
    (dict(scope="model", subject="m", max_usd=10, soft_usd=0), "soft_usd"),
    (dict(scope="model", subject="m", max_usd=10, soft_usd=10.01), "soft_usd"),
    (dict(scope="model", subject="  ", max_usd=10), "subject"),
    (dict(scope="model", subject="m", max_usd=10, name="n" * 201), "name"),
])
async def test_invalid_budgets_are_400_with_the_field(sqlite_world, spec, param):
    await expect_error(400, create_budget(sqlite_world.db, MASTER, BudgetSpec(**spec)), param)
    async with sqlite_world.db.session() as session:
        assert (await session.scalars(select(Budget))).all() == []


async def test_missing_subjects_duplicates_and_bad_updates(world):
    db = world.db
    for scope in ("key", "user", "team"):
        err = await expect_error(404, create_budget(db, MASTER, BudgetSpec(scope=scope, subject="nope", max_usd=1)))
        assert err.code == f"{scope}_not_found"
    key_id = world.keys["a_member"][0]
    monthly = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=10, soft_usd=5))
    daily = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=2, period="daily"))
    err = await expect_error(409, create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=3)))
    assert err.code == "conflict"
    await expect_error(409, update_budget(db, MASTER, daily["id"], {"period": "monthly"}))
    await expect_error(400, update_budget(db, MASTER, monthly["id"], {"max_usd": 4}), "soft_usd")  # below soft
    await expect_error(400, update_budget(db, MASTER, monthly["id"], {"max_usd": None}), "max_usd")
    await expect_error(400, update_budget(db, MASTER, monthly["id"], {"scope": "team"}), "scope")
    await expect_error(400, update_budget(db, MASTER, monthly["id"], {"period": "yearly"}), "period")
    assert await get_budget(db, MASTER, monthly["id"]) == monthly  # refused updates change nothing
    moved = await update_budget(db, MASTER, daily["id"], {"period": "weekly", "max_usd": 4})
    assert moved["period"] == "weekly" and moved["max_usd"] == 4
    await expect_error(400, list_budgets(db, MASTER, scope="wallet"), "scope")


# --- tenancy -----------------------------------------------------------------------------------

async def _budgets_of_both_teams(world) -> dict[str, dict]:
    db = world.db
    specs = {"a_key": ("key", world.keys["a_member"][0]), "a_key2": ("key", world.keys["a_member2"][0]),
             "a_user": ("user", world.users["a_member"]), "a_team": ("team", world.team_a),
             "b_key": ("key", world.keys["b_member"][0]), "b_user": ("user", world.users["b_member"]),
             "b_team": ("team", world.team_b), "model": ("model", unique_name("gpt")),
             "tag": ("tag", unique_name("batch"))}
    return {name: await create_budget(db, MASTER, BudgetSpec(scope=scope, subject=subject, max_usd=10))
            for name, (scope, subject) in specs.items()}


async def test_who_sees_which_budgets(world):
    budgets = await _budgets_of_both_teams(world)
    ids = {b["id"]: name for name, b in budgets.items()}
    expected = {"a_admin": {"a_key", "a_key2", "a_user", "a_team"}, "a_viewer": {"a_key", "a_key2", "a_user", "a_team"},
                "a_member": {"a_key", "a_user"}, "b_admin": {"b_key", "b_user", "b_team"},
                "b_member": {"b_key", "b_user"}, "master": set(budgets)}
    for who, names in expected.items():
        caller = await world.principal(who)
        seen = {ids[b["id"]] for b in await list_budgets(world.db, caller, limit=1000) if b["id"] in ids}
        assert seen == names, who
        for name, budget in budgets.items():
            if name in names:
                assert (await get_budget(world.db, caller, budget["id"]))["id"] == budget["id"]
            else:
                await expect_error(404, get_budget(world.db, caller, budget["id"]))
    a_admin, a_member = await world.principal("a_admin"), await world.principal("a_member")
    await expect_error(403, list_budgets(world.db, a_admin, team_id=world.team_b))
    await expect_error(403, list_budgets(world.db, a_member, team_id=world.team_b))
    assert {b["id"] for b in await list_budgets(world.db, a_admin, scope="team")} == {budgets["a_team"]["id"]}


async def test_who_may_change_which_budgets(world):
    db = world.db
    budgets = await _budgets_of_both_teams(world)
    a_admin = await world.principal("a_admin")
    # A team admin manages their team's key and user budgets ...
    for name in ("a_key", "a_user"):
        assert (await update_budget(db, a_admin, budgets[name]["id"], {"max_usd": 20}))["max_usd"] == 20
    made = await create_budget(db, a_admin, BudgetSpec(scope="user", subject=world.users["a_viewer"], max_usd=3))
    assert made["team_id"] == world.team_a
    await delete_budget(db, a_admin, made["id"])
    # ... reads but cannot change their team's own budget, and never sees another team's or global ones.
    await expect_error(403, update_budget(db, a_admin, budgets["a_team"]["id"], {"max_usd": 1000}))
    await expect_error(403, delete_budget(db, a_admin, budgets["a_team"]["id"]))
    for name in ("b_key", "b_user", "b_team", "model", "tag"):
        await expect_error(404, update_budget(db, a_admin, budgets[name]["id"], {"max_usd": 1}))
        await expect_error(404, delete_budget(db, a_admin, budgets[name]["id"]))
    for scope, subject, status in (("key", world.keys["b_member"][0], 404), ("user", world.users["b_member"], 404),
                                   ("team", world.team_a, 403), ("model", "anything", 403),
                                   ("tag", "t", 403), ("end_user", "u", 403)):
        await expect_error(status, create_budget(db, a_admin, BudgetSpec(scope=scope, subject=subject, max_usd=1)))
    # An admin sitting in the team is above its team admin.
    boss = await create_user(db, MASTER, UserSpec(name="boss", role="admin", team_id=world.team_a))
    boss_key, _ = await create_key(db, MASTER, KeySpec(user_id=boss["id"]))
    await expect_error(403, create_budget(db, a_admin, BudgetSpec(scope="key", subject=boss_key["id"], max_usd=1)))
    await expect_error(403, create_budget(db, a_admin, BudgetSpec(scope="user", subject=boss["id"], max_usd=1)))
    boss_budget = await create_budget(db, MASTER, BudgetSpec(scope="user", subject=boss["id"], max_usd=9))
    await expect_error(403, update_budget(db, a_admin, boss_budget["id"], {"max_usd": 0.01}))
    # Members and viewers change nothing, even what they can see.
    for who in ("a_member", "a_viewer"):
        caller = await world.principal(who)
        await expect_error(403, update_budget(db, caller, budgets["a_key"]["id"], {"max_usd": 10**6}))
        await expect_error(403, delete_budget(db, caller, budgets["a_user"]["id"]))
        await expect_error(403, create_budget(db, caller, BudgetSpec(scope="key", subject=world.keys[who][0],
                                                                     max_usd=1)))
    await expect_error(404, update_budget(db, await world.principal("a_member"), budgets["b_key"]["id"], {}))
    untouched = {b["id"]: b["max_usd"] for b in await list_budgets(db, MASTER, limit=1000)}
    assert all(untouched[budgets[n]["id"]] == 10 for n in ("a_team", "b_key", "b_user", "b_team", "model", "tag"))


async def test_budgets_follow_their_subject(world):
    """A user who changes team takes their budget along; deleting a subject deletes its budgets."""
    db = world.db
    mover = await create_user(db, MASTER, UserSpec(name="mover", team_id=world.team_a))
    budget = await create_budget(db, MASTER, BudgetSpec(scope="user", subject=mover["id"], max_usd=5))
    a_admin, b_admin = await world.principal("a_admin"), await world.principal("b_admin")
    assert (await get_budget(db, a_admin, budget["id"]))["team_id"] == world.team_a
    world.published.clear()
    await update_user(db, MASTER, mover["id"], {"team_id": world.team_b}, events=world.events)
    assert ("budget", budget["id"]) in world.published
    await expect_error(404, get_budget(db, a_admin, budget["id"]))
    assert (await get_budget(db, b_admin, budget["id"]))["team_id"] == world.team_b
    audit = await query_audit(db, b_admin, AuditQuery(object_id=budget["id"]))
    assert audit[0]["action"] == "budget.update" and audit[0]["before"]["team_id"] == world.team_a

    loner = await create_user(db, MASTER, UserSpec(name="loner"))
    loose_key, _ = await create_key(db, MASTER, KeySpec(user_id=loner["id"]))
    key_budget = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=loose_key["id"], max_usd=5))
    await add_member(db, MASTER, world.team_a, loner["id"])  # the key joins team A, and so does its budget
    assert (await get_budget(db, a_admin, key_budget["id"]))["team_id"] == world.team_a

    world.published.clear()
    await delete_user(db, MASTER, mover["id"], events=world.events)
    assert ("budget", budget["id"]) in world.published
    await expect_error(404, get_budget(db, MASTER, budget["id"]))
    team_budget = await create_budget(db, MASTER, BudgetSpec(scope="team", subject=world.team_b, max_usd=5))
    member_budget = await create_budget(db, MASTER, BudgetSpec(scope="user", subject=world.users["b_member"],
                                                               max_usd=5))
    await delete_team(db, MASTER, world.team_b, events=world.events)
    await expect_error(404, get_budget(db, MASTER, team_budget["id"]))
    assert (await get_budget(db, MASTER, member_budget["id"]))["team_id"] is None
    assert [e["action"] for e in await query_audit(db, MASTER, AuditQuery(object_id=team_budget["id"]))] == \
        ["budget.delete", "budget.create"]


# --- HTTP --------------------------------------------------------------------------------------

class FakeLimitsView:
    """Stands in for the lead's limiter: echoes what it was asked about, so the test sees the wiring."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.keys: list[dict] = []

    async def key_status(self, key: dict) -> dict:
        if self.fail:
            raise ConnectionError("redis is down")
        self.keys.append(key)
        return {"rpm": {"limit": (key["limits"] or {}).get("rpm"), "remaining": 7, "reset_s": 12.5}}

    async def budget_status(self, budget: dict) -> dict:
        if self.fail:
            raise ConnectionError("redis is down")
        return {"spent_usd": 1.25, "remaining_usd": budget["max_usd"] - 1.25, "resets_at": None}


def _client(world, view=None) -> httpx.AsyncClient:
    app = create_admin_app(world.db, world.auth, world.events, limits_view=view)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin.test")


def as_(world, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER_KEY if name == 'master' else world.secret(name)}"}


async def test_budgets_over_http_with_live_status(world):
    view = FakeLimitsView()
    key_id = world.keys["a_member"][0]
    async with _client(world, view) as api:
        created = await api.post("/admin/budgets", headers={**as_(world, "a_admin"), "x-request-id": "rid-http-b"},
                                 json={"scope": "key", "subject": key_id, "max_usd": 20, "soft_usd": 15})
        assert created.status_code == 201, created.text
        budget = created.json()
        assert budget["team_id"] == world.team_a and budget["status"]["remaining_usd"] == 18.75
        listed = await api.get("/admin/budgets", headers=as_(world, "a_member"), params={"scope": "key"})
        assert [b["id"] for b in listed.json()["data"]] == [budget["id"]]
        assert listed.json()["data"][0]["status"]["spent_usd"] == 1.25
        patched = await api.patch(f"/admin/budgets/{budget['id']}", headers=as_(world, "master"),
                                  json={"soft_usd": None, "name": "ci"})
        assert patched.status_code == 200 and patched.json()["soft_usd"] is None and patched.json()["name"] == "ci"
        got = await api.get(f"/admin/budgets/{budget['id']}", headers=as_(world, "a_viewer"))
        assert got.status_code == 200 and got.json()["status"]["remaining_usd"] == 18.75

        await api.patch(f"/admin/keys/{key_id}", headers=as_(world, "master"), json={"limits": {"rpm": 9}})
        key = await api.get(f"/admin/keys/{key_id}", headers=as_(world, "a_member"))
        assert key.json()["limits_status"] == {"rpm": {"limit": 9, "remaining": 7, "reset_s": 12.5}}
        assert view.keys[-1]["id"] == key_id and view.keys[-1]["limits"] == {"rpm": 9}
        listed_keys = await api.get("/admin/keys", headers=as_(world, "master"))
        assert "limits_status" not in listed_keys.json()["data"][0]  # lists stay cheap

        deleted = await api.delete(f"/admin/budgets/{budget['id']}", headers=as_(world, "a_admin"))
        assert deleted.status_code == 204
        gone = await api.get(f"/admin/budgets/{budget['id']}", headers=as_(world, "master"))
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "budget_not_found"
        audit = await api.get("/admin/audit", headers=as_(world, "a_admin"),
                              params={"object_type": "budget", "object_id": budget["id"]})
    assert [e["action"] for e in audit.json()["data"]] == ["budget.delete", "budget.update", "budget.create"]
    assert audit.json()["data"][-1]["request_id"] == "rid-http-b"


async def test_status_fields_are_null_without_a_provider_or_when_it_fails(world):
    key_id = world.keys["a_member"][0]
    for view in (None, FakeLimitsView(fail=True)):
        async with _client(world, view) as api:
            budget = await api.post("/admin/budgets", headers=as_(world, "master"),
                                    json={"scope": "tag", "subject": unique_name("t"), "max_usd": 1})
            key = await api.get(f"/admin/keys/{key_id}", headers=as_(world, "master"))
            got = await api.get(f"/admin/budgets/{budget.json()['id']}", headers=as_(world, "master"))
        assert budget.status_code == 201 and budget.json()["status"] is None
        assert key.status_code == 200 and key.json()["limits_status"] is None
        assert got.status_code == 200 and got.json()["status"] is None


async def test_budget_errors_over_http(world):
    key_id, b_key = world.keys["a_member"][0], world.keys["b_member"][0]
    async with _client(world) as api:
        cases = [
            ("master", "POST", "/admin/budgets", {"scope": "key", "subject": key_id, "max_usd": 0}, 400, "max_usd"),
            ("master", "POST", "/admin/budgets", {"scope": "wallet", "subject": "x", "max_usd": 1}, 400, "scope"),
            ("master", "POST", "/admin/budgets", {"scope": "key", "subject": key_id, "max_usd": 1, "hard": 1},
             400, "hard"),
            ("master", "POST", "/admin/budgets", {"scope": "key", "subject": key_id, "max_usd": 5, "soft_usd": 6},
             400, "soft_usd"),
            ("master", "POST", "/admin/budgets", {"scope": "key", "subject": "key_nope", "max_usd": 5}, 404, None),
            ("a_admin", "POST", "/admin/budgets", {"scope": "key", "subject": b_key, "max_usd": 5}, 404, None),
            ("a_admin", "POST", "/admin/budgets", {"scope": "model", "subject": "m", "max_usd": 5}, 403, None),
            ("a_member", "POST", "/admin/budgets", {"scope": "key", "subject": key_id, "max_usd": 5}, 403, None),
            ("a_admin", "GET", "/admin/budgets?team_id=" + world.team_b, None, 403, None),
        ]
        for who, method, path, body, status, param in cases:
            response = await api.request(method, path, json=body, headers=as_(world, who))
            assert response.status_code == status, (who, path, body, response.text)
            error = response.json()["error"]
            assert error.get("param") == param, error
            assert world.team_b not in response.text or path.endswith(world.team_b)
        first = await api.post("/admin/budgets", headers=as_(world, "master"),
                               json={"scope": "key", "subject": key_id, "max_usd": 5})
        dup = await api.post("/admin/budgets", headers=as_(world, "master"),
                             json={"scope": "key", "subject": key_id, "max_usd": 7})
        assert first.status_code == 201 and dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
        lowered = await api.patch(f"/admin/budgets/{first.json()['id']}", headers=as_(world, "master"),
                                  json={"max_usd": -1})
        assert lowered.status_code == 400 and lowered.json()["error"]["param"] == "max_usd"


async def test_openapi_documents_budgets(world):
    async with _client(world) as api:
        spec = (await api.get("/openapi.json")).json()
    for path, methods in (("/admin/budgets", {"get", "post"}), ("/admin/budgets/{budget_id}",
                                                                 {"get", "patch", "delete"})):
        assert set(spec["paths"][path]) == methods
        assert all(spec["paths"][path][m]["tags"] == ["budgets"] for m in methods)
    schemas = spec["components"]["schemas"]
    assert schemas["BudgetCreate"]["properties"]["scope"]["enum"] == ["key", "team", "user", "end_user", "model",
                                                                      "tag"]
    assert "status" in schemas["BudgetOut"]["properties"] and "param" in schemas["ErrorDetail"]["properties"]


# --- on a schema built by the migrations ---------------------------------------------------------

@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def migrated_url(request, tmp_path, pg_url):
    import asyncpg

    from sluice.store import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/migrated.db"
        await migrate.upgrade(url)
        yield url
        return
    name = f"sluice_budgets_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    await migrate.upgrade(url)
    yield url
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_limits_and_budgets_on_a_migrated_database(migrated_url):
    from sluice.admin import update_key
    from sluice.store.db import Database

    db = Database(migrated_url)
    try:
        world = await build_world(db)
        key_id = world.keys["a_member"][0]
        limited = await update_key(db, MASTER, key_id, {"limits": {"rpm": 5, "models": {"m": {"tpm": 9}}},
                                                        "priority": "interactive"})
        assert limited["limits"] == {"rpm": 5, "models": {"m": {"tpm": 9}}} and limited["priority"] == "interactive"
        budget = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=3, period="none"))
        await expect_error(409, create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=4,
                                                                     period="none")))
        assert (await update_budget(db, MASTER, budget["id"], {"max_usd": 6}))["max_usd"] == 6
        assert [b["id"] for b in await list_budgets(db, await world.principal("a_admin"))] == [budget["id"]]
    finally:
        await db.close()
