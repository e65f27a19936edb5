"""Issue 5 end to end: three gateway instances share the machine's Redis and PostgreSQL, and every
limit and budget holds exactly across them — non-streamed and streamed — through the official SDKs.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from sluice.config import parse_config
from sluice.server import start
from sluice.store.db import Database
from sluice.store.models import UsageRecord
from tests.e2e.conftest import MASTER_KEY, gateway_config

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
WORDS = "one two three four five six seven eight nine ten eleven twelve"  # the mock echoes > 5 words


def limits_config(mock_url: str, pg_url: str, spill: str, redis_url: str, prefix: str, **limits) -> dict:
    raw = gateway_config(mock_url, pg_url, spill)
    raw["redis"] = {"url": redis_url, "prefix": prefix}
    raw["models"].update({
        # $0.01 per token in and out: a call's cost is large enough to see, and known exactly.
        "priced": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini", "name": "priced",
                                    "pricing": {"input_per_mtok": 10_000, "output_per_mtok": 10_000}}]},
        "slow": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+latency=400", "name": "slow"}]},
        # An upstream model of its own: the emulator's log shows what reached it.
        # A fallback that a call its own limits refused must not try.
        "ahead": {"fallbacks": ["gpt-mock"],
                  "deployments": [{"provider": "oai", "model": "gpt-4o-mini+latency=1", "name": "ahead"}]},
        # The upstream account allows 3 requests a minute: that is the alias's capacity.
        "capped": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini", "name": "capped", "rpm": 3}]},
        # Two upstream accounts behind one alias, allowing 4 and 2 requests a minute, picked at
        # random with equal weights: each must still get no more than its own limit.
        "split": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini", "name": "split-a", "rpm": 4},
                                  {"provider": "oai", "model": "gpt-4o-mini", "name": "split-b", "rpm": 2}]},
        "split-tokens": {"deployments": [
            {"provider": "oai", "model": "gpt-4o-mini", "name": "tok-a", "tpm": 120},
            {"provider": "oai", "model": "gpt-4o-mini", "name": "tok-b", "tpm": 120}]},
    })
    raw["limits"] = {"queue": {"max_wait": 0.3}, **limits}
    return raw


@pytest_asyncio.fixture(scope="module")
async def fleet(mock, pg_url, redis_url, redis_prefix, tmp_path_factory):
    prefix = f"{redis_prefix}:lim{secrets.token_hex(3)}"
    spill = tmp_path_factory.mktemp("limits")
    gateways = []
    for i in range(3):
        cfg = limits_config(mock.url, pg_url, str(spill / f"spill-{i}.jsonl"), redis_url, prefix)
        gateways.append(await start(parse_config(cfg), "127.0.0.1", 0))
    yield gateways
    for g in gateways:
        await g.stop()


async def admin(base: str, method: str, path: str, **kw) -> dict:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.request(method, f"{base}/admin{path}", **kw) as r:
            assert r.status < 300, await r.text()
            return await r.json() if r.status != 204 else {}


def clients(sdk, fleet, secret: str) -> list[openai.AsyncOpenAI]:
    return [sdk.openai(f"{g.url}/v1", secret, timeout=30) for g in fleet]


async def chat(client: openai.AsyncOpenAI, model: str = "gpt-mock", stream: bool = False, max_tokens: int = 5):
    """(ok, usage or error code)."""
    messages = [{"role": "user", "content": WORDS}]
    try:
        if stream:
            s = await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                     stream=True, stream_options={"include_usage": True})
            usage = None
            async for chunk in s:
                usage = chunk.usage or usage
            return True, usage
        resp = await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
        return True, resp.usage
    except openai.RateLimitError as exc:
        return False, exc.body["code"]


async def fire(sdk, fleet, secret: str, n: int, **kw) -> list[tuple[bool, object]]:
    spread = itertools.cycle(clients(sdk, fleet, secret))
    return await asyncio.gather(*(chat(next(spread), stream=bool(i % 2), **kw) for i in range(n)))


async def test_requests_per_minute_hold_exactly_across_three_instances(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "rpm", "limits": {"rpm": 20}})
    results = await fire(sdk, fleet, key["key"], 60)
    assert sum(ok for ok, _ in results) == 20
    assert {code for ok, code in results if not ok} == {"rate_limit_exceeded"}


async def test_output_tokens_per_minute_hold_exactly_streamed_and_not(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "otpm", "limits": {"output_tpm": 50}})
    results = await fire(sdk, fleet, key["key"], 30, max_tokens=5)  # each call reserves and uses 5
    assert sum(ok for ok, _ in results) == 10
    assert all(usage.completion_tokens == 5 for ok, usage in results if ok)


async def test_tokens_per_minute_are_never_exceeded(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "tpm", "limits": {"tpm": 200}})
    results = await fire(sdk, fleet, key["key"], 40, max_tokens=5)
    used = sum(usage.total_tokens for ok, usage in results if ok)
    assert 0 < used <= 200
    assert any(not ok for ok, _ in results)


async def test_concurrency_holds_exactly_and_is_given_back(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "cc", "limits": {"concurrency": 3}})
    spread = itertools.cycle(clients(sdk, fleet, key["key"]))
    results = await asyncio.gather(*(chat(next(spread), model="slow", stream=bool(i % 2)) for i in range(15)))
    assert sum(ok for ok, _ in results) == 3
    await asyncio.sleep(0.2)  # settles run after the answers
    again = await asyncio.gather(*(chat(next(spread), model="slow") for _ in range(3)))
    assert all(ok for ok, _ in again)


async def test_a_call_refused_with_its_admission_sent_ahead_never_reaches_the_upstream(
        fleet, sdk, upstream_log, pg_url):
    """With limits in Redis, a call's reservation leaves before the call is routed and is awaited
    just before the upstream request would leave. A refused call must still never be sent (streamed
    or not), its ledger row names no deployment, and a call over its limits to a model that does
    not exist gets the limits' 429, as when limits were awaited first."""
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "ahead", "limits": {"rpm": 4}})
    client = sdk.openai(f"{fleet[0].url}/v1", key["key"], timeout=30)
    results = [await chat(client, model="ahead", stream=i % 2 == 1) for i in range(7)]
    assert [ok for ok, _ in results] == [True] * 4 + [False] * 3
    assert {code for ok, code in results if not ok} == {"rate_limit_exceeded"}
    assert len(await upstream_log("gpt-4o-mini+latency=1")) == 4

    other = await admin(fleet[0].url, "POST", "/keys", json={"name": "ahead-404", "limits": {"rpm": 1}})
    client = sdk.openai(f"{fleet[0].url}/v1", other["key"], timeout=30)
    with pytest.raises(openai.NotFoundError):  # within its limits: the model is unknown
        await chat(client, model="no-such-model")
    assert await chat(client, model="no-such-model", stream=True) == (False, "rate_limit_exceeded")  # over them

    await asyncio.sleep(1.0)  # the ledgers flush
    db = Database(pg_url)
    try:
        async with db.session() as s:
            rows = (await s.execute(select(UsageRecord.status, UsageRecord.deployment, UsageRecord.attempts,
                                           UsageRecord.fallback).where(UsageRecord.key_id == key["id"]))).all()
    finally:
        await db.close()
    assert sorted(rows, key=lambda r: r[0]) == [(200, "ahead", 1, False)] * 4 + [(429, None, 0, False)] * 3


