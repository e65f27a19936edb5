"""The admin CLI as a user runs it: ``python -m sluice.cli …`` subprocesses against a real admin
API served by uvicorn on an ephemeral port (SQLite file), plus ``db upgrade`` on a fresh file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

import orjson
import pytest_asyncio
import uvicorn

from sluice.api.admin import create_admin_app

from .conftest import MASTER_KEY


@pytest_asyncio.fixture
async def server(sqlite_world):
    app = create_admin_app(sqlite_world.db, sqlite_world.auth, sqlite_world.events)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await task


async def sluice(*args: str, key: str | None = None, env: dict | None = None) -> tuple[int, str, str]:
    """Run the CLI; the key comes from the environment like an operator's shell would have it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    if key is not None:
        full_env["SLUICE_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sluice.cli", *args, env=full_env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_key_lifecycle_from_the_cli(server, sqlite_world):
    world = sqlite_world
    code, out, err = await sluice("keys", "create", "--url", server, "--team", world.team_a, "--user",
                                  world.users["a_member"], "--models", "gpt-a,shared", "--expires", "30d",
                                  "--name", "from-cli", "--tag", "cli", "--metadata", "n=3", "--json",
                                  key=MASTER_KEY)
    assert code == 0, err
    created = orjson.loads(out)
    assert created["key"].startswith("sk-slc-") and created["models"] == ["gpt-a", "shared"]
    assert created["metadata"] == {"n": 3} and created["expires_at"]
    # Tables for people; the secret is never shown again.
    code, out, _ = await sluice("keys", "list", "--url", server, "--team", world.team_a, key=MASTER_KEY)
    assert code == 0 and "from-cli" in out and created["key_prefix"] in out and created["key"] not in out
    code, out, _ = await sluice("keys", "update", created["id"], "--url", server, "--name", "renamed",
                                "--no-expiry", "--json", key=MASTER_KEY)
    assert code == 0 and orjson.loads(out)["name"] == "renamed" and orjson.loads(out)["expires_at"] is None
    code, out, err = await sluice("keys", "rotate", created["id"], "--url", server, "--grace", "1h",
                                  key=created["key"])  # a member rotates their own key with it
    assert code == 0, err
    assert "sk-slc-" in out and "only time" in err
    code, out, _ = await sluice("keys", "revoke", created["id"], "--url", server, "--json", key=MASTER_KEY)
    assert code == 0 and orjson.loads(out)["status"] == "revoked"
    code, out, _ = await sluice("audit", "--url", server, "--object-id", created["id"], "--json", key=MASTER_KEY)
    actions = [e["action"] for e in orjson.loads(out)["data"]]
    assert actions == ["key.revoke", "key.rotate", "key.update", "key.create"]
    assert created["key"] not in out


async def test_teams_users_and_usage_from_the_cli(server):
    code, out, err = await sluice("teams", "create", "cli-team", "--url", server, "--models", "m1", "--json",
                                  key=MASTER_KEY)
    assert code == 0, err
    team_id = orjson.loads(out)["id"]
    code, out, err = await sluice("users", "create", "--url", server, "--email", "cli@example.com", "--role",
                                  "member", "--team", team_id, "--json", env={"SLUICE_MASTER_KEY": MASTER_KEY})
    assert code == 0, err
    user_id = orjson.loads(out)["id"]
    code, out, _ = await sluice("teams", "members", team_id, "--url", server, key=MASTER_KEY)
    assert code == 0 and "cli@example.com" in out
    code, out, err = await sluice("usage", "--url", server, "--group-by", "team", "--csv", key=MASTER_KEY)
    assert code == 0, err
    assert out.splitlines()[0] == "group,requests,errors,input_tokens,output_tokens,cached_tokens,cost_usd"
    code, out, _ = await sluice("usage", "--url", server, "--group-by", "model", key=MASTER_KEY)
    assert code == 0 and "total" in out
    code, _, err = await sluice("users", "delete", user_id, "--yes", "--url", server, key=MASTER_KEY)
    assert code == 0 and "deleted" in err


async def test_team_a_is_refused_team_b_through_the_cli(server, sqlite_world):
    world = sqlite_world
    b_key, b = world.keys["b_member"][0], world.team_b
    attempts = [
        ("a_admin", ["keys", "get", b_key], 404),
        ("a_admin", ["keys", "revoke", b_key], 404),
        ("a_admin", ["keys", "update", b_key, "--name", "pwned"], 404),
        ("a_admin", ["keys", "create", "--team", b], 403),
        ("a_admin", ["keys", "list", "--team", b], 403),
        ("a_admin", ["teams", "members", b], 404),
        ("a_admin", ["teams", "add-member", b, world.users["a_member2"]], 404),
        ("a_admin", ["teams", "remove-member", b, world.users["b_member"]], 404),
        ("a_admin", ["users", "update", world.users["b_member"], "--name", "x"], 404),
        ("a_admin", ["usage", "--team", b], 403),
        ("a_admin", ["audit", "--team", b], 403),
        ("a_member", ["keys", "rotate", b_key], 404),
        ("a_member", ["keys", "list", "--team", b], 403),
        ("a_member", ["usage", "--team", b, "--csv"], 403),
        ("a_member", ["audit"], 403),
    ]
    results = await asyncio.gather(*(sluice(*args, "--url", server, key=world.secret(who))
                                     for who, args, _ in attempts))
    for (who, args, status), (code, out, err) in zip(attempts, results, strict=True):
        assert code == 1 and f"error {status}" in err, (who, args, code, err)
        assert out == ""
    assert (await world.auth.authenticate(world.secret("b_member"))).team_id == b


async def test_cli_errors_are_clear(server, sqlite_world):
    world = sqlite_world
    code, _, err = await sluice("keys", "list", "--url", server)
    assert code == 2 and "no API key" in err
    code, _, err = await sluice("keys", "list", "--url", server, key="wrong")
    assert code == 1 and "error 401" in err and "Invalid API key" in err
    code, _, err = await sluice("keys", "list", "--url", "http://127.0.0.1:9", key=MASTER_KEY)
    assert code == 1 and "cannot reach http://127.0.0.1:9" in err
    code, _, err = await sluice("keys", "create", "--url", server, "--team", world.team_a, "--expires", "soon",
                                key=MASTER_KEY)
    assert code == 1 and "error 400" in err and "expires_at" in err


async def test_db_upgrade_creates_the_schema(tmp_path):
    path = tmp_path / "fresh.db"
    code, _, err = await sluice("db", "upgrade", env={"SLUICE_DATABASE_URL": f"sqlite:///{path}"})
    assert code == 0, err
    assert "up to date" in err
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("select name from sqlite_master where type='table'")}
    assert {"teams", "users", "api_keys", "audit_log", "usage", "usage_daily", "alembic_version"} <= tables
    code, _, err = await sluice("db", "upgrade", "--database-url", f"sqlite:///{path}")  # idempotent
    assert code == 0, err
