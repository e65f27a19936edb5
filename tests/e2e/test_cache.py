"""Issue 7 end to end: the exact response cache through the official SDKs — hits and misses, tenant
isolation, streamed replay in both dialects, TTL, Cache-Control, the ledger, and two instances
sharing entries through Redis."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from sluice.config import parse_config
from sluice.server import start
from sluice.store.db import Database
from sluice.store.models import UsageRecord
from tests.e2e.conftest import MASTER_KEY, gateway_config

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def cache_config(mock_url: str, pg_url: str, spill: str, **extra) -> dict:
    raw = gateway_config(mock_url, pg_url, spill)
    raw["models"]["priced"] = {"deployments": [{"provider": "oai", "model": "gpt-4o-mini", "name": "priced",
                                                "pricing": {"input_per_mtok": 10_000, "output_per_mtok": 10_000}}]}
    raw["cache"] = {"enabled": True}
    raw.update(extra)
    return raw


@pytest_asyncio.fixture(scope="module")
async def cached(mock, pg_url, tmp_path_factory):
    spill = str(tmp_path_factory.mktemp("cache") / "spill.jsonl")
    gw = await start(parse_config(cache_config(mock.url, pg_url, spill)), "127.0.0.1", 0)
    yield gw
    await gw.stop()


async def admin(base: str, method: str, path: str, **kw) -> dict:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.request(method, f"{base}/admin{path}", **kw) as r:
            assert r.status < 300, await r.text()
            return await r.json() if r.status != 204 else {}


def unique(text: str = "cache me") -> list[dict]:
    return [{"role": "user", "content": f"{text} {secrets.token_hex(4)}"}]


async def ask(client, messages, **kw):
    raw = await client.chat.completions.with_raw_response.create(model=kw.pop("model", "gpt-mock"),
                                                                  messages=messages, temperature=0, **kw)
    return raw.headers.get("x-sluice-cache"), raw.parse()


async def test_second_identical_request_is_a_hit_and_skips_the_upstream(cached, sdk, upstream_log):
    client = sdk.openai(f"{cached.url}/v1", MASTER_KEY)
    messages = unique()
    first_state, first = await ask(client, messages)
    second_state, second = await ask(client, messages)
    assert (first_state, second_state) == ("miss", "hit")
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage.completion_tokens == first.usage.completion_tokens
    assert len(await upstream_log("gpt-4o-mini")) == 1


async def test_only_deterministic_requests_are_cached(cached, sdk):
    client = sdk.openai(f"{cached.url}/v1", MASTER_KEY)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-mock", messages=unique(),
                                                                  temperature=0.7)
    assert raw.headers.get("x-sluice-cache") is None


async def test_a_team_never_gets_another_teams_answer(cached, sdk, upstream_log):
    keys = []
    for name in ("cache-team-a", "cache-team-b"):
        team = await admin(cached.url, "POST", "/teams", json={"name": f"{name}-{secrets.token_hex(3)}"})
        keys.append((await admin(cached.url, "POST", "/keys", json={"name": name, "team_id": team["id"]}))["key"])
    messages = unique("team secret")
    a, b = (sdk.openai(f"{cached.url}/v1", k) for k in keys)
    assert (await ask(a, messages))[0] == "miss"
    assert (await ask(a, messages))[0] == "hit"
    assert (await ask(b, messages))[0] == "miss"  # same request, other team: its own entry
    assert len(await upstream_log("gpt-4o-mini")) == 2


async def test_a_streamed_answer_is_stored_and_replayed_as_a_valid_stream(cached, sdk):
    client = sdk.openai(f"{cached.url}/v1", MASTER_KEY)
    messages = unique("stream me please")

    async def streamed() -> tuple[str | None, str, object]:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-mock", messages=messages, temperature=0, stream=True, stream_options={"include_usage": True})
        text, usage = [], None
        async for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        return raw.headers.get("x-sluice-cache"), "".join(text), usage

    state1, text1, usage1 = await streamed()
    await asyncio.sleep(0.1)  # stored when the stream completed, off the response path
    state2, text2, usage2 = await streamed()
    assert (state1, state2) == ("miss", "hit")
    assert text2 == text1 and text1.startswith("Echo:")
    assert usage2.completion_tokens == usage1.completion_tokens
    state3, plain = await ask(client, messages)  # a non-streaming client gets the assembled answer
    assert state3 == "hit" and plain.choices[0].message.content == text1


async def test_an_anthropic_client_replays_a_cached_stream(cached, sdk):
    claude = sdk.anthropic(cached.url, MASTER_KEY)
    messages = unique("claude cache")
    first = await claude.messages.create(model="claude-mock", max_tokens=50, messages=messages,
                                        extra_body={"temperature": 0})
    await asyncio.sleep(0.1)
    async with claude.messages.stream(model="claude-mock", max_tokens=50, messages=messages,
                                      extra_body={"temperature": 0}) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == first.content[0].text
    assert final.stop_reason == first.stop_reason


async def test_ttl_header_and_cache_control(cached, sdk):
    client = sdk.openai(f"{cached.url}/v1", MASTER_KEY)
    short = unique("short lived")
    await ask(client, short, extra_headers={"x-sluice-cache-ttl": "1"})
    assert (await ask(client, short))[0] == "hit"
    await asyncio.sleep(1.2)
    assert (await ask(client, short))[0] == "miss"  # expired (and stored again with the default TTL)

    never = unique("never stored")
    await ask(client, never, extra_headers={"cache-control": "no-store"})
    assert (await ask(client, never))[0] == "miss"

    fresh = unique("fresh please")
    await ask(client, fresh)
    assert (await ask(client, fresh, extra_headers={"cache-control": "no-cache"}))[0] == "miss"
    assert (await ask(client, fresh))[0] == "hit"


async def test_the_ledger_records_hits_with_the_cost_saved(cached, sdk, pg_url):
    key = await admin(cached.url, "POST", "/keys", json={"name": "ledger-cache"})
    client = sdk.openai(f"{cached.url}/v1", key["key"])
    messages = unique("what did it cost")
    await ask(client, messages, model="priced")
    await ask(client, messages, model="priced")
    await asyncio.sleep(0.5)
    db = Database(pg_url)
    try:
        async with db.session() as s:
            rows = (await s.execute(select(UsageRecord).where(UsageRecord.key_id == key["id"])
                                    .order_by(UsageRecord.ts))).scalars().all()
    finally:
        await db.close()
    assert [r.cache_hit for r in rows] == [False, True]
    miss, hit = rows
    assert miss.cost_usd > 0 and hit.cost_usd == 0 and hit.input_tokens == 0
    assert hit.cost_saved_usd == pytest.approx(miss.cost_usd)


async def test_two_instances_share_hits_through_redis(mock, pg_url, redis_url, redis_prefix, tmp_path, sdk,
                                                      upstream_log):
    gateways = []
    for i in range(2):
        raw = cache_config(mock.url, pg_url, str(tmp_path / f"spill-{i}.jsonl"),
                           redis={"url": redis_url, "prefix": f"{redis_prefix}:cache{i // 2}"})
        gateways.append(await start(parse_config(raw), "127.0.0.1", 0))
    try:
        a, b = (sdk.openai(f"{g.url}/v1", MASTER_KEY) for g in gateways)
        messages = unique("shared")
        assert (await ask(a, messages))[0] == "miss"
        await asyncio.sleep(0.1)
        state, answer = await ask(b, messages)
        assert state == "hit" and answer.choices[0].message.content.startswith("Echo: shared")
        assert len(await upstream_log("gpt-4o-mini")) == 1
    finally:
        for g in gateways:
            await g.stop()


async def test_admin_cache_report_and_purge(cached, sdk):
    client = sdk.openai(f"{cached.url}/v1", MASTER_KEY)
    messages = unique("purge me")
    await ask(client, messages, model="priced")
    assert (await ask(client, messages, model="priced"))[0] == "hit"
    await asyncio.sleep(0.5)
    report = await admin(cached.url, "GET", "/cache")
    priced = next(r for r in report["models"] if r["model"] == "priced")
    assert priced["hits"] >= 1 and priced["cost_saved_usd"] > 0 and 0 < priced["hit_rate"] <= 1
    assert report["enabled"] and report["entries"] >= 1
    assert (await admin(cached.url, "DELETE", "/cache", params={"model": "priced"}))["removed"] >= 1
    assert (await ask(client, messages, model="priced"))[0] == "miss"
    audit = await admin(cached.url, "GET", "/audit", params={"action": "cache.purge"})
    assert audit["data"] and audit["data"][0]["after"]["model"] == "priced"


@pytest_asyncio.fixture(scope="module")
async def semantic(mock, pg_url, tmp_path_factory):
    spill = str(tmp_path_factory.mktemp("semcache") / "spill.jsonl")
    raw = cache_config(mock.url, pg_url, spill)
    raw["cache"]["semantic"] = {"enabled": True}
    gw = await start(parse_config(raw), "127.0.0.1", 0)
    yield gw
    await gw.stop()


async def test_a_paraphrase_is_a_semantic_hit_and_a_different_ask_is_not(semantic, sdk, upstream_log):
    client = sdk.openai(f"{semantic.url}/v1", MASTER_KEY)
    tag = secrets.token_hex(3)  # a fresh system prompt: a scope of its own for this test
    system = {"role": "system", "content": f"You are a helpful assistant #{tag}."}
    first_state, first = await ask(client, [system, {"role": "user", "content": "How do I reverse a list in Python?"}])
    await asyncio.sleep(0.2)  # stored and indexed off the response path
    state, again = await ask(client, [system, {"role": "user", "content": "how can i reverse a python list"}])
    assert (first_state, state) == ("miss", "semantic-hit")
    assert again.choices[0].message.content == first.choices[0].message.content
    other, _ = await ask(client, [system, {"role": "user", "content": "How do I sort a list in Python?"}])
    swapped, _ = await ask(client, [system, {"role": "user", "content": "Convert 10 kilometers to miles"}])
    assert (other, swapped) == ("miss", "miss")
    # Another system prompt is another scope: the same paraphrase does not hit there.
    elsewhere = {"role": "system", "content": f"You answer in French #{tag}."}
    assert (await ask(client, [elsewhere, {"role": "user", "content": "how can i reverse a python list"}]))[0] == "miss"


async def test_semantic_hits_stay_within_a_team(semantic, sdk):
    keys = []
    for name in ("sem-a", "sem-b"):
        team = await admin(semantic.url, "POST", "/teams", json={"name": f"{name}-{secrets.token_hex(3)}"})
        keys.append((await admin(semantic.url, "POST", "/keys", json={"name": name, "team_id": team["id"]}))["key"])
    a, b = (sdk.openai(f"{semantic.url}/v1", k) for k in keys)
    await ask(a, [{"role": "user", "content": "What is the capital of France?"}])
    await asyncio.sleep(0.2)
    assert (await ask(a, [{"role": "user", "content": "what's the capital of france"}]))[0] == "semantic-hit"
    assert (await ask(b, [{"role": "user", "content": "what's the capital of france"}]))[0] == "miss"


async def test_two_instances_share_semantic_hits_through_redis(mock, pg_url, redis_url, redis_prefix, tmp_path,
                                                               sdk):
    prefix = f"{redis_prefix}:sem{secrets.token_hex(3)}"
    gateways = []
    for i in range(2):
        raw = cache_config(mock.url, pg_url, str(tmp_path / f"spill-{i}.jsonl"), redis={"url": redis_url,
                                                                                           "prefix": prefix})
        raw["cache"]["semantic"] = {"enabled": True}
        gateways.append(await start(parse_config(raw), "127.0.0.1", 0))
    try:
        a, b = (sdk.openai(f"{g.url}/v1", MASTER_KEY) for g in gateways)
        system = {"role": "system", "content": f"shared #{secrets.token_hex(3)}"}
        await ask(a, [system, {"role": "user", "content": "How do I reverse a list in Python?"}])
        for _ in range(30):  # B follows A's additions through the Redis stream
            await asyncio.sleep(0.1)
            state, _ = await ask(b, [system, {"role": "user", "content": "how can i reverse a python list"}],
                                 extra_headers={"x-sluice-cache-ttl": "0"})  # look up, never store: no own entry
            if state == "semantic-hit":
                break
        assert state == "semantic-hit"
    finally:
        for g in gateways:
            await g.stop()
        import redis.asyncio as aioredis
        client = aioredis.from_url(redis_url)
        async for key in client.scan_iter(match=f"{{{prefix}*", count=500):
            await client.delete(key)
        await client.aclose()
