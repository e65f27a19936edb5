"""Issue 5, point 6: the limiter's Redis goes away and comes back, under both failure policies.

The test runs a Redis server of its own (the machine's ``redis-server`` binary, on a free port)
so that it can stop it without touching the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess

import aiohttp
import openai
import pytest

from sluice.config import parse_config
from sluice.server import start
from tests.e2e.conftest import MASTER_KEY, gateway_config

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
HI = [{"role": "user", "content": "hi"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    async def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


async def call(client: openai.AsyncOpenAI) -> str:
    try:
        await client.chat.completions.create(model="gpt-mock", messages=HI, max_tokens=3)
        return "ok"
    except openai.RateLimitError:
        return "limited"
    except openai.APIStatusError as exc:
        return f"{exc.status_code}:{exc.body.get('code') if isinstance(exc.body, dict) else exc.body}"


@contextlib.asynccontextmanager
async def gateway_on_private_redis(policy: str, mock, pg_url: str, tmp_path, sdk):
    """A gateway whose limiter uses a Redis of the test's own (redis_timeout 0.3 s), and an SDK
    client whose key allows 2 requests a minute."""
    redis = PrivateRedis(free_port())
    await redis.start()
    raw = gateway_config(mock.url, pg_url, str(tmp_path / "spill.jsonl"))
    raw["redis"] = {"url": f"redis://127.0.0.1:{redis.port}/0", "prefix": "outage"}
    raw["limits"] = {"redis_failure": policy, "redis_timeout": 0.3}
    raw["routing"]["circuit_breaker"] = {"enabled": False}
    gw = await start(parse_config(raw), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as s:
            async with s.post(f"{gw.url}/admin/keys", json={"name": "outage", "limits": {"rpm": 2}}) as r:
                key = await r.json()
        yield gw, redis, sdk.openai(f"{gw.url}/v1", key["key"], timeout=10)
    finally:
        await gw.stop()
        redis.stop()


async def limiter_unavailable(gw, policy: str) -> float:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/metrics") as r:
            metrics = await r.text()
    prefix = f'sluice_limiter_unavailable_total{{policy="{policy}"}} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix))[len(prefix):])


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_limiter_follows_its_failure_policy_and_recovers(policy, mock, pg_url, tmp_path, sdk):
    async with gateway_on_private_redis(policy, mock, pg_url, tmp_path, sdk) as (gw, redis, client):
        assert [await call(client) for _ in range(3)] == ["ok", "ok", "limited"]

        redis.stop()
        during = [await call(client) for _ in range(3)]
        if policy == "open":
            assert during == ["ok", "ok", "ok"]  # let through, uncounted
        else:
            assert during == ["503:limiter_unavailable"] * 3
        assert await limiter_unavailable(gw, policy) == 3

        await redis.start()  # empty: it keeps nothing on disk
        await asyncio.sleep(0.2)
        assert [await call(client) for _ in range(3)] == ["ok", "ok", "limited"]


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_a_redis_that_stops_answering_is_given_up_on_after_redis_timeout(policy, mock, pg_url, tmp_path, sdk):
    """A Redis that keeps its connections but answers nothing (here: the process stopped with
    SIGSTOP) fails a reservation after ``limits.redis_timeout``, and the failure policy applies;
    the call never waits for the client's own timeout. Reservations that reached Redis before it
    stalled are still applied when it resumes, so the limit still holds afterwards."""
    loop = asyncio.get_running_loop()
    async with gateway_on_private_redis(policy, mock, pg_url, tmp_path, sdk) as (gw, redis, client):
        assert await call(client) == "ok"

        redis.proc.send_signal(signal.SIGSTOP)
        try:
            during = []
            for _ in range(2):
                started = loop.time()
                during.append(await call(client))
                assert loop.time() - started < 3.0  # given up on after 0.3 s, not after the client's 10 s
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        assert during == (["ok", "ok"] if policy == "open" else ["503:limiter_unavailable"] * 2)
        assert await limiter_unavailable(gw, policy) == 2

        # Redis resumes and runs the two reservations it had received: the first takes the
        # window's second request, so the key is at its limit whatever the policy let through.
        await asyncio.sleep(0.3)
        assert await call(client) == "limited"
