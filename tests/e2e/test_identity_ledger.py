"""Virtual keys and the usage ledger end to end: admin API → key → SDK calls → ledger rows in PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import anthropic
import openai
import pytest
from sqlalchemy import select

from sluice.config import parse_config
from sluice.observability.pricing import price_call
from sluice.server import start
from sluice.store.db import Database
from sluice.store.models import UsageRecord

from .conftest import MASTER_KEY, gateway_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


async def _admin(base: str, method: str, path: str, **kw) -> dict:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.request(method, f"{base}/admin{path}", **kw) as r:
            assert r.status < 300, await r.text()
            return await r.json() if r.status != 204 else {}


async def _new_key(base: str, **fields) -> dict:
    team = await _admin(base, "POST", "/teams", json={"name": f"team-{secrets.token_hex(3)}"})
    user = await _admin(base, "POST", "/users", json={"name": "ann", "team_id": team["id"], "role": "member"})
    return await _admin(base, "POST", "/keys", json={"user_id": user["id"], "team_id": team["id"], **fields})


async def _rows(pg_url: str, request_ids: list[str]) -> dict[str, UsageRecord]:
    db = Database(pg_url)
    try:
        for _ in range(50):  # the ledger writes in the background, every 50 ms here
            async with db.session() as s:
                rows = (await s.execute(select(UsageRecord).where(UsageRecord.request_id.in_(request_ids)))).scalars()
                found = {r.request_id: r for r in rows}
            if len(found) == len(set(request_ids)):
                return found
            await asyncio.sleep(0.1)
        return found
    finally:
        await db.close()


async def test_virtual_key_call_is_attributed_and_priced(gateway, pg_url, sdk):
    key = await _new_key(gateway.url, tags=["checkout"])
    client = sdk.openai(f"{gateway.url}/v1", key["key"])
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "price me"}], user="end-user-7")
    resp = raw.parse()
    rid = raw.headers["x-request-id"]
    row = (await _rows(pg_url, [rid]))[rid]
    assert (row.key_id, row.team_id, row.user_id) == (key["id"], key["team_id"], key["user_id"])
    assert row.end_user == "end-user-7" and row.tags == ["checkout"]
    assert (row.input_tokens, row.output_tokens) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    cost, unknown = price_call("gpt-4o-mini", row.input_tokens, row.output_tokens, row.cached_tokens, None)
    assert not unknown and cost > 0 and row.cost_usd == pytest.approx(cost)
    assert row.status == 200 and row.provider == "oai" and row.upstream_model == "gpt-4o-mini"
    assert row.model == "gpt-mock" and row.dialect == "openai" and row.attempts == 1


async def test_ledger_has_exactly_one_row_per_call(gateway, pg_url, sdk):
    """Concurrent calls — streaming, not, and failing — give one row each with the upstream's tokens."""
    key = await _new_key(gateway.url)
    oai = sdk.openai(f"{gateway.url}/v1", key["key"])
    claude = sdk.anthropic(gateway.url, key["key"])
    expected: dict[str, tuple[int, int, int]] = {}  # request id → (status, input, output)

    async def plain(i: int) -> None:
        rid = f"plain-{secrets.token_hex(4)}-{i}"
        r = await oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": f"n {i}"}],
                                              extra_headers={"x-request-id": rid})
        expected[rid] = (200, r.usage.prompt_tokens, r.usage.completion_tokens)

    async def streamed(i: int) -> None:
        rid = f"stream-{secrets.token_hex(4)}-{i}"
        async with claude.messages.stream(model="gemini-mock", max_tokens=50, extra_headers={"x-request-id": rid},
                                          messages=[{"role": "user", "content": f"s {i} words"}]) as s:
            final = await s.get_final_message()
        expected[rid] = (200, final.usage.input_tokens, final.usage.output_tokens)

    async def failing(i: int) -> None:
        rid = f"fail-{secrets.token_hex(4)}-{i}"
        with pytest.raises(openai.RateLimitError):
            await oai.chat.completions.create(model="rate-limited", messages=[{"role": "user", "content": "x"}],
                                              extra_headers={"x-request-id": rid})
        expected[rid] = (429, 0, 0)

    await asyncio.gather(*(f(i) for i in range(10) for f in (plain, streamed, failing)))
    rows = await _rows(pg_url, list(expected))
    assert len(rows) == 30
    for rid, (status, tin, tout) in expected.items():
        row = rows[rid]
        assert (row.status, row.input_tokens, row.output_tokens) == (status, tin, tout), rid
        assert row.key_id == key["id"]
    assert {r.error_type for r in rows.values() if r.status == 429} == {"rate_limit"}
    assert all(r.stream for rid, r in rows.items() if rid.startswith("stream-"))


