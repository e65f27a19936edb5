"""The admin services on a real SQLite file: key lifecycle, teams, users, audit, invalidations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import select

from sluice.admin import (AuditQuery, KeySpec, TeamSpec, UserSpec, add_member, create_key, create_team, create_user,
                          delete_team, delete_user, get_key, list_keys, parse_duration, query_audit, remove_member,
                          revoke_key, rotate_key, update_key, update_team, update_user)
from sluice.policies.auth import ANONYMOUS, MASTER
from sluice.schema import GatewayError
from sluice.store.models import ApiKey, AuditEntry
from sluice.store.secrets import hash_key

from .conftest import USAGE_ROWS, write_ledger


async def _audit_rows(db) -> list[AuditEntry]:
    async with db.session() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


async def test_create_key_returns_the_secret_once_and_stores_only_its_hash(world):
    db = world.db
    a_member = await world.principal("a_member")
    view, secret = await create_key(db, a_member, KeySpec(name="laptop", models=["gpt-a"], tags=["cli"],
                                                          metadata={"env": "dev"}, duration="30d"),
                                    request_id="req-create-1")
    assert secret.startswith("sk-slc-") and len(secret) == 7 + 43
    assert view["key_prefix"] == secret[:11]
    assert view["user_id"] == world.users["a_member"] and view["team_id"] == world.team_a
    assert view["models"] == ["gpt-a"] and view["tags"] == ["cli"] and view["metadata"] == {"env": "dev"}
    expires = datetime.fromisoformat(view["expires_at"])
    assert abs(expires - (datetime.now(timezone.utc) + timedelta(days=30))) < timedelta(seconds=10)
    async with db.session() as session:
        row = await session.get(ApiKey, view["id"])
    assert row.key_hash == hash_key(secret)
    # The secret works as a credential, and no later read shows it or its hash.
    principal = await world.auth.authenticate(secret)
    assert principal.key_id == view["id"] and principal.models == ("gpt-a",)
    listed = await list_keys(db, a_member)
    fetched = await get_key(db, a_member, view["id"])
    audit = await query_audit(db, MASTER, AuditQuery(object_id=view["id"]))
    blob = orjson.dumps([listed, fetched, audit]).decode()
    assert secret not in blob and row.key_hash not in blob and secret[11:] not in blob
    assert audit[0]["action"] == "key.create" and audit[0]["request_id"] == "req-create-1"
    assert audit[0]["actor"] == f"key:{world.keys['a_member'][0]}" and audit[0]["before"] is None
    assert audit[0]["after"]["name"] == "laptop" and audit[0]["team_id"] == world.team_a


async def test_key_models_must_lie_within_the_team_and_the_caller(world):
    a_member = await world.principal("a_member")
    with pytest.raises(GatewayError) as exc:
        await create_key(world.db, a_member, KeySpec(models=["gpt-a", "gpt-b"]))
    assert exc.value.status == 403 and "gpt-b" in exc.value.message
    with pytest.raises(GatewayError) as exc:
        await create_key(world.db, MASTER, KeySpec(team_id=world.team_a, models=["other"]))
    assert exc.value.status == 403
    # A caller narrowed to one model cannot mint a wider key, neither explicitly nor by omission.
    _, narrow_secret = await create_key(world.db, MASTER, KeySpec(user_id=world.users["a_member"],
                                                                       models=["shared"]))
    caller = await world.auth.authenticate(narrow_secret)
    with pytest.raises(GatewayError) as exc:
        await create_key(world.db, caller, KeySpec(models=["gpt-a"]))
    assert exc.value.status == 403
    view, _ = await create_key(world.db, caller, KeySpec(name="inherits"))
    assert view["models"] == ["shared"]


async def test_expiry_rules(world):
    with pytest.raises(GatewayError) as exc:
        await create_key(world.db, MASTER, KeySpec(team_id=world.team_b, duration="30x"))
    assert exc.value.status == 400 and exc.value.param == "duration"
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    with pytest.raises(GatewayError):
        await create_key(world.db, MASTER, KeySpec(team_id=world.team_b, expires_at=past))
    with pytest.raises(GatewayError):
        await create_key(world.db, MASTER, KeySpec(team_id=world.team_b, duration="1d",
                                                   expires_at=past + timedelta(days=2)))
    assert parse_duration("2w") == timedelta(weeks=2) and parse_duration("90m") == timedelta(minutes=90)


async def test_update_writes_before_and_after_and_announces_the_key(world):
    key_id, secret = world.keys["a_member"]
    a_admin = await world.principal("a_admin")
    world.published.clear()
    after = await update_key(world.db, a_admin, key_id, {"name": "renamed", "tags": ["x"], "models": ["shared"]},
                             request_id="req-upd", events=world.events)
    assert after["name"] == "renamed" and after["models"] == ["shared"]
    assert world.published == [("key", hash_key(secret))]
    entry = (await query_audit(world.db, MASTER, AuditQuery(action="key.update")))[0]
    assert entry["before"]["name"] == "a_member's key" and entry["after"]["name"] == "renamed"
    assert entry["before"]["models"] is None and entry["after"]["tags"] == ["x"]
    assert entry["request_id"] == "req-upd" and entry["actor"] == f"key:{world.keys['a_admin'][0]}"
    with pytest.raises(GatewayError) as exc:
        await update_key(world.db, a_admin, key_id, {"key_hash": "0" * 64})
    assert exc.value.status == 400


async def test_revoke_is_immediate_and_idempotent(world):
    key_id, secret = world.keys["b_member"]
    b_member = await world.principal("b_member")
    world.published.clear()
    view = await revoke_key(world.db, b_member, key_id, events=world.events)
    assert view["status"] == "revoked" and view["revoked_at"]
    assert world.published == [("key", hash_key(secret))]
    with pytest.raises(GatewayError) as exc:  # the auth cache dropped the key on the announcement
        await world.auth.authenticate(secret)
    assert exc.value.code == "key_revoked"
    again = await revoke_key(world.db, MASTER, key_id, events=world.events)
    assert again["revoked_at"] == view["revoked_at"]
    assert len(await query_audit(world.db, MASTER, AuditQuery(action="key.revoke", object_id=key_id))) == 1
    with pytest.raises(GatewayError):
        await update_key(world.db, MASTER, key_id, {"name": "zombie"})


async def test_rotate_keeps_settings_and_gives_the_old_key_a_grace_period(world):
    db = world.db
    old, old_secret = await create_key(db, MASTER, KeySpec(name="svc", team_id=world.team_a, models=["gpt-a"],
                                                           tags=["t"], metadata={"k": 1}))
    world.published.clear()
    new, new_secret = await rotate_key(db, MASTER, old["id"], grace=timedelta(hours=2), request_id="rot-1",
                                       events=world.events)
    assert new_secret != old_secret and new["rotated_from"] == old["id"]
    assert (new["name"], new["team_id"], new["models"], new["tags"], new["metadata"]) == \
        ("svc", world.team_a, ["gpt-a"], ["t"], {"k": 1})
    assert new["expires_at"] is None
    old_now = await get_key(db, MASTER, old["id"])
    grace_end = datetime.fromisoformat(old_now["expires_at"])
    assert abs(grace_end - (datetime.now(timezone.utc) + timedelta(hours=2))) < timedelta(seconds=10)
    assert world.published == [("key", hash_key(old_secret))]
    assert (await world.auth.authenticate(new_secret)).key_id == new["id"]
    assert (await world.auth.authenticate(old_secret)).key_id == old["id"]  # still within grace
    actions = {(e["action"], e["object_id"]) for e in await query_audit(db, MASTER, AuditQuery(request_id="rot-1"))}
    assert actions == {("key.rotate", old["id"]), ("key.create", new["id"])}
    # Grace 0: the old key stops at once; an expired key cannot be rotated again.
    newer, _ = await rotate_key(db, MASTER, new["id"], grace=timedelta(0), events=world.events)
    with pytest.raises(GatewayError) as exc:
        await world.auth.authenticate(new_secret)
    assert exc.value.code == "key_expired"
    with pytest.raises(GatewayError) as exc:
        await rotate_key(db, MASTER, new["id"])
    assert exc.value.status == 400
    assert newer["rotated_from"] == new["id"]


async def test_team_admin_cannot_mint_or_rotate_an_admins_key(world):
    """An admin who sits in team A: their keys carry admin power, so a team admin must not get one."""
    boss = await create_user(world.db, MASTER, UserSpec(name="boss", role="admin", team_id=world.team_a))
    boss_key, _ = await create_key(world.db, MASTER, KeySpec(user_id=boss["id"]))
    a_admin = await world.principal("a_admin")
    assert (await get_key(world.db, a_admin, boss_key["id"]))["user_id"] == boss["id"]  # visible: team A's key
    with pytest.raises(GatewayError) as exc:
        await create_key(world.db, a_admin, KeySpec(user_id=boss["id"]))
    assert exc.value.status == 403
    for attempt in (rotate_key(world.db, a_admin, boss_key["id"]),
                    update_key(world.db, a_admin, boss_key["id"], {"name": "mine now"}),
                    revoke_key(world.db, a_admin, boss_key["id"])):
        with pytest.raises(GatewayError) as exc:
            await attempt
        assert exc.value.status == 403
    assert (await get_key(world.db, MASTER, boss_key["id"]))["status"] == "active"


async def test_team_admin_manages_users_of_their_team_only(world):
    a_admin = await world.principal("a_admin")
    created = await create_user(world.db, a_admin, UserSpec(email="new@example.com", role="viewer"))
    assert created["team_id"] == world.team_a
    for spec, status in ((UserSpec(role="admin"), 403), (UserSpec(team_id=world.team_b), 403),
                         (UserSpec(role="owner"), 400)):
        with pytest.raises(GatewayError) as exc:
            await create_user(world.db, a_admin, spec)
        assert exc.value.status == status
    with pytest.raises(GatewayError) as exc:
        await update_user(world.db, a_admin, created["id"], {"team_id": world.team_b})
    assert exc.value.status == 403
    with pytest.raises(GatewayError) as exc:
        await update_user(world.db, a_admin, created["id"], {"role": "admin"})
    assert exc.value.status == 403
    with pytest.raises(GatewayError) as exc:
        await update_user(world.db, a_admin, world.users["b_member"], {"name": "x"})
    assert exc.value.status == 404
    world.published.clear()
    promoted = await update_user(world.db, a_admin, created["id"], {"role": "team_admin"}, events=world.events)
    assert promoted["role"] == "team_admin" and world.published == [("user", created["id"])]


async def test_user_leaving_a_team_loses_its_keys(world):
    a_admin = await world.principal("a_admin")
    key_id, secret = world.keys["a_member2"]
    world.published.clear()
    removed = await remove_member(world.db, a_admin, world.team_a, world.users["a_member2"], events=world.events)
    assert removed["team_id"] is None
    assert ("key", hash_key(secret)) in world.published and ("user", world.users["a_member2"]) in world.published
    assert (await get_key(world.db, MASTER, key_id))["status"] == "revoked"
    # Back in: a team admin may add a user of no team, but not someone from team B.
    added = await add_member(world.db, a_admin, world.team_a, world.users["a_member2"], role="viewer")
    assert added["team_id"] == world.team_a and added["role"] == "viewer"
    with pytest.raises(GatewayError) as exc:
        await add_member(world.db, a_admin, world.team_a, world.users["b_member"])
    assert exc.value.status == 404
    with pytest.raises(GatewayError) as exc:
        await add_member(world.db, a_admin, world.team_a, world.users["root"])
    assert exc.value.status == 404  # root has no team but is an admin: not addable, and not revealed as 403
    entries = await query_audit(world.db, a_admin, AuditQuery(object_id=world.users["a_member2"]))
    assert [e["action"] for e in entries][:2] == ["team.member_add", "team.member_remove"]


async def test_a_user_joining_a_team_brings_their_team_less_keys(world):
    loner = await create_user(world.db, MASTER, UserSpec(name="loner"))
    key, secret = await create_key(world.db, MASTER, KeySpec(user_id=loner["id"]))
    assert key["team_id"] is None
    a_admin = await world.principal("a_admin")
    world.published.clear()
    await add_member(world.db, a_admin, world.team_a, loner["id"], events=world.events)
    assert (await get_key(world.db, a_admin, key["id"]))["team_id"] == world.team_a  # now in A's view
    assert ("key", hash_key(secret)) in world.published
    assert (await world.auth.authenticate(secret)).models == ("gpt-a", "shared")  # team A's limits apply


async def test_team_admin_changes_metadata_only(world):
    a_admin = await world.principal("a_admin")
    team = await update_team(world.db, a_admin, world.team_a, {"metadata": {"cost_center": "42"}})
    assert team["metadata"] == {"cost_center": "42"}
    for changes in ({"models": ["everything"]}, {"name": "renamed"}):
        with pytest.raises(GatewayError) as exc:
            await update_team(world.db, a_admin, world.team_a, changes)
        assert exc.value.status == 403
    world.published.clear()
    await update_team(world.db, MASTER, world.team_a, {"models": ["gpt-a"]}, events=world.events)
    assert world.published == [("team", world.team_a)]
    with pytest.raises(GatewayError) as exc:
        await create_team(world.db, MASTER, TeamSpec(name=team["name"]))
    assert exc.value.status == 409


async def test_deleting_a_team_revokes_its_keys_and_frees_its_users(world):
    secrets = [world.secret(n) for n in ("b_admin", "b_member", "b_service")]
    world.published.clear()
    await delete_team(world.db, MASTER, world.team_b, request_id="del-b", events=world.events)
    for secret in secrets:
        assert ("key", hash_key(secret)) in world.published
        with pytest.raises(GatewayError):
            await world.auth.authenticate(secret)
    assert ("team", world.team_b) in world.published
    assert (await get_key(world.db, MASTER, world.keys["b_service"][0]))["status"] == "revoked"
    entries = await query_audit(world.db, MASTER, AuditQuery(request_id="del-b"))
    assert {e["action"] for e in entries} == {"key.revoke", "team.member_remove", "team.delete"}


async def test_deleting_a_user_revokes_their_keys(world):
    a_admin = await world.principal("a_admin")
    secret = world.secret("a_viewer")
    await delete_user(world.db, a_admin, world.users["a_viewer"], events=world.events)
    with pytest.raises(GatewayError):
        await world.auth.authenticate(secret)
    with pytest.raises(GatewayError) as exc:
        await delete_user(world.db, a_admin, world.users["root"])
    assert exc.value.status == 404


async def test_audit_is_never_written_for_refused_changes_and_never_holds_secrets(world):
    before = len(await _audit_rows(world.db))
    a_viewer = await world.principal("a_viewer")
    with pytest.raises(GatewayError):
        await revoke_key(world.db, a_viewer, world.keys["a_member"][0])
    with pytest.raises(GatewayError):
        await create_key(world.db, a_viewer, KeySpec())
    assert len(await _audit_rows(world.db)) == before
    blob = orjson.dumps([(e.before, e.after) for e in await _audit_rows(world.db)]).decode()
    for _, secret in world.keys.values():
        assert secret not in blob and hash_key(secret) not in blob
    assert "key_hash" not in blob


async def test_anonymous_is_refused_by_every_service(world):
    with pytest.raises(GatewayError) as exc:
        await list_keys(world.db, ANONYMOUS)
    assert exc.value.status == 401 and exc.value.message == "the admin API needs a master key or an admin's key"


async def test_usage_is_scoped_to_the_caller(world):
    from sluice.admin import UsageFilter, usage_csv, usage_report

    ts = await write_ledger(world, USAGE_ROWS)
    window = {"start": ts, "end": ts + timedelta(milliseconds=1)}  # other runs' rows on PG
    everything = await usage_report(world.db, MASTER, UsageFilter(group_by="team", **window))
    assert {r["group"]: r["requests"] for r in everything["rows"]} == {world.team_a: 3, world.team_b: 2}
    assert everything["totals"]["requests"] == 5 and everything["totals"]["cost_usd"] == pytest.approx(4.75)

    a_admin = await world.principal("a_admin")
    team = await usage_report(world.db, a_admin, UsageFilter(group_by="user"))
    assert {r["group"]: r["input_tokens"] for r in team["rows"]} == {world.users["a_member"]: 15,
                                                                     world.users["a_member2"]: 7}
    assert team["totals"]["errors"] == 1
    viewer = await usage_report(world.db, await world.principal("a_viewer"), UsageFilter(group_by="model"))
    assert viewer["totals"] == team["totals"]

    member = await usage_report(world.db, await world.principal("a_member"), UsageFilter(group_by="model"))
    assert {r["group"]: r["requests"] for r in member["rows"]} == {"gpt-a": 1, "shared": 1}
    # A key id from another team matches nothing inside the caller's scope.
    other = await usage_report(world.db, a_admin, UsageFilter(group_by="key", key_id=world.keys["b_member"][0]))
    assert other["rows"] == [] and other["totals"]["requests"] == 0
    csv_text = usage_csv(team)
    assert csv_text.splitlines()[0] == "group,requests,errors,input_tokens,output_tokens,cached_tokens,cost_usd"
    assert f"{world.users['a_member']},2,1,15,2,0,0.5" in csv_text.splitlines()


async def test_usage_refuses_naming_another_tenant(world):
    from sluice.admin import UsageFilter, usage_report

    a_admin, a_member = await world.principal("a_admin"), await world.principal("a_member")
    for caller, f in ((a_admin, UsageFilter(team_id=world.team_b)),
                      (a_member, UsageFilter(user_id=world.users["a_member2"])),
                      (a_member, UsageFilter(team_id=world.team_b))):
        with pytest.raises(GatewayError) as exc:
            await usage_report(world.db, caller, f)
        assert exc.value.status == 403
    with pytest.raises(GatewayError) as exc:
        await usage_report(world.db, MASTER, UsageFilter(group_by="planet"))
    assert exc.value.status == 400
    now = datetime.now(timezone.utc)
    with pytest.raises(GatewayError) as exc:
        await usage_report(world.db, MASTER, UsageFilter(start=now, end=now - timedelta(days=1)))
    assert exc.value.status == 400
