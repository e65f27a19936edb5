"""RedisCircuitStore: circuits shared by several gateway instances through one real Redis.

Each "instance" is a CircuitBreaker with its own Redis client. Most tests share an injected
clock across instances (timestamps are the callers'), so staleness bounds are exact.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
import time

import pytest

from sluice.routing.health import CircuitBreaker, CircuitPolicy
from sluice.schema import GatewayError
from sluice.store.circuit_redis import RedisCircuitStore
from sluice.store.redis import redis_client


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def err(status: int, retry_after: float | None = None) -> GatewayError:
    return GatewayError.from_status(status, f"upstream said {status}", retry_after=retry_after)


@pytest.fixture
async def instances(redis_url, redis_prefix):
    """A factory of breakers ("gateway instances") sharing one Redis under a per-test prefix."""
    prefix = f"{redis_prefix}:{secrets.token_hex(3)}"
    clients = []

    def make(clock, **policy) -> CircuitBreaker:
        client = redis_client(redis_url, name="sluice-test-circuit")
        clients.append(client)
        return CircuitBreaker(RedisCircuitStore(client, prefix), CircuitPolicy(**policy), clock=clock)

    make.prefix = prefix
    yield make
    for client in clients:
        await client.aclose()


async def fail(breaker, name, times, status=500):
    for _ in range(times):
        await breaker.record_failure(name, err(status))


async def test_an_open_circuit_reaches_the_other_instance_within_refresh(instances):
    clock = Clock()
    a, b = instances(clock), instances(clock)
    assert await b.allow("dep")  # b now holds a fresh "closed" view
    await fail(a, "dep", 5)
    assert not await a.allow("dep")
    # b's view may be up to `refresh` (0.25 s) old: the documented staleness, exactly
    clock.t += 0.2
    assert await b.allow("dep")
    clock.t += 0.05
    assert not await b.allow("dep")
    state = await b.state("dep")
    assert state["state"] == "open" and state["retry_at"] == pytest.approx(clock.t - 0.25 + 30)


async def test_open_circuit_seen_within_250ms_of_real_time(instances):
    a, b = instances(time.time), instances(time.time)
    assert await b.allow("dep")
    await fail(a, "dep", 5)
    opened = time.monotonic()
    while await b.allow("dep"):
        await asyncio.sleep(0.01)
        assert time.monotonic() - opened < 1.0
    assert time.monotonic() - opened < 0.25 + 0.1


async def test_failures_from_several_instances_add_up(instances):
    clock = Clock()
    a, b, c = instances(clock), instances(clock), instances(clock)
    await fail(a, "dep", 2)
    await fail(b, "dep", 2)
    assert (await c.state("dep"))["failures"] == 4
    await fail(c, "dep", 1)
    assert (await a.state("dep"))["state"] == "open"


async def test_exactly_one_probe_across_instances(instances):
    clock = Clock()
    fleet = [instances(clock) for _ in range(5)]
    await fail(fleet[0], "dep", 5)
    for breaker in fleet:
        assert not await breaker.allow("dep")
    clock.t += 30
    granted = await asyncio.gather(*(breaker.allow("dep") for breaker in fleet for _ in range(4)))
    assert granted.count(True) == 1
    prober = next(b for b in fleet if b._views["dep"].holder)
    others = [b for b in fleet if b is not prober]
    await others[0].record_success("dep")  # not the probe: no verdict
    assert (await others[1].state("dep"))["state"] == "half_open"
    await prober.record_success("dep")
    assert (await others[1].state("dep"))["state"] == "closed"
    clock.t += 0.25
    assert all([await b.allow("dep") for b in others])


async def test_probe_failure_reopens_for_everyone(instances):
    clock = Clock()
    a, b = instances(clock), instances(clock)
    await fail(a, "dep", 5)
    clock.t += 30
    assert await b.allow("dep")
    await b.record_failure("dep", err(502))
    state = await a.state("dep")
    assert state["state"] == "open" and state["retry_at"] == pytest.approx(clock.t + 30)


async def test_success_clears_streak_and_4xx_never_counts(instances):
    clock = Clock()
    a, b = instances(clock), instances(clock)
    await fail(a, "dep", 4)
    await fail(a, "dep", 10, status=400)
    assert (await b.state("dep"))["failures"] == 4
    await b.allow("dep")  # b's view knows the streak, so its success goes to Redis
    await b.record_success("dep")
    assert (await a.state("dep"))["failures"] == 0
    await fail(a, "dep", 4)
    assert (await a.state("dep"))["state"] == "closed"


async def test_only_failures_within_the_window_count(instances):
    clock = Clock()
    start = clock.t
    a, b = instances(clock), instances(clock)
    for i, t in enumerate((0, 10, 20, 31, 40)):
        clock.t = start + t
        await (a if i % 2 else b).record_failure("dep", err(500))
    assert await a.state("dep") == {"state": "closed", "failures": 3, "opened_at": None, "retry_at": None}
    for t in (41, 42):
        clock.t = start + t
        await b.record_failure("dep", err(500))
    assert (await a.state("dep"))["state"] == "open"


async def test_retry_after_opens_the_shared_circuit(instances):
    clock = Clock()
    a, b = instances(clock), instances(clock)
    await a.record_failure("dep", err(429, retry_after=2.5))
    clock.t += 0.25
    assert not await b.allow("dep")
    clock.t += 2.25
    assert await b.allow("dep")


async def test_keys_are_hash_tagged_expire_and_vanish_on_close(instances, redis_url):
    clock = Clock()
    a = instances(clock, window=30, cooldown=10, probe_timeout=60)
    key = f"{instances.prefix}:circuit:{{dep-1}}"
    assert a.store.key_for("dep-1") == key
    client = redis_client(redis_url)
    try:
        await fail(a, "dep-1", 2)
        assert 0 < await client.pttl(key) <= (30 + 60) * 1000  # keep = max(window, cooldown) + probe_timeout
        await fail(a, "dep-1", 3)
        assert 90_000 < await client.pttl(key) <= (10 + 90) * 1000  # open period + keep
        clock.t += 10
        assert await a.allow("dep-1")
        await a.record_success("dep-1")
        assert await client.exists(key) == 0
    finally:
        await client.aclose()


async def test_a_healthy_deployment_costs_no_round_trip_per_request(instances, redis_url):
    clock = Clock()
    a = instances(clock)
    calls = []
    store = a.store
    for op in ("acquire", "success", "failure", "peek", "release"):
        original = getattr(store, op)

        async def counted(*args, _original=original, _op=op):
            calls.append(_op)
            return await _original(*args)

        setattr(store, op, counted)
    for _ in range(100):
        assert await a.allow("dep")
        await a.record_success("dep")
        clock.t += 0.01  # 100 requests over 1 s
    assert calls.count("success") == 0
    assert 3 <= calls.count("acquire") <= 5  # one refresh per 0.25 s


# ---- Redis unreachable: fail open ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start_redis(port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", stdout=asyncio.subprocess.DEVNULL)
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    raise RuntimeError("redis-server did not start")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 5)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server binary")
async def test_redis_down_fails_open_logs_once_and_recovers(caplog):
    port = _free_port()
    proc = await _start_redis(port)
    client = redis_client(f"redis://127.0.0.1:{port}/0")
    clock = Clock()
    breaker = CircuitBreaker(RedisCircuitStore(client, "sluice-test-down"), CircuitPolicy(store_retry=1.0),
                             clock=clock)
    try:
        await fail(breaker, "dep", 5)
        assert not await breaker.allow("dep")
        await _stop(proc)
        clock.t += 0.25  # the open view is stale: allow() must ask Redis, which is gone
        caplog.set_level(logging.INFO, logger="sluice.routing.health")
        started = time.monotonic()
        assert await breaker.allow("dep")  # fail open
        for _ in range(3):
            clock.t += 2.0  # past store_retry each time: the store is tried again
            assert await breaker.allow("dep")
            await breaker.record_failure("dep", err(500))
            await breaker.record_success("dep")
        assert time.monotonic() - started < 2.0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        assert (await breaker.state("dep"))["state"] in ("open", "closed", "half_open")  # no raise

        proc = await _start_redis(port)  # a fresh, empty Redis: every circuit closed
        clock.t += 2.0
        assert await breaker.allow("dep")
        await fail(breaker, "dep", 5)
        assert not await breaker.allow("dep")
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await client.aclose()
        if proc.returncode is None:
            await _stop(proc)


async def test_redis_that_hangs_fails_open_within_store_timeout():
    """A Redis that accepts connections but never answers (a partition): bounded by store_timeout."""
    async def swallow(reader, writer):
        try:
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0")
    breaker = CircuitBreaker(RedisCircuitStore(client, "sluice-test-hang"), CircuitPolicy(store_timeout=0.2))
    try:
        started = time.monotonic()
        assert await breaker.allow("dep")
        first = time.monotonic() - started
        assert 0.15 < first < 0.6
        started = time.monotonic()
        for _ in range(20):  # within store_retry: no waiting at all
            assert await breaker.allow("dep")
            await breaker.record_failure("dep", err(500))
        assert time.monotonic() - started < 0.05
    finally:
        server.close()
        await client.aclose()