async def test_key_model_allow_list(gateway, sdk):
    key = await _new_key(gateway.url, models=["gpt-mock"])
    oai = sdk.openai(f"{gateway.url}/v1", key["key"])
    await oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "ok"}])
    with pytest.raises(openai.PermissionDeniedError) as exc:
        await oai.chat.completions.create(model="claude-mock", messages=[{"role": "user", "content": "no"}])
    assert exc.value.body["code"] == "model_not_allowed"
    assert [m.id async for m in oai.models.list()] == ["gpt-mock"]
    claude = sdk.anthropic(gateway.url, key["key"])
    with pytest.raises(anthropic.PermissionDeniedError):
        await claude.messages.create(model="claude-mock", max_tokens=5, messages=[{"role": "user", "content": "no"}])


async def test_revoked_key_refused_on_another_instance_within_a_second(mock, pg_url, redis_url, redis_prefix,
                                                                     tmp_path, sdk):
    """Two gateways share PostgreSQL and Redis: revoking on one is seen by the other at once."""
    configs = []
    for i in range(2):
        raw = gateway_config(mock.url, pg_url, str(tmp_path / f"spill-{i}.jsonl"))
        raw["redis"] = {"url": redis_url, "prefix": redis_prefix}
        configs.append(parse_config(raw))
    a = await start(configs[0], "127.0.0.1", 0)
    b = await start(configs[1], "127.0.0.1", 0)
    try:
        key = await _new_key(a.url)
        on_b = sdk.openai(f"{b.url}/v1", key["key"], timeout=20)
        await on_b.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "warm"}])  # cached
        await _admin(a.url, "POST", f"/keys/{key['id']}/revoke")
        loop = asyncio.get_running_loop()
        revoked_at = loop.time()
        while True:
            try:
                await on_b.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "x"}])
            except openai.AuthenticationError as exc:
                assert exc.body["code"] == "key_revoked"
                break
            assert loop.time() - revoked_at < 1.0, "instance B still accepts the revoked key after 1 s"
            await asyncio.sleep(0.02)
    finally:
        await a.stop()
        await b.stop()


