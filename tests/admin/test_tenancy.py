"""Tenant isolation and the role matrix through the admin API, on SQLite and on PostgreSQL.

A team admin, a member and a viewer of team A try to read and change team B's keys, members,
users, usage and audit entries: every attempt is refused (404 for B's objects, which A must not
learn exist; 403 for requests that name team B), nothing of B changes, and B's keys still work.
"""

from __future__ import annotations

import secrets

import httpx
import pytest
import pytest_asyncio

from sluice.api.admin import create_admin_app

from .conftest import MASTER_KEY, USAGE_ROWS, write_ledger


@pytest_asyncio.fixture
async def http(world):
    transport = httpx.ASGITransport(app=create_admin_app(world.db, world.auth, world.events))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        yield client


def as_(world, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER_KEY if name == 'master' else world.secret(name)}"}


def cross_tenant_attempts(w) -> list[tuple[str, str, dict | None, dict | None, int]]:
    """(method, path, params, json body, expected status) aimed at team B by someone of team A."""
    b_key, b_user, b = w.keys["b_member"][0], w.users["b_member"], w.team_b
    return [
        ("GET", f"/admin/keys/{b_key}", None, None, 404),
        ("GET", f"/admin/keys/{w.keys['b_service'][0]}", None, None, 404),
        ("GET", "/admin/keys", {"team_id": b}, None, 403),
        ("PATCH", f"/admin/keys/{b_key}", None, {"name": "pwned"}, 404),
        ("PATCH", f"/admin/keys/{b_key}", None, {"models": ["x"]}, 404),
        ("POST", f"/admin/keys/{b_key}/revoke", None, None, 404),
        ("POST", f"/admin/keys/{b_key}/rotate", None, {"grace": "0s"}, 404),
        ("POST", "/admin/keys", None, {"team_id": b}, 403),
        ("GET", f"/admin/teams/{b}", None, None, 404),
        ("PATCH", f"/admin/teams/{b}", None, {"metadata": {"owned": True}}, 404),
        ("DELETE", f"/admin/teams/{b}", None, None, 404),
        ("GET", f"/admin/teams/{b}/members", None, None, 404),
        ("POST", f"/admin/teams/{b}/members", None, {"user_id": w.users["a_member2"]}, 404),
        ("DELETE", f"/admin/teams/{b}/members/{b_user}", None, None, 404),
        ("GET", f"/admin/users/{b_user}", None, None, 404),
        ("GET", "/admin/users", {"team_id": b}, None, 403),
        ("PATCH", f"/admin/users/{b_user}", None, {"team_id": w.team_a}, 404),
        ("PATCH", f"/admin/users/{w.users['b_admin']}", None, {"role": "member"}, 404),
        ("DELETE", f"/admin/users/{b_user}", None, None, 404),
        ("POST", "/admin/users", None, {"email": f"spy-{secrets.token_hex(3)}@x.io", "team_id": b}, 403),
        ("GET", "/admin/usage", {"team_id": b, "group_by": "key"}, None, 403),
        ("GET", "/admin/usage.csv", {"team_id": b}, None, 403),
        ("GET", "/admin/audit", {"team_id": b}, None, 403),
    ]


@pytest.mark.parametrize("who", ["a_admin", "a_member", "a_viewer"])
async def test_team_a_cannot_read_or_change_team_b(http, world, who):
    w = world
    await write_ledger(w, USAGE_ROWS)
    audit_before = (await http.get("/admin/audit", headers=as_(w, "master"), params={"team_id": w.team_b})).json()
    for method, path, params, body, expected in cross_tenant_attempts(w):
        response = await http.request(method, path, params=params, json=body, headers=as_(w, who))
        assert response.status_code == expected, (who, method, path, response.text)
        assert response.json()["error"]["type"] in ("not_found_error", "permission_error")
        assert "beta-" not in response.text  # B's name never leaks into a refusal
    # Lists show nothing of B.
    for path in ("/admin/keys", "/admin/teams", "/admin/users"):
        listed = (await http.get(path, headers=as_(w, who))).json()["data"]
        assert all(item.get("team_id", item.get("id")) != w.team_b for item in listed), path
        assert w.team_b not in str(listed)
    usage = (await http.get("/admin/usage", headers=as_(w, who), params={"group_by": "team"})).json()
    assert [r["group"] for r in usage["rows"]] == [w.team_a]
    assert usage["totals"]["requests"] == (2 if who == "a_member" else 3)
    # B is untouched: same audit trail, same keys working, same membership.
    audit_after = (await http.get("/admin/audit", headers=as_(w, "master"), params={"team_id": w.team_b})).json()
    assert audit_after == audit_before
    for name in ("b_admin", "b_member", "b_service"):
        assert (await w.auth.authenticate(w.secret(name))).team_id == w.team_b
    member = (await http.get(f"/admin/users/{w.users['b_member']}", headers=as_(w, "master"))).json()
    assert member["team_id"] == w.team_b and member["name"] == "b_member"