async def _spent(pg_url: str, key_id: str) -> tuple[float, int]:
    db = Database(pg_url)
    try:
        async with db.session() as s:
            row = (await s.execute(select(func.coalesce(func.sum(UsageRecord.cost_usd), 0.0), func.count())
                                   .where(UsageRecord.key_id == key_id))).one()
            return float(row[0]), int(row[1])
    finally:
        await db.close()


async def test_a_budget_is_never_overspent_under_concurrency(fleet, pg_url, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "budgeted"})
    budget = await admin(fleet[0].url, "POST", "/budgets",
                         json={"scope": "key", "subject": key["id"], "period": "daily", "max_usd": 1.5})
    await asyncio.sleep(0.3)  # the change reaches every instance over Redis
    results = await fire(sdk, fleet, key["key"], 40, model="priced", max_tokens=5)
    passed = sum(ok for ok, _ in results)
    refused = {code for ok, code in results if not ok}
    assert passed > 0 and refused == {"budget_exceeded"}
    await asyncio.sleep(1.0)  # the ledgers flush
    spent, rows = await _spent(pg_url, key["id"])
    assert rows == 40  # refused calls are in the ledger too
    assert 0 < spent <= 1.5
    status = (await admin(fleet[1].url, "GET", f"/budgets/{budget['id']}"))["status"]
    assert status["spent_usd"] == pytest.approx(spent, abs=0.02)
    assert status["remaining_usd"] == pytest.approx(1.5 - spent, abs=0.02)