async def test_admin_docs_work_offline(gateway):
    """/docs is Swagger UI served from the installed package, not a CDN; /openapi.json lists the admin API."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gateway.url}/docs") as r:
            html = await r.text()
            assert r.status == 200 and "/docs/static/swagger-ui-bundle.js" in html
            assert "cdn" not in html.lower()
        async with s.get(f"{gateway.url}/docs/static/swagger-ui-bundle.js") as r:
            assert r.status == 200 and len(await r.read()) > 100_000
        async with s.get(f"{gateway.url}/openapi.json") as r:
            spec = await r.json()
            assert "/admin/keys" in spec["paths"] and "/admin/usage" in spec["paths"]


async def test_end_user_header_is_recorded(gateway, pg_url, sdk):
    key = await _new_key(gateway.url)
    client = sdk.openai(f"{gateway.url}/v1", key["key"])
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-sluice-end-user": "shopper-42", "x-sluice-tags": "web, beta"})
    rid = raw.headers["x-request-id"]
    row = (await _rows(pg_url, [rid]))[rid]
    assert row.end_user == "shopper-42" and row.tags == ["beta", "web"]


async def test_jwt_caller_through_the_gateway(mock, pg_url, tmp_path, sdk):
    """A bearer JWT signed by the identity provider is accepted and attributed; a bad one gets a clear 401."""
    import time

    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    raw = gateway_config(mock.url, pg_url, str(tmp_path / "spill.jsonl"))
    raw["auth"] = {"jwt": {"public_key": pem, "issuer": "https://idp.test", "audience": "sluice"}}
    gw = await start(parse_config(raw), "127.0.0.1", 0)
    try:
        now = int(time.time())
        claims = {"sub": "alice", "team": "team-jwt", "roles": ["member"], "iss": "https://idp.test",
                  "aud": "sluice", "iat": now, "exp": now + 300}
        token = pyjwt.encode(claims, private, algorithm="RS256")
        client = sdk.openai(f"{gw.url}/v1", token)
        raw_resp = await client.chat.completions.with_raw_response.create(
            model="gpt-mock", messages=[{"role": "user", "content": "jwt"}])
        rid = raw_resp.headers["x-request-id"]
        row = (await _rows(pg_url, [rid]))[rid]
        assert (row.user_id, row.team_id, row.key_id) == ("alice", "team-jwt", None)
        expired = pyjwt.encode({**claims, "exp": now - 600, "iat": now - 900}, private, algorithm="RS256")
        bad = sdk.openai(f"{gw.url}/v1", expired)
        with pytest.raises(openai.AuthenticationError) as exc:
            await bad.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "x"}])
        assert exc.value.body["code"] == "token_expired"
    finally:
        await gw.stop()


async def test_ledger_records_the_route_taken(gateway, pg_url, sdk):
    client = sdk.openai(f"{gateway.url}/v1", MASTER_KEY)
    cases = {
        "primary-down": ("fallback=gpt-mock", [{"role": "user", "content": "hi"}], {}),
        "auto": ("semantic=math", [{"role": "user", "content": "Solve 2x + 6 = 10 for x"}], {}),
        "gpt-mock": ("rule=free-tier", [{"role": "user", "content": "hi"}], {"x-sluice-tags": "free"}),
    }
    rids = {}
    for model, (_, messages, headers) in cases.items():
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages,
                                                                     extra_headers=headers)
        rids[model] = raw.headers["x-request-id"]
    rows = await _rows(pg_url, list(rids.values()))
    for model, (route, _, _) in cases.items():
        assert rows[rids[model]].route == route, model
        assert rows[rids[model]].model == model  # the alias the client asked for, not the one routed to


@pytest.mark.parametrize("include_usage", [False, True])
async def test_relayed_openai_stream_is_accounted_and_shaped_as_asked(gateway, pg_url, sdk, include_usage):
    """An OpenAI client streaming from an OpenAI-compatible upstream gets the upstream's events
    relayed (no re-encoding): the alias as the model, usage only when asked, and the ledger
    still has the upstream's token counts."""
    client = sdk.openai(f"{gateway.url}/v1", MASTER_KEY)
    rid = f"relay-{secrets.token_hex(4)}"
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await client.chat.completions.create(
        model="gpt-mock", stream=True, messages=[{"role": "user", "content": "relay these words"}],
        extra_headers={"x-request-id": rid}, **extra)
    chunks = [c async for c in stream]
    assert all(c.model == "gpt-mock" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: relay these words"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert (len(usage) == 1 and not chunks[-1].choices) if include_usage else not usage
    row = (await _rows(pg_url, [rid]))[rid]
    assert row.stream and row.status == 200 and row.input_tokens > 0 and row.output_tokens == 4
    if include_usage:
        assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (row.input_tokens, row.output_tokens)
