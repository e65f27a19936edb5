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


async def test_limits_from_the_cli(server, sqlite_world):
    world = sqlite_world
    code, out, err = await sluice("keys", "create", "--url", server, "--user", world.users["a_member"], "--rpm", "60",
                                  "--concurrency", "2", "--model-limit", "gpt-a:rpm=10,tpm=1000",
                                  "--model-limit", "ollama:llama3:output-tpm=5", "--priority", "batch", "--json",
                                  key=world.secret("a_admin"))
    assert code == 0, err
    created = orjson.loads(out)
    assert created["limits"] == {"rpm": 60, "concurrency": 2,
                                 "models": {"gpt-a": {"rpm": 10, "tpm": 1000}, "ollama:llama3": {"output_tpm": 5}}}
    assert created["priority"] == "batch"
    # An update merges into what is there: only the options given change.
    code, out, err = await sluice("keys", "update", created["id"], "--url", server, "--tpm", "500",
                                  "--model-limit", "gpt-a:rpm=20", "--json", key=MASTER_KEY)
    assert code == 0, err
    assert orjson.loads(out)["limits"] == {"rpm": 60, "concurrency": 2, "tpm": 500,
                                           "models": {"gpt-a": {"rpm": 20}, "ollama:llama3": {"output_tpm": 5}}}
    code, out, _ = await sluice("keys", "get", created["id"], "--url", server, key=MASTER_KEY)
    assert code == 0 and "priority" in out and "batch" in out and '"gpt-a":{"rpm":20}' in out
    code, out, err = await sluice("keys", "update", created["id"], "--url", server, "--no-limits", "--rpm", "1",
                                  "--json", key=MASTER_KEY)
    assert code == 0 and orjson.loads(out)["limits"] == {"rpm": 1}, err
    # A member creates keys, but not with limits, and cannot change their key's.
    code, _, err = await sluice("keys", "create", "--url", server, "--rpm", "1000", key=world.secret("a_member"))
    assert code == 1 and "error 403" in err and "limits" in err
    code, _, err = await sluice("keys", "update", world.keys["a_member"][0], "--url", server, "--priority",
                                "interactive", key=world.secret("a_member"))
    assert code == 1 and "error 403" in err
    code, _, err = await sluice("keys", "update", created["id"], "--url", server, "--model-limit", "gpt-a:burst=5",
                                key=MASTER_KEY)
    assert code == 2 and "--model-limit expects" in err
    code, _, err = await sluice("keys", "update", created["id"], "--url", server, "--priority", "urgent",
                                key=MASTER_KEY)
    assert code == 1 and "error 400" in err and "priority" in err

    code, out, err = await sluice("teams", "update", world.team_a, "--url", server, "--rpm", "100", "--input-tpm",
                                  "9000", "--json", key=MASTER_KEY)
    assert code == 0 and orjson.loads(out)["limits"] == {"rpm": 100, "input_tpm": 9000}, err
    code, out, err = await sluice("users", "update", world.users["a_member2"], "--url", server, "--output-tpm", "70",
                                  "--json", key=MASTER_KEY)
    assert code == 0 and orjson.loads(out)["limits"] == {"output_tpm": 70}, err
    code, _, err = await sluice("users", "update", world.users["a_member2"], "--url", server, "--no-limits",
                                key=world.secret("a_admin"))
    assert code == 1 and "error 403" in err
    code, out, _ = await sluice("audit", "--url", server, "--object-id", created["id"], "--json", key=MASTER_KEY)
    assert [e["action"] for e in orjson.loads(out)["data"]] == ["key.update", "key.update", "key.create"]


async def test_budgets_from_the_cli(server, sqlite_world):
    world = sqlite_world
    key_id = world.keys["a_member"][0]
    code, out, err = await sluice("budgets", "create", "--url", server, "--scope", "key", "--subject", key_id,
                                  "--max-usd", "25", "--soft-usd", "20", "--period", "weekly", "--name", "laptop",
                                  "--json", key=world.secret("a_admin"))
    assert code == 0, err
    budget = orjson.loads(out)
    assert (budget["scope"], budget["subject"], budget["period"], budget["max_usd"], budget["soft_usd"]) == \
        ("key", key_id, "weekly", 25.0, 20.0)
    assert budget["team_id"] == world.team_a and budget["status"] is None
    code, out, _ = await sluice("budgets", "list", "--url", server, "--scope", "key", key=world.secret("a_member"))
    assert code == 0 and budget["id"] in out and "laptop" in out and "weekly" in out
    code, out, err = await sluice("budgets", "update", budget["id"], "--url", server, "--max-usd", "30",
                                  "--no-soft", "--json", key=MASTER_KEY)
    assert code == 0, err
    assert orjson.loads(out)["max_usd"] == 30 and orjson.loads(out)["soft_usd"] is None
    code, out, _ = await sluice("budgets", "get", budget["id"], "--url", server, key=MASTER_KEY)
    assert code == 0 and "30.0" in out
    code, _, err = await sluice("budgets", "create", "--url", server, "--scope", "key", "--subject", key_id,
                                "--max-usd", "5", "--period", "weekly", key=MASTER_KEY)
    assert code == 1 and "error 409" in err
    code, _, err = await sluice("budgets", "create", "--url", server, "--scope", "model", "--subject", "gpt-a",
                                "--max-usd", "5", key=world.secret("a_admin"))
    assert code == 1 and "error 403" in err
    code, _, err = await sluice("budgets", "create", "--url", server, "--scope", "key", "--subject", key_id,
                                "--max-usd", "0", key=MASTER_KEY)
    assert code == 1 and "error 400" in err and "max_usd" in err
    code, _, err = await sluice("budgets", "get", budget["id"], "--url", server, key=world.secret("b_admin"))
    assert code == 1 and "error 404" in err
    code, _, err = await sluice("budgets", "delete", budget["id"], "--url", server, "--yes",
                                key=world.secret("a_admin"))
    assert code == 0 and "deleted" in err
    code, out, _ = await sluice("audit", "--url", server, "--object-type", "budget", "--json", key=MASTER_KEY)
    assert [e["action"] for e in orjson.loads(out)["data"]] == ["budget.delete", "budget.update", "budget.create"]