async def test_team_admin_audit_view_is_their_team_only(http, world):
    w = world
    await http.patch(f"/admin/teams/{w.team_b}", headers=as_(w, "b_admin"), json={"metadata": {"b": 1}})
    await http.patch(f"/admin/teams/{w.team_a}", headers=as_(w, "a_admin"), json={"metadata": {"a": 1}})
    entries = (await http.get("/admin/audit", headers=as_(w, "a_admin"), params={"limit": 1000})).json()["data"]
    assert entries and {e["team_id"] for e in entries} == {w.team_a}
    assert "team.update" in {e["action"] for e in entries}
    for who in ("a_member", "a_viewer"):
        refused = await http.get("/admin/audit", headers=as_(w, who))
        assert refused.status_code == 403


# What each role may do inside its own team A (own = the caller's key; other = a_member2's key).
MATRIX = {
    #  operation                 master  a_admin a_member a_viewer
    "list_keys":               (200,    200,    200,     200),
    "get_other_key":           (200,    200,    404,     200),
    "get_own_key":             (200,    200,    200,     200),
    "create_own_key":          (201,    201,    201,     403),
    "update_own_key":          (200,    200,    200,     403),
    "create_team":             (201,    403,    403,     403),
    "team_models":             (200,    403,    403,     403),
    "team_metadata":           (200,    200,    403,     403),
    "list_members":            (200,    200,    200,     200),
    "create_user":             (201,    201,    403,     403),
    "grant_admin":             (200,    403,    404,     403),
    "audit":                   (200,    200,    403,     403),
    "usage":                   (200,    200,    200,     200),
    "revoke_other_key":        (200,    200,    404,     403),
}
WHO = ("master", "a_admin", "a_member", "a_viewer")


def matrix_request(w, op: str, who: str) -> tuple[str, str, dict | None]:
    own = w.keys["root" if who == "master" else who][0]
    other, a = w.keys["a_member2"][0], w.team_a
    tag = secrets.token_hex(3)
    return {
        "list_keys": ("GET", "/admin/keys", None),
        "get_other_key": ("GET", f"/admin/keys/{other}", None),
        "get_own_key": ("GET", f"/admin/keys/{own}", None),
        "create_own_key": ("POST", "/admin/keys", {"name": "mine"} if who != "master" else {"team_id": a}),
        "update_own_key": ("PATCH", f"/admin/keys/{own}", {"tags": ["t"]}),
        "create_team": ("POST", "/admin/teams", {"name": f"new-{tag}"}),
        "team_models": ("PATCH", f"/admin/teams/{a}", {"models": ["gpt-a", "shared", "more"]}),
        "team_metadata": ("PATCH", f"/admin/teams/{a}", {"metadata": {"who": who}}),
        "list_members": ("GET", f"/admin/teams/{a}/members", None),
        "create_user": ("POST", "/admin/users", {"email": f"u-{tag}@x.io", "team_id": a}),
        "grant_admin": ("PATCH", f"/admin/users/{w.users['a_member2']}", {"role": "admin"}),
        "audit": ("GET", "/admin/audit", None),
        "usage": ("GET", "/admin/usage", None),
        "revoke_other_key": ("POST", f"/admin/keys/{other}/revoke", None),
    }[op]


@pytest.mark.parametrize("who", WHO)
async def test_role_matrix(http, world, who):
    w = world
    column = WHO.index(who)
    seen = {}
    for op in MATRIX:  # ordered: the destructive operations come last
        method, path, body = matrix_request(w, op, who)
        response = await http.request(method, path, json=body, headers=as_(w, who))
        seen[op] = response.status_code
        if op == "grant_admin" and response.status_code == 200:  # undo, so the matrix stays independent
            await http.patch(path, json={"role": "member"}, headers=as_(w, "master"))
    assert seen == {op: statuses[column] for op, statuses in MATRIX.items()}


async def test_what_each_role_sees_in_lists(http, world):
    w = world
    a_keys = {w.keys[n][0] for n in ("a_admin", "a_member", "a_member2", "a_viewer")}

    async def ids(who: str, path: str) -> set[str]:
        return {item["id"] for item in (await http.get(path, headers=as_(w, who))).json()["data"]}

    assert await ids("a_admin", "/admin/keys") == a_keys
    assert await ids("a_viewer", "/admin/keys") == a_keys
    assert await ids("a_member", "/admin/keys") == {w.keys["a_member"][0]}
    a_users = {w.users[n] for n in ("a_admin", "a_member", "a_member2", "a_viewer")}
    assert await ids("a_admin", "/admin/users") == a_users
    assert await ids("a_member", "/admin/users") == {w.users["a_member"]}
    assert await ids("a_member", f"/admin/teams/{w.team_a}/members") == {w.users["a_member"]}
    assert await ids("a_viewer", "/admin/teams") == {w.team_a}
    assert await ids("b_service", "/admin/keys") == set()  # a key without a user owns no keys by itself
