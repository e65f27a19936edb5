"""Issue 5 on a single gateway with the in-process limiter (no Redis: the embedded default),
through the official SDK: the gateway reserves without awaiting (``Limits.admit_now``), and falls
back to ``Limits.admit`` when the call must queue for the model's capacity."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest
import pytest_asyncio

from sluice.config import parse_config
from sluice.server import start
from tests.e2e.conftest import MASTER_KEY, gateway_config
from tests.e2e.test_limits import chat

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest_asyncio.fixture(scope="module")
async def gateway(mock, pg_url, tmp_path_factory):
    raw = gateway_config(mock.url, pg_url, str(tmp_path_factory.mktemp("local-limits") / "spill.jsonl"))
    raw.pop("redis", None)
    raw["models"]["slow"] = {"deployments": [{"provider": "oai", "model": "gpt-4o-mini+latency=300", "name": "slow"}]}
    raw["models"]["priced"] = {"deployments": [{"provider": "oai", "model": "gpt-4o-mini", "name": "priced",
                                                "pricing": {"input_per_mtok": 10_000, "output_per_mtok": 10_000}}]}
    raw["limits"] = {"backend": "local", "queue": {"max_wait": 5},
                     "models": {"slow": {"concurrency": 1}, "oai/gpt-4o": {"rpm": 2}}}
    g = await start(parse_config(raw), "127.0.0.1", 0)
    yield g
    await g.stop()


async def new_key(base: str, limits: dict) -> str:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.post(f"{base}/admin/keys", json={"name": "local", "limits": limits}) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["key"]


async def test_requests_per_minute_hold_exactly_and_report_headers(gateway, sdk):
    client = sdk.openai(f"{gateway.url}/v1", await new_key(gateway.url, {"rpm": 3, "tpm": 10_000}), timeout=30)
    results = await asyncio.gather(*(chat(client, stream=bool(i % 2)) for i in range(8)))
    assert sum(ok for ok, _ in results) == 3
    assert {code for ok, code in results if not ok} == {"rate_limit_exceeded"}



async def test_an_admitted_call_reports_its_limits(gateway, sdk):
    client = sdk.openai(f"{gateway.url}/v1", await new_key(gateway.url, {"rpm": 5, "tpm": 10_000}), timeout=30)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-mock", max_tokens=5,
                                                                 messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-ratelimit-limit-requests"] == "5"
    assert raw.headers["x-ratelimit-remaining-requests"] == "4"
    assert raw.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 10_000
    assert raw.headers["x-sluice-deployment"]  # the route's headers travel with them


async def test_output_tokens_settle_to_what_was_used(gateway, sdk):
    # each call reserves max_tokens=5 of output and uses 5 (the mock echoes more than 5 words)
    client = sdk.openai(f"{gateway.url}/v1", await new_key(gateway.url, {"output_tpm": 15}), timeout=30)
    results = await asyncio.gather(*(chat(client, stream=bool(i % 2), max_tokens=5) for i in range(6)))
    assert sum(ok for ok, _ in results) == 3
    assert all(usage.completion_tokens == 5 for ok, usage in results if ok)


async def test_a_call_over_the_models_capacity_waits_in_the_queue(gateway, sdk):
    client = sdk.openai(f"{gateway.url}/v1", await new_key(gateway.url, {"rpm": 100}), timeout=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(chat(client, model="slow") for _ in range(2)))
    assert all(ok for ok, _ in results)  # the second waited for the first instead of a 429
    assert loop.time() - started >= 0.55  # one after the other: two calls of 300 ms each


async def test_rotating_a_key_keeps_its_windows(gateway, sdk):
    """A rotated key and its replacement count against one window: rotating is no way out of a
    limit, and the old key's grace period does not double it."""
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.post(f"{gateway.url}/admin/keys", json={"name": "rotated", "limits": {"rpm": 3}}) as r:
            old = await r.json()
        old_client = sdk.openai(f"{gateway.url}/v1", old["key"], timeout=30)
        assert [(await chat(old_client))[0] for _ in range(2)] == [True, True]
        async with s.post(f"{gateway.url}/admin/keys/{old['id']}/rotate", json={"grace": "1h"}) as r:
            assert r.status == 201, await r.text()
            new = await r.json()
        assert new["lineage"] == old["id"] and new["rotated_from"] == old["id"]
        new_client = sdk.openai(f"{gateway.url}/v1", new["key"], timeout=30)
        ok, usage = await chat(new_client)  # the window's third request
        assert ok and usage is not None
        with pytest.raises(openai.RateLimitError) as refused:
            await new_client.chat.completions.create(model="gpt-mock", max_tokens=5,
                                                     messages=[{"role": "user", "content": "hi"}])
        assert new["id"] in refused.value.message and old["id"] not in refused.value.message
        assert await chat(old_client) == (False, "rate_limit_exceeded")  # in its grace period: same window
        async with s.get(f"{gateway.url}/admin/keys/{new['id']}") as r:
            status = (await r.json())["limits_status"]
        assert status["limits"]["rpm"]["used"] == 3 and status["limits"]["rpm"]["remaining"] == 0


async def test_rotating_a_key_keeps_its_budget_spent(gateway, sdk):
    """The budget of a key applies to its replacement with what was already spent: a holder who
    rotates the key does not get a fresh budget (nor a second one during the grace period)."""
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.post(f"{gateway.url}/admin/keys", json={"name": "budgeted-rotated"}) as r:
            old = await r.json()
        async with s.post(f"{gateway.url}/admin/budgets", json={"scope": "key", "subject": old["id"],
                                                                 "period": "daily", "max_usd": 1.0}) as r:
            assert r.status == 201, await r.text()
            budget = await r.json()
        old_client = sdk.openai(f"{gateway.url}/v1", old["key"], timeout=30)
        outcomes = [await chat(old_client, model="priced") for _ in range(12)]
        served = sum(ok for ok, _ in outcomes)
        assert 0 < served < 12 and outcomes[-1] == (False, "budget_exceeded")
        async with s.post(f"{gateway.url}/admin/keys/{old['id']}/rotate", json={"grace": "1h"}) as r:
            new = await r.json()
        new_client = sdk.openai(f"{gateway.url}/v1", new["key"], timeout=30)
        assert await chat(new_client, model="priced") == (False, "budget_exceeded")
        assert await chat(old_client, model="priced") == (False, "budget_exceeded")
        async with s.get(f"{gateway.url}/admin/budgets/{budget['id']}") as r:
            status = (await r.json())["status"]
        assert status["exhausted"] is False and 0 < status["remaining_usd"] < 1.0  # what is left fits no call


async def test_a_passthrough_model_can_be_limited(gateway, sdk):
    """limits.models may name what passthrough lets a client call (``<provider>/<model>``)."""
    client = sdk.openai(f"{gateway.url}/v1", await new_key(gateway.url, {"rpm": 100}), timeout=30)
    outcomes = [await chat(client, model="oai/gpt-4o") for _ in range(3)]
    assert [ok for ok, _ in outcomes] == [True, True, False] and outcomes[2][1] == "rate_limit_exceeded"
