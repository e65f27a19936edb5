"""Limits and priority on keys, teams and users: validation, who may set them, audit, announcements.

Services run on a temp SQLite file and on the run's PostgreSQL (the ``world`` fixture); the HTTP
checks go through the admin app in process.
"""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from sluice.admin import (AuditQuery, KeySpec, TeamSpec, UserSpec, check_limits, check_priority, create_key,
                          create_team, create_user, get_key, query_audit, rotate_key, update_key, update_team,
                          update_user)
from sluice.api.admin import create_admin_app
from sluice.policies.auth import MASTER
from sluice.schema import GatewayError
from sluice.store.models import ApiKey, Team, User
from sluice.store.secrets import hash_key

from .conftest import MASTER_KEY

LIMITS = {"rpm": 600, "tpm": 100000, "concurrency": 4, "models": {"gpt-a": {"rpm": 60, "output_tpm": 2000}}}


async def expect_error(status: int, pending, param: str | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as exc:
        await pending
    assert exc.value.status == status, exc.value.message
    if param is not None:
        assert exc.value.param == param, exc.value.message
    return exc.value


# --- validation (no database) ------------------------------------------------------------------

def test_limits_are_stored_in_one_normal_form():
    assert check_limits(None) is None
    assert check_limits({}) is None  # "no limits" has one spelling
    assert check_limits({"rpm": None, "models": {"m": {}}}) is None
    assert check_limits({"rpm": 0, "tpm": None, "models": {"m": {"rpm": 5, "tpm": None}, "n": {}}}) == \
        {"rpm": 0, "models": {"m": {"rpm": 5}}}
    assert check_limits(LIMITS) == LIMITS
    assert check_priority(None) is None and check_priority("batch") == "batch"


@pytest.mark.parametrize("value, param, words", [
    ({"rpm": -1}, "limits.rpm", "greater than or equal to 0"),
    ({"rpm": "60"}, "limits.rpm", "valid integer"),
    ({"tpm": 1.5}, "limits.tpm", "valid integer"),
    ({"concurrency": True}, "limits.concurrency", "valid integer"),
    ({"rpn": 60}, "limits.rpn", "unknown field"),
    ({"models": {"gpt-a": {"rpx": 1}}}, "limits.models.gpt-a.rpx", "unknown field"),
    ({"models": {"gpt-a": {"models": {}}}}, "limits.models.gpt-a.models", "unknown field"),
    ({"models": {" ": {"rpm": 1}}}, "limits.models", "non-empty"),
    ({"models": [1]}, "limits.models", "valid dictionary"),
    ([1, 2], "limits", "expected an object"),
])
def test_bad_limits_are_refused_with_the_field_named(value, param, words):
    with pytest.raises(GatewayError) as exc:
        check_limits(value)
    assert exc.value.status == 400 and exc.value.param == param and words in exc.value.message


def test_bad_priority_is_refused():
    with pytest.raises(GatewayError) as exc:
        check_priority("urgent")
    assert exc.value.status == 400 and exc.value.param == "priority"
    assert "interactive, default, batch" in exc.value.message


# --- keys --------------------------------------------------------------------------------------

async def test_an_admin_sets_key_limits_and_priority_audited_and_announced(world):
    db = world.db
    view, secret = await create_key(db, MASTER, KeySpec(user_id=world.users["a_member"], limits=LIMITS,
                                                        priority="interactive"), request_id="rid-lim-1")
    assert view["limits"] == LIMITS and view["priority"] == "interactive"
    async with db.session() as session:
        row = await session.get(ApiKey, view["id"])
        assert row.limits == LIMITS and row.priority == "interactive"
    world.published.clear()
    changed = await update_key(db, MASTER, view["id"], {"limits": {"rpm": 10, "tpm": None}, "priority": "batch"},
                               request_id="rid-lim-2", events=world.events)
    assert changed["limits"] == {"rpm": 10} and changed["priority"] == "batch"
    assert world.published == [("key", hash_key(secret))]
    cleared = await update_key(db, MASTER, view["id"], {"limits": None, "priority": None}, events=world.events)
    assert cleared["limits"] is None and cleared["priority"] is None
    audit = await query_audit(db, MASTER, AuditQuery(object_id=view["id"]))
    assert [e["action"] for e in audit] == ["key.update", "key.update", "key.create"]
    assert audit[2]["after"]["limits"] == LIMITS and audit[2]["request_id"] == "rid-lim-1"
    assert audit[1]["before"]["limits"] == LIMITS and audit[1]["after"]["limits"] == {"rpm": 10}
    assert audit[1]["before"]["priority"] == "interactive" and audit[1]["after"]["priority"] == "batch"
    assert audit[0]["after"]["limits"] is None and audit[0]["after"]["priority"] is None
    await expect_error(400, update_key(db, MASTER, view["id"], {"priority": "urgent"}), "priority")
    await expect_error(400, update_key(db, MASTER, view["id"], {"limits": {"rpm": -5}}), "limits.rpm")
    assert (await get_key(db, MASTER, view["id"]))["limits"] is None  # refused changes change nothing


async def test_a_team_admin_limits_their_teams_keys_and_a_member_cannot(world):
    db = world.db
    a_admin, a_member, a_viewer = [await world.principal(n) for n in ("a_admin", "a_member", "a_viewer")]
    member_key = world.keys["a_member"][0]
    limited = await update_key(db, a_admin, member_key, {"limits": {"rpm": 30}, "priority": "batch"})
    assert limited["limits"] == {"rpm": 30} and limited["priority"] == "batch"
    made, _ = await create_key(db, a_admin, KeySpec(user_id=world.users["a_member2"], limits={"tpm": 5}))
    assert made["limits"] == {"tpm": 5}
    # The member holds the key and cannot lift, change or drop its limits or priority.
    for changes in ({"limits": None}, {"limits": {"rpm": 10**6}}, {"priority": "interactive"},
                    {"priority": None}, {"limits": {"rpm": 30}}):
        err = await expect_error(403, update_key(db, a_member, member_key, changes))
        assert err.kind == "permission"
    await expect_error(403, create_key(db, a_member, KeySpec(limits={"rpm": 1})))
    await expect_error(403, create_key(db, a_member, KeySpec(priority="interactive")))
    plain, _ = await create_key(db, a_member, KeySpec(name="mine"))
    assert plain["limits"] is None and plain["priority"] is None
    assert (await update_key(db, a_member, member_key, {"name": "renamed"}))["limits"] == {"rpm": 30}
    await expect_error(403, update_key(db, a_viewer, member_key, {"limits": {"rpm": 1}}))
    # Another team's key is out of sight (404); an admin's key is above a team admin (403).
    await expect_error(404, update_key(db, a_admin, world.keys["b_member"][0], {"limits": {"rpm": 1}}))
    boss = await create_user(db, MASTER, UserSpec(name="boss", role="admin", team_id=world.team_a))
    boss_key, _ = await create_key(db, MASTER, KeySpec(user_id=boss["id"]))
    await expect_error(403, update_key(db, a_admin, boss_key["id"], {"limits": {"rpm": 1}}))
    assert (await get_key(db, MASTER, world.keys["b_member"][0]))["limits"] is None


async def test_rotation_keeps_limits_priority_and_budgets(world):
    from sluice.admin import BudgetSpec, create_budget, delete_budget, list_budgets

    db = world.db
    member = await world.principal("a_member")
    key_id = world.keys["a_member"][0]
    await update_key(db, MASTER, key_id, {"limits": LIMITS, "priority": "batch"})
    await create_budget(db, MASTER, BudgetSpec(scope="key", subject=key_id, max_usd=5, soft_usd=4, name="cap"))
    world.published.clear()
    new, _ = await rotate_key(db, member, key_id, events=world.events)  # the holder rotates it
    assert new["limits"] == LIMITS and new["priority"] == "batch"
    assert new["lineage"] == key_id and new["rotated_from"] == key_id
    # The budget is filed under the key's lineage, which the new key shares: one budget, one
    # counter for both keys (no copy that would start from nothing).
    mine = await list_budgets(db, MASTER, scope="key", subject=new["id"])  # found through the new key's id
    assert [(b["subject"], b["max_usd"], b["soft_usd"], b["name"]) for b in mine] == [(key_id, 5, 4, "cap")]
    assert await list_budgets(db, MASTER, scope="key", subject=key_id) == mine
    # A budget set later on the new key is filed under the lineage too.
    await delete_budget(db, MASTER, mine[0]["id"])
    again = await create_budget(db, MASTER, BudgetSpec(scope="key", subject=new["id"], max_usd=3))
    assert again["subject"] == key_id


# --- teams and users ---------------------------------------------------------------------------

async def test_team_limits_are_an_admins_and_are_announced(world):
    db = world.db
    a_admin = await world.principal("a_admin")
    team = await create_team(db, MASTER, TeamSpec(f"limited-{world.team_a}", limits={"rpm": 100, "tpm": None}))
    assert team["limits"] == {"rpm": 100}
    world.published.clear()
    changed = await update_team(db, MASTER, world.team_a, {"limits": LIMITS}, events=world.events,
                                request_id="rid-team-lim")
    assert changed["limits"] == LIMITS and world.published == [("team", world.team_a)]
    await expect_error(403, update_team(db, a_admin, world.team_a, {"limits": None}))
    await expect_error(404, update_team(db, a_admin, world.team_b, {"limits": None}))
    await expect_error(400, update_team(db, MASTER, world.team_a, {"limits": {"rpm": "x"}}), "limits.rpm")
    async with db.session() as session:
        assert (await session.get(Team, world.team_a)).limits == LIMITS
    world.published.clear()
    await update_team(db, MASTER, world.team_a, {"metadata": {"x": 1}}, events=world.events)
    assert world.published == []  # metadata does not change what keys may do
    audit = await query_audit(db, a_admin, AuditQuery(object_id=world.team_a, action="team.update"))
    assert audit[-1]["request_id"] == "rid-team-lim" and audit[-1]["after"]["limits"] == LIMITS


async def test_user_limits_are_an_admins_and_are_announced(world):
    db = world.db
    a_admin = await world.principal("a_admin")
    made = await create_user(db, MASTER, UserSpec(name="limited", team_id=world.team_a, limits={"concurrency": 2}))
    assert made["limits"] == {"concurrency": 2}
    await expect_error(403, create_user(db, a_admin, UserSpec(name="sneaky", limits={"rpm": 1})))
    assert (await create_user(db, a_admin, UserSpec(name="plain")))["limits"] is None
    member_id = world.users["a_member"]
    await expect_error(403, update_user(db, a_admin, member_id, {"limits": {"rpm": 10**6}}))
    world.published.clear()
    changed = await update_user(db, MASTER, member_id, {"limits": {"tpm": 9}}, events=world.events)
    assert changed["limits"] == {"tpm": 9} and world.published == [("user", member_id)]
    async with db.session() as session:
        assert (await session.scalars(select(User.limits).where(User.id == member_id))).one() == {"tpm": 9}
    audit = await query_audit(db, MASTER, AuditQuery(object_id=member_id, action="user.update"))
    assert audit[0]["before"]["limits"] is None and audit[0]["after"]["limits"] == {"tpm": 9}
    await expect_error(400, update_user(db, MASTER, member_id, {"limits": {"models": {"m": {"x": 1}}}}),
                       "limits.models.m.x")


# --- over HTTP ---------------------------------------------------------------------------------

@pytest_asyncio.fixture
async def http(world):
    transport = httpx.ASGITransport(app=create_admin_app(world.db, world.auth, world.events))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        yield client


def as_(world, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER_KEY if name == 'master' else world.secret(name)}"}


async def test_limits_over_http(http, world):
    key_id = world.keys["a_member"][0]
    created = await http.post("/admin/keys", headers=as_(world, "a_admin"),
                              json={"user_id": world.users["a_member"], "limits": LIMITS, "priority": "batch"})
    assert created.status_code == 201, created.text
    assert created.json()["limits"] == LIMITS and created.json()["priority"] == "batch"
    patched = await http.patch(f"/admin/keys/{key_id}", headers=as_(world, "a_admin"),
                               json={"limits": {"rpm": 5, "models": {"gpt-a": {"tpm": 50}}}})
    assert patched.status_code == 200 and patched.json()["limits"] == {"rpm": 5, "models": {"gpt-a": {"tpm": 50}}}
    got = await http.get(f"/admin/keys/{key_id}", headers=as_(world, "a_member"))
    assert got.json()["limits"]["rpm"] == 5 and got.json()["limits_status"] is None  # no limiter attached
    listed = (await http.get("/admin/keys", headers=as_(world, "a_admin"))).json()["data"]
    assert {k["id"]: k["limits"] for k in listed}[key_id] == patched.json()["limits"]

    refused = await http.patch(f"/admin/keys/{key_id}", headers=as_(world, "a_member"), json={"limits": None})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    for body, param, words in (({"limits": {"rpm": "ten"}}, "limits.rpm", "valid integer"),
                               ({"limits": {"rpn": 1}}, "limits.rpn", "unknown field"),
                               ({"limits": {"models": {"m": {"burst": 1}}}}, "limits.models.m.burst", "unknown field"),
                               ({"priority": "urgent"}, "priority", "interactive")):
        bad = await http.patch(f"/admin/keys/{key_id}", headers=MASTER_H, json=body)
        error = bad.json()["error"]
        assert bad.status_code == 400 and error["type"] == "invalid_request_error", bad.text
        assert error["param"] == param and words in error["message"], error
    team = await http.patch(f"/admin/teams/{world.team_a}", headers=MASTER_H, json={"limits": {"rpm": 7}})
    user = await http.patch(f"/admin/users/{world.users['a_member2']}", headers=MASTER_H, json={"limits": {"tpm": 8}})
    assert team.json()["limits"] == {"rpm": 7} and user.json()["limits"] == {"tpm": 8}
    denied = await http.patch(f"/admin/teams/{world.team_a}", headers=as_(world, "a_admin"), json={"limits": None})
    assert denied.status_code == 403


MASTER_H = {"authorization": f"Bearer {MASTER_KEY}"}


async def test_openapi_documents_limits(http):
    spec = (await http.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Limits"]["properties"]) == {"rpm", "tpm", "input_tpm", "output_tpm", "concurrency", "models"}
    assert schemas["Limits"]["additionalProperties"] is False
    assert "limits" in schemas["KeyCreate"]["properties"] and "priority" in schemas["KeyUpdate"]["properties"]
    assert "limits_status" in schemas["KeyDetail"]["properties"]
    key_get = spec["paths"]["/admin/keys/{key_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert key_get["schema"]["$ref"].endswith("/KeyDetail")
    assert "interactive" in str(schemas["KeyCreate"]["properties"]["priority"])
