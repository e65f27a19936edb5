"""Issue 5, point 4 across instances: when a model's capacity is reached, a better priority class
waiting on one gateway instance is served before a worse class waiting on another (two instances
sharing the machine's Redis; the official SDK as the client)."""

from __future__ import annotations

import asyncio
import secrets

import pytest_asyncio

from sluice.config import parse_config
from sluice.server import start
from tests.e2e.test_limits import admin, limits_config

HI = [{"role": "user", "content": "hi"}]


@pytest_asyncio.fixture
async def pair(mock, pg_url, redis_url, redis_prefix, tmp_path):
    prefix = f"{redis_prefix}:prio{secrets.token_hex(3)}"
    gateways = []
    for i in range(2):
        raw = limits_config(mock.url, pg_url, str(tmp_path / f"spill-{i}.jsonl"), redis_url, prefix,
                            models={"slow": {"concurrency": 1}}, queue={"max_wait": 10})
        gateways.append(await start(parse_config(raw), "127.0.0.1", 0))
    yield gateways
    for g in gateways:
        await g.stop()


async def test_a_better_class_waiting_on_another_instance_is_served_first(pair, sdk):
    first, second = pair
    interactive = await admin(first.url, "POST", "/keys", json={"name": "inter", "priority": "interactive"})
    batch = await admin(first.url, "POST", "/keys", json={"name": "batch", "priority": "batch"})
    loop = asyncio.get_running_loop()
    finished: dict[str, float] = {}

    async def call(gateway, key: dict, name: str, after: float) -> None:
        await asyncio.sleep(after)
        client = sdk.openai(f"{gateway.url}/v1", key["key"], timeout=30)
        await client.chat.completions.create(model="slow", max_tokens=3, messages=HI)
        finished[name] = loop.time()

    # The second instance holds the model's one slot (400 ms) and queues a batch call behind it;
    # then an interactive call queues on the first instance. The slot is given back on the second
    # instance, which wakes its own batch waiter at once: it must yield to the interactive one.
    await asyncio.gather(call(second, batch, "holder", 0.0), call(second, batch, "batch", 0.1),
                         call(first, interactive, "interactive", 0.2))
    assert finished["holder"] < finished["interactive"] < finished["batch"]