async def test_budget_refusal_in_the_anthropic_dialect(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "tiny-budget"})
    await admin(fleet[0].url, "POST", "/budgets",
                json={"scope": "key", "subject": key["id"], "period": "monthly", "max_usd": 0.0001})
    await asyncio.sleep(0.3)
    claude = sdk.anthropic(fleet[2].url, key["key"])
    with pytest.raises(anthropic.RateLimitError) as refused:
        await claude.messages.create(model="priced", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "monthly budget" in refused.value.message and "resets at" in refused.value.message
    assert refused.value.response.headers.get("retry-after")


async def test_rate_limit_headers_and_key_status(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "hdr", "limits": {"rpm": 10, "tpm": 1000}})
    client = clients(sdk, fleet, key["key"])[1]
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hello"}], max_tokens=5)
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "10" and h["x-ratelimit-remaining-requests"] == "9"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "1000" and int(h["x-ratelimit-remaining-tokens"]) < 1000
    await asyncio.sleep(0.2)
    status = (await admin(fleet[2].url, "GET", f"/keys/{key['id']}"))["limits_status"]
    assert status["limits"]["rpm"]["used"] == 1 and status["limits"]["rpm"]["remaining"] == 9
    assert 0 < status["limits"]["tpm"]["used"] < 100  # settled to the real usage


async def test_capacity_queue_waits_then_refuses_with_retry_after(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "cap"})
    spread = itertools.cycle(clients(sdk, fleet, key["key"]))
    results = await asyncio.gather(*(chat(next(spread), model="capped") for _ in range(5)))
    assert sum(ok for ok, _ in results) == 3
    assert {code for ok, code in results if not ok} == {"rate_limit_exceeded"}


async def test_a_stream_the_client_leaves_settles_to_what_was_sent(fleet, sdk):
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "leaver", "limits": {"tpm": 100_000}})
    client = clients(sdk, fleet, key["key"])[0]
    stream = await client.chat.completions.create(model="slow-stream", messages=[{"role": "user", "content": WORDS}],
                                                  max_tokens=1000, stream=True)
    async for _chunk in stream:
        break  # the first chunk arrived; the client goes away
    await stream.close()
    for _ in range(50):
        await asyncio.sleep(0.1)
        used = (await admin(fleet[1].url, "GET", f"/keys/{key['id']}"))["limits_status"]["limits"]["tpm"]["used"]
        if used < 1000:
            break
    assert 0 < used < 100  # the prompt and what was streamed, not the 1000 reserved for the answer


async def _deployment_of(base: str, secret: str, model: str, stream: bool) -> str | int:
    """The deployment that answered (x-sluice-deployment), or the HTTP status of a refusal."""
    body = {"model": model, "messages": [{"role": "user", "content": WORDS}], "max_tokens": 5, "stream": stream}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as s:
        async with s.post(f"{base}/v1/chat/completions", json=body) as r:
            await r.read()
            return r.headers["x-sluice-deployment"] if r.status == 200 else r.status


async def test_each_deployment_gets_exactly_its_own_requests_per_minute(fleet):
    """Per deployment, not only per alias: 4 + 2 a minute across three instances, whatever the
    weighted random pick would have sent where."""
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "split"})
    bases = itertools.cycle([g.url for g in fleet])
    answers = await asyncio.gather(*(_deployment_of(next(bases), key["key"], "split", bool(i % 2))
                                     for i in range(14)))
    assert answers.count("split-a") == 4 and answers.count("split-b") == 2
    assert set(answers) == {"split-a", "split-b", 429}


async def test_each_deployment_gets_no_more_than_its_own_tokens_per_minute(fleet, pg_url):
    """tpm per deployment: reserved before each attempt (prompt + max_tokens), settled to the
    usage reported, so the ledger never shows a deployment over its 120 tokens a minute."""
    key = await admin(fleet[0].url, "POST", "/keys", json={"name": "split-tokens"})
    bases = itertools.cycle([g.url for g in fleet])
    answers = await asyncio.gather(*(_deployment_of(next(bases), key["key"], "split-tokens", bool(i % 2))
                                     for i in range(24)))
    assert {"tok-a", "tok-b"} <= set(answers) and 429 in answers
    await asyncio.sleep(1.0)  # the ledger's batches
    db = Database(pg_url)
    try:
        async with db.session() as session:
            rows = (await session.execute(
                select(UsageRecord.deployment, func.sum(UsageRecord.input_tokens + UsageRecord.output_tokens))
                .where(UsageRecord.key_id == key["id"], UsageRecord.status == 200)
                .group_by(UsageRecord.deployment))).all()
    finally:
        await db.close()
    used = dict(rows)
    assert set(used) == {"tok-a", "tok-b"} and all(0 < tokens <= 120 for tokens in used.values()), used
