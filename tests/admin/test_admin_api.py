"""The admin API over HTTP (in-process ASGI): CRUD, secrets shown once, audit, errors, OpenAPI."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sluice.api.admin import admin_routes, create_admin_app
from sluice.api.middleware import RequestContext
from sluice.policies.auth import Authenticator
from sluice.schema import GatewayError
from sluice.store.secrets import hash_key

from .conftest import MASTER_KEY, USAGE_ROWS, write_ledger


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin.test")


@pytest_asyncio.fixture
async def api(world):
    async with _client(create_admin_app(world.db, world.auth, world.events)) as client:
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


MASTER_H = bearer(MASTER_KEY)


async def test_key_crud_and_the_secret_appears_once(api, world):
    created = await api.post("/admin/keys", headers={**MASTER_H, "x-request-id": "rid-create"},
                             json={"name": "ci", "user_id": world.users["a_member"], "models": ["gpt-a"],
                                   "tags": ["ci"], "metadata": {"repo": "x"}, "duration": "7d"})
    assert created.status_code == 201, created.text
    body = created.json()
    secret, key_id = body["key"], body["id"]
    assert secret.startswith("sk-slc-") and body["team_id"] == world.team_a and body["status"] == "active"
    assert created.headers["x-request-id"] == "rid-create"

    listed = await api.get("/admin/keys", headers=MASTER_H, params={"team_id": world.team_a})
    got = await api.get(f"/admin/keys/{key_id}", headers=MASTER_H)
    patched = await api.patch(f"/admin/keys/{key_id}", headers=MASTER_H, json={"name": "ci-2", "expires_at": None})
    revoked = await api.post(f"/admin/keys/{key_id}/revoke", headers=MASTER_H)
    audit = await api.get("/admin/audit", headers=MASTER_H, params={"object_id": key_id})
    assert [r.status_code for r in (listed, got, patched, revoked, audit)] == [200] * 5
    assert key_id in {k["id"] for k in listed.json()["data"]}
    assert patched.json()["name"] == "ci-2" and patched.json()["expires_at"] is None
    assert revoked.json()["status"] == "revoked"
    for response in (listed, got, patched, revoked, audit):
        assert secret not in response.text and hash_key(secret) not in response.text
        assert '"key":' not in response.text
    actions = [(e["action"], e["request_id"]) for e in audit.json()["data"]]
    assert actions[-1] == ("key.create", "rid-create") and [a for a, _ in actions] == \
        ["key.revoke", "key.update", "key.create"]
    assert audit.json()["data"][1]["before"]["name"] == "ci" and audit.json()["data"][1]["after"]["name"] == "ci-2"
    with pytest.raises(GatewayError) as exc:
        await world.auth.authenticate(secret)
    assert exc.value.code == "key_revoked"


async def test_rotate_returns_a_new_secret_once(api, world):
    key_id, old_secret = world.keys["a_member"]
    rotated = await api.post(f"/admin/keys/{key_id}/rotate", headers=bearer(old_secret), json={"grace": "1h"})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["rotated_from"] == key_id and new["key"] != old_secret
    whoami = await api.get("/admin/whoami", headers=bearer(new["key"]))
    assert whoami.json()["key_id"] == new["id"] and whoami.json()["role"] == "member"
    old = (await api.get(f"/admin/keys/{key_id}", headers=MASTER_H)).json()
    assert old["status"] == "active" and old["expires_at"] is not None
    bad = await api.post(f"/admin/keys/{key_id}/rotate", headers=MASTER_H, json={"grace": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_teams_members_and_users_crud(api, world):
    team = await api.post("/admin/teams", headers=MASTER_H, json={"name": "gamma-api", "models": ["m1"]})
    assert team.status_code == 201
    team_id = team.json()["id"]
    user = await api.post("/admin/users", headers=MASTER_H,
                          json={"email": "g@example.com", "name": "G", "role": "member"})
    assert user.status_code == 201 and user.json()["team_id"] is None
    user_id = user.json()["id"]
    added = await api.post(f"/admin/teams/{team_id}/members", headers=MASTER_H,
                           json={"user_id": user_id, "role": "team_admin"})
    assert added.status_code == 200 and added.json()["team_id"] == team_id and added.json()["role"] == "team_admin"
    members = await api.get(f"/admin/teams/{team_id}/members", headers=MASTER_H)
    assert [m["id"] for m in members.json()["data"]] == [user_id]
    renamed = await api.patch(f"/admin/users/{user_id}", headers=MASTER_H, json={"name": "Gee"})
    assert renamed.json()["name"] == "Gee"
    dup = await api.post("/admin/teams", headers=MASTER_H, json={"name": "gamma-api"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
    removed = await api.delete(f"/admin/teams/{team_id}/members/{user_id}", headers=MASTER_H)
    assert removed.status_code == 200 and removed.json()["team_id"] is None
    assert (await api.delete(f"/admin/users/{user_id}", headers=MASTER_H)).status_code == 204
    assert (await api.get(f"/admin/users/{user_id}", headers=MASTER_H)).status_code == 404
    assert (await api.delete(f"/admin/teams/{team_id}", headers=MASTER_H)).status_code == 204
    gone = await api.get(f"/admin/teams/{team_id}", headers=MASTER_H)
    assert gone.status_code == 404 and gone.json() == {"error": {
        "message": f"team {team_id!r} not found.", "type": "not_found_error", "code": "team_not_found"}}
    teams = (await api.get("/admin/teams", headers=MASTER_H)).json()["data"]
    assert {world.team_a, world.team_b} <= {t["id"] for t in teams} and team_id not in {t["id"] for t in teams}


async def test_the_admin_api_refuses_anonymous_and_bad_credentials(world):
    open_app = create_admin_app(world.db, Authenticator(None), world.events)
    async with _client(open_app) as api:
        response = await api.get("/admin/keys")
    assert response.status_code == 401
    assert response.json()["error"] == {"message": "the admin API needs a master key or an admin's key",
                                         "type": "authentication_error", "code": "admin_auth_required"}
    async with _client(create_admin_app(world.db, world.auth, world.events)) as api:
        missing = await api.get("/admin/keys", headers={"x-request-id": "rid-401"})
        wrong = await api.get("/admin/keys", headers=bearer("sk-slc-" + "A" * 43))
    assert missing.status_code == 401 and missing.headers["x-request-id"] == "rid-401"
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


async def test_errors_are_json_with_the_right_status(api, world):
    invalid = await api.post("/admin/keys", headers=MASTER_H, json={"name": "x", "modles": ["typo"]})
    assert invalid.status_code == 400 and invalid.json()["error"]["type"] == "invalid_request_error"
    assert "modles" in invalid.json()["error"]["message"]
    unknown = await api.get("/admin/nothing-here", headers=MASTER_H)
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    viewer = await api.post(f"/admin/keys/{world.keys['a_member'][0]}/revoke",
                            headers=bearer(world.secret("a_viewer")))
    assert viewer.status_code == 403 and viewer.json()["error"] == {
        "message": "a viewer cannot change keys", "type": "permission_error", "code": "forbidden"}
    generated = viewer.headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0


async def test_usage_json_and_csv(api, world):
    ts = await write_ledger(world, USAGE_ROWS)
    window = {"start": ts.isoformat(), "end": (ts + timedelta(milliseconds=1)).isoformat()}
    report = await api.get("/admin/usage", headers=bearer(world.secret("a_admin")), params={"group_by": "model"})
    assert report.status_code == 200, report.text
    assert {r["group"]: r["requests"] for r in report.json()["rows"]} == {"gpt-a": 2, "shared": 1}
    assert report.json()["totals"]["input_tokens"] == 22
    by_day = await api.get("/admin/usage", headers=MASTER_H, params={"group_by": "day", **window})
    assert len(by_day.json()["rows"]) in (1, 2) and by_day.json()["totals"]["requests"] == 5
    for response in (await api.get("/admin/usage.csv", headers=MASTER_H, params={"group_by": "tag", **window}),
                     await api.get("/admin/usage", headers=MASTER_H, params={"group_by": "tag", "format": "csv",
                                                                              **window})):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        lines = response.text.splitlines()
        assert lines[0].startswith("group,requests,errors") and "batch,1,0,50,1,0,1.0" in lines
    assert (await api.get("/admin/usage", headers=MASTER_H, params={"start": "2025-13-01"})).status_code == 400


async def test_openapi_and_docs(api):
    spec = (await api.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/admin/keys", "/admin/keys/{key_id}/rotate", "/admin/teams/{team_id}/members", "/admin/users",
                 "/admin/audit", "/admin/usage", "/admin/usage.csv"):
        assert path in paths
    assert "key" in spec["components"]["schemas"]["KeyWithSecret"]["properties"]
    assert "key" not in spec["components"]["schemas"]["KeyOut"]["properties"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


async def test_mounted_in_the_gateway_app_keeps_paths_and_one_request_id(world):
    async def hello(request):
        return PlainTextResponse("gateway")

    admin_app = create_admin_app(world.db, world.auth, world.events)
    app = RequestContext(Starlette(routes=[Route("/v1/hello", hello), *admin_routes(admin_app)]),
                         access_log_enabled=False)
    async with _client(app) as client:
        keys = await client.get("/admin/keys", headers={**MASTER_H, "x-request-id": "outer-1"})
        created = await client.post("/admin/teams", headers={**MASTER_H, "x-request-id": "outer-2"},
                                    json={"name": "mounted"})
        hello_response = await client.get("/v1/hello")
        docs = await client.get("/openapi.json")
    assert keys.status_code == 200 and keys.headers.get_list("x-request-id") == ["outer-1"]
    assert created.status_code == 201
    assert hello_response.text == "gateway" and docs.status_code == 200
    entries = (await client_audit(world, created.json()["id"]))
    assert entries[0]["request_id"] == "outer-2"


async def client_audit(world, object_id: str) -> list[dict]:
    from sluice.admin import AuditQuery, query_audit
    from sluice.policies.auth import MASTER

    return await query_audit(world.db, MASTER, AuditQuery(object_id=object_id))


async def test_an_unexpected_failure_is_a_json_500_with_the_request_id(tmp_path):
    from sluice.store.db import Database

    broken = Database(f"sqlite:///{tmp_path}/no-such-dir/x.db")  # no tables, no directory: every query fails
    async with _client(create_admin_app(broken, Authenticator(MASTER_KEY), None)) as api:
        response = await api.get("/admin/keys", headers={**MASTER_H, "x-request-id": "rid-500"})
    await broken.close()
    assert response.status_code == 500 and response.headers["x-request-id"] == "rid-500"
    assert response.json() == {"error": {"message": "Internal error.", "type": "server_error", "code": None}}
