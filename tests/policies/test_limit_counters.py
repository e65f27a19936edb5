"""Period counters (budgets) in both limiters: seeded once from the ledger, exact under concurrency,
settled to the real amount, and reset by their period."""

from __future__ import annotations

import asyncio
import math
import secrets

import pytest

from sluice.policies.ratelimit import Check, LocalLimiter
from sluice.store.ratelimit_redis import RedisLimiter
from sluice.store.redis import redis_client
from sluice.store.resp import PipelinedRedis


@pytest.fixture(params=["local", "redis", "redis-pipelined"])
async def make_limiter(request, redis_url, redis_prefix):
    clients = []

    def make():
        if request.param == "local":
            return LocalLimiter()
        client = PipelinedRedis(redis_url) if request.param == "redis-pipelined" else \
            redis_client(redis_url, name="sluice-test-counters")
        clients.append(client)
        return RedisLimiter(client, f"{redis_prefix}:{make.tag}")

    make.tag = secrets.token_hex(3)
    make.kind = request.param
    yield make
    for client in clients:
        await client.aclose()


def budget(amount: int, key: str = "b:1:monthly:0", limit: int = 1000, period: float = 3600.0) -> Check:
    return Check(key, limit, 0.0, amount, period=period)


async def test_a_new_counter_is_seeded_once_from_what_was_spent(make_limiter):
    lim = make_limiter()
    asked: list[list[str]] = []

    async def seeder(checks):
        asked.append([c.key for c in checks])
        return [700 for _ in checks]

    first = await lim.reserve([budget(200)], seeder=seeder)
    assert first.ok and first.remaining == (100,)
    refused = await lim.reserve([budget(200)], seeder=seeder)
    assert not refused.ok and refused.failed == 0
    assert 3590 < refused.retry_after <= 3600  # until the period ends
    assert asked == [["b:1:monthly:0"]]  # seeded once, then the counter is known


async def test_without_a_seeder_an_unknown_counter_is_an_error(make_limiter):
    with pytest.raises(ValueError):
        await make_limiter().reserve([budget(1)])


async def test_settle_moves_the_counter_to_the_real_amount(make_limiter):
    lim = make_limiter()

    async def zero(checks):
        return [0 for _ in checks]

    res = await lim.reserve([budget(600)], seeder=zero)
    await res.settle([100])  # reserved the maximum, spent less
    assert (await lim.reserve([budget(900)], seeder=zero)).ok  # 100 + 900 = 1000
    assert not (await lim.reserve([budget(1)], seeder=zero)).ok


async def test_concurrent_reservations_never_pass_the_limit(make_limiter):
    a, b, c = make_limiter(), make_limiter(), make_limiter()

    async def zero(checks):
        return [0 for _ in checks]

    results = await asyncio.gather(*(lim.reserve([budget(30)], seeder=zero) for lim in (a, b, c) * 20))
    ok = sum(r.ok for r in results)
    if make_limiter.kind != "local":  # shared: exactly floor(1000 / 30) across the three
        assert ok == 33
    else:  # three processes' own counters
        assert ok == 60


async def test_a_never_ending_period_and_a_too_large_amount(make_limiter):
    lim = make_limiter()

    async def zero(checks):
        return [0 for _ in checks]

    res = await lim.reserve([budget(1000, period=math.inf)], seeder=zero)
    assert res.ok
    refused = await lim.reserve([budget(1, period=math.inf)], seeder=zero)
    assert not refused.ok and math.isinf(refused.retry_after)
    assert math.isinf((await lim.reserve([budget(5000, key="b:2")], seeder=zero)).retry_after)


async def test_counters_and_windows_in_one_reservation_are_all_or_nothing(make_limiter):
    lim = make_limiter()

    async def zero(checks):
        return [0 for _ in checks]

    rpm = Check("k:a:rpm", 10, 60.0, 1)
    assert (await lim.reserve([rpm, budget(900)], seeder=zero)).ok
    refused = await lim.reserve([rpm, budget(200)], seeder=zero)  # the budget refuses
    assert not refused.ok and refused.failed == 1
    peek = await lim.reserve([Check("k:a:rpm", 10, 60.0, 0)])
    assert peek.remaining == (9,)  # the refused call took no request


async def test_releasing_a_call_gives_back_its_gauge_but_keeps_its_spend(make_limiter):
    lim = make_limiter()

    async def zero(checks):
        return [0 for _ in checks]

    gauge = Check("k:a:concurrency", 1, 0.0, 1)
    res = await lim.reserve([gauge, budget(600)], seeder=zero)
    await res.settle([None, 400])
    await res.release()
    after = await lim.reserve([Check("k:a:concurrency", 1, 0.0, 0), budget(0)], seeder=zero)
    assert after.remaining == (1, 600)  # the hold is gone, the $ spent (400 of 1000) is not


async def test_settles_that_arrive_together_are_all_applied(make_limiter):
    lim = make_limiter()
    held = [await lim.reserve([Check("k:b:tpm", 10_000, 60.0, 100)]) for _ in range(50)]
    await asyncio.gather(*(r.settle([10]) for r in held))  # one batch on Redis
    peek = await lim.reserve([Check("k:b:tpm", 10_000, 60.0, 0)])
    assert peek.remaining == (10_000 - 50 * 10,)


def test_budget_periods_are_utc_calendar_periods():
    from datetime import datetime, timezone

    from sluice.policies.budgets import period_bounds

    now = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)  # a Thursday
    assert period_bounds("daily", now) == (datetime(2026, 12, 31, tzinfo=timezone.utc),
                                           datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert period_bounds("weekly", now) == (datetime(2026, 12, 28, tzinfo=timezone.utc),
                                            datetime(2027, 1, 4, tzinfo=timezone.utc))
    assert period_bounds("monthly", now) == (datetime(2026, 12, 1, tzinfo=timezone.utc),
                                             datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert period_bounds("none", now) == (None, None)
