"""Circuit breakers under fault injection: traffic leaves a failing deployment, and instances share state."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from sluice.config import parse_config
from sluice.server import start

from .conftest import MASTER_KEY, gateway_config

HI = [{"role": "user", "content": "hi"}]


async def _health(base: str) -> dict[str, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/health/deployments") as r:
            return {d["deployment"]: d for d in (await r.json())["deployments"]}


async def test_429_storm_shifts_traffic_to_the_healthy_deployment(gateway, oai, upstream_log):
    for _ in range(30):
        resp = await oai.chat.completions.create(model="storm", messages=HI)
        assert resp.choices[0].message.content
    storming = [r for r in await upstream_log() if r["body"].get("model") == "gpt-4o-mini+fail=429"]
    assert len(storming) <= 3  # the circuit opened after 3 failures; no more traffic went there
    health = await _health(gateway.url)
    assert health["storming"]["state"] == "open" and health["calm"]["state"] == "closed"


async def test_two_instances_see_the_same_open_circuit(mock, pg_url, redis_url, redis_prefix, tmp_path, upstream_log, sdk):
    configs = []
    for i in range(2):
        raw = gateway_config(mock.url, pg_url, str(tmp_path / f"spill-{i}.jsonl"))
        raw["redis"] = {"url": redis_url, "prefix": f"{redis_prefix}-circuits"}
        configs.append(parse_config(raw))
    a = await start(configs[0], "127.0.0.1", 0)
    b = await start(configs[1], "127.0.0.1", 0)
    try:
        on_a = sdk.openai(f"{a.url}/v1", MASTER_KEY)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await on_a.chat.completions.create(model="always-500", messages=HI)
        sent = len(await upstream_log())
        await asyncio.sleep(0.4)  # instance B refreshes its view of shared circuits every 0.25 s
        assert (await _health(b.url))["dead"]["state"] == "open"
        on_b = sdk.openai(f"{b.url}/v1", MASTER_KEY)
        with pytest.raises(openai.APIStatusError) as exc:
            await on_b.chat.completions.create(model="always-500", messages=HI)
        assert exc.value.status_code == 503 and exc.value.response.headers.get("retry-after")
        assert len(await upstream_log()) == sent  # B did not call the dead deployment
    finally:
        await a.stop()
        await b.stop()


async def test_active_health_checks_open_a_dead_deployments_circuit_without_traffic(mock, pg_url, tmp_path):
    raw = gateway_config(mock.url, pg_url, str(tmp_path / "spill.jsonl"))
    raw["routing"]["health_checks"] = {"enabled": True, "interval": 0.1, "timeout": 2}
    raw["models"] = {"probed": {"deployments": [
        {"provider": "oai", "model": "gpt-4o-mini+fail=500", "name": "probed-dead",
         "circuit_breaker": {"failures": 3, "cooldown": 60}},
        {"provider": "gem", "model": "gemini-2.5-flash", "name": "probed-alive"}]}}
    raw["routing"]["rules"], raw["routing"]["semantic"] = [], []
    gw = await start(parse_config(raw), "127.0.0.1", 0)
    try:
        for _ in range(40):
            health = await _health(gw.url)
            if health["probed-dead"]["state"] == "open":
                break
            await asyncio.sleep(0.1)
        assert health["probed-dead"]["state"] == "open" and health["probed-dead"]["last_probe"] == "server_error"
        assert health["probed-alive"]["state"] == "closed" and health["probed-alive"]["last_probe"] == "ok"
    finally:
        await gw.stop()
