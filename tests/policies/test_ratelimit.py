"""LocalLimiter: the limiter semantics, with an injected clock (``now=``) so every bound is exact."""

from __future__ import annotations

import asyncio
import math

import pytest

from sluice.policies.ratelimit import Check, Limiter, LocalLimiter, Reservation
from sluice.store.ratelimit_redis import RedisLimiter

T0 = 1_000.0


def rpm(key: str = "key:a", limit: int = 3, amount: int = 1) -> Check:
    return Check(key, limit, 60.0, amount)


def test_both_implementations_satisfy_the_protocol():
    class _Client:
        def register_script(self, _):
            return None

    assert isinstance(LocalLimiter(), Limiter)
    assert isinstance(RedisLimiter(_Client(), "p"), Limiter)


def test_check_rejects_negative_values():
    with pytest.raises(ValueError):
        Check("k", 10, 60.0, -1)
    with pytest.raises(ValueError):
        Check("k", -1, 60.0, 1)


async def test_window_slides_entry_by_entry():
    lim = LocalLimiter()
    for t in (0.0, 10.0, 20.0):
        assert (await lim.reserve([rpm()], now=T0 + t)).ok
    refused = await lim.reserve([rpm()], now=T0 + 59.9)
    assert not refused.ok and refused.failed == 0
    assert refused.retry_after == pytest.approx(0.1)  # the t=0 entry leaves at T0 + 60
    assert refused.remaining == (0,)
    assert not (await lim.reserve([rpm()], now=T0 + 59.999)).ok
    assert (await lim.reserve([rpm()], now=T0 + 60.0)).ok  # window is (now - 60, now]
    assert not (await lim.reserve([rpm()], now=T0 + 69.0)).ok
    ok = await lim.reserve([rpm()], now=T0 + 70.0)
    assert ok.ok and ok.remaining == (0,) and ok.reset == (pytest.approx(60.0),)


async def test_refusal_charges_nothing_across_checks():
    lim = LocalLimiter()
    key_rpm, team_tpm = Check("key:a", 10, 60.0, 1), Check("team:t", 100, 60.0, 80)
    assert (await lim.reserve([key_rpm, team_tpm], now=T0)).ok
    refused = await lim.reserve([key_rpm, team_tpm], now=T0 + 1)  # 160 tokens > 100
    assert not refused.ok and refused.failed == 1
    assert refused.retry_after == pytest.approx(59.0)
    assert refused.remaining == (9, 20)  # key:a was not charged by the refused call
    small = await lim.reserve([key_rpm, Check("team:t", 100, 60.0, 20)], now=T0 + 2)
    assert small.ok and small.remaining == (8, 0)


async def test_failed_names_the_check_that_binds_longest():
    lim = LocalLimiter()
    assert (await lim.reserve([Check("a", 1, 10.0), Check("b", 1, 60.0)], now=T0)).ok
    refused = await lim.reserve([Check("a", 1, 10.0), Check("b", 1, 60.0)], now=T0 + 5)
    assert refused.failed == 1 and refused.retry_after == pytest.approx(55.0)


async def test_retry_after_counts_enough_freed_capacity():
    lim = LocalLimiter()
    for t, amount in ((0.0, 30), (5.0, 30), (10.0, 30)):
        assert (await lim.reserve([Check("tpm", 100, 60.0, amount)], now=T0 + t)).ok
    refused = await lim.reserve([Check("tpm", 100, 60.0, 60)], now=T0 + 20)  # needs 50 freed
    assert refused.retry_after == pytest.approx(45.0)  # t=0 and t=5 entries gone at T0+65
    never = await lim.reserve([Check("tpm", 100, 60.0, 101)], now=T0 + 20)
    assert not never.ok and never.retry_after == math.inf


async def test_settle_down_frees_and_settle_up_overdraws():
    lim = LocalLimiter()
    res = await lim.reserve([rpm("r", 10), Check("tpm", 1000, 60.0, 900)], now=T0)
    await res.settle([None, 150])  # max_tokens reserved 900, the call used 150
    after = await lim.reserve([Check("tpm", 1000, 60.0, 850)], now=T0 + 1)
    assert after.ok and after.remaining == (0,)
    await after.settle([1200])  # used more than reserved: counted, and blocks later calls
    refused = await lim.reserve([Check("tpm", 1000, 60.0, 1)], now=T0 + 2)
    assert not refused.ok and refused.remaining == (0,)
    assert refused.retry_after == pytest.approx(59.0)  # needs both entries to leave
    assert (await lim.reserve([Check("tpm", 1000, 60.0, 1000)], now=T0 + 61)).ok


async def test_settle_after_the_entry_left_the_window_changes_nothing():
    lim = LocalLimiter()
    res = await lim.reserve([Check("tpm", 100, 60.0, 50)], now=T0)
    assert (await lim.reserve([Check("tpm", 100, 60.0, 100)], now=T0 + 60)).ok
    await res.settle([90])
    assert not (await lim.reserve([Check("tpm", 100, 60.0, 1)], now=T0 + 61)).ok
    assert (await lim.reserve([Check("tpm", 100, 60.0, 0)], now=T0 + 61)).remaining == (0,)


async def test_settle_needs_one_amount_per_check():
    res = await LocalLimiter().reserve([rpm()], now=T0)
    with pytest.raises(ValueError):
        await res.settle([1, 2])


async def test_concurrency_gauge_release():
    lim = LocalLimiter()
    gauge = Check("inflight:m", 2, 0.0, 1)
    a = await lim.reserve([rpm("r", 100), gauge], now=T0)
    b = await lim.reserve([rpm("r", 100), gauge], now=T0)
    third = await lim.reserve([rpm("r", 100), gauge], now=T0)
    assert a.ok and b.ok and not third.ok and third.failed == 1
    assert third.retry_after == pytest.approx(300.0)  # upper bound: the oldest lease's end
    await a.release()
    await a.release()  # idempotent
    c = await lim.reserve([rpm("r", 100), gauge], now=T0 + 1)
    assert c.ok and c.remaining == (97, 0)  # release gave back the gauge, not the request count


async def test_a_crashed_holder_stops_counting_after_its_lease():
    lim = LocalLimiter(lease=30.0)
    gauge = Check("inflight", 1, 0.0, 1)
    assert (await lim.reserve([gauge], now=T0)).ok
    assert not (await lim.reserve([gauge], now=T0 + 29.9)).ok
    assert (await lim.reserve([gauge], now=T0 + 30.0)).ok


async def test_concurrent_holders_never_exceed_the_gauge():
    lim = LocalLimiter()
    gauge = Check("inflight", 5, 0.0, 1)
    inflight, peak = 0, 0

    async def holder() -> None:
        nonlocal inflight, peak
        while not (res := await lim.reserve([gauge])).ok:
            await asyncio.sleep(0.001)
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.005)
        inflight -= 1
        await res.release()

    await asyncio.gather(*(holder() for _ in range(50)))
    assert peak == 5
    assert (await lim.reserve([Check("inflight", 5, 0.0, 0)])).remaining == (5,)


async def test_reservation_satisfies_the_protocol():
    assert isinstance(await LocalLimiter().reserve([rpm()], now=T0), Reservation)


async def test_a_key_that_stopped_calling_does_not_keep_its_log():
    """Reservations now and then sweep what no longer counts; a log whose entries all expired
    goes, while one with a live entry stays (and still counts)."""
    lim = LocalLimiter()
    await lim.reserve([rpm("idle", 5)], now=T0)
    await lim.reserve([rpm("busy", 5)], now=T0 + 30)
    for i in range(4096):  # enough reservations to reach a sweep
        await lim.reserve([Check(f"once:{i}", 1, 60.0, 0)], now=T0 + 61)
    assert "idle" not in lim._slots and "busy" in lim._slots
    left = await lim.reserve([rpm("busy", 5)], now=T0 + 61)
    assert left.remaining == (3,)


def test_the_windows_only_reservation_matches_the_general_one():
    """Random traffic on two limiters, one reserving through reserve_now and one through
    reserve_windows_now: every outcome and every settle is the same. Every other step gives
    reserve_windows_now its amounts apart from the checks, as ``Limits`` does."""
    import random
    from dataclasses import replace

    rng = random.Random(7)
    general, windows = LocalLimiter(), LocalLimiter()
    keys = [("k:a:rpm", 5, 10.0), ("t:x:tpm", 400, 30.0), ("k:a:m:tpm", 150, 60.0)]
    held = []
    now = T0
    for step in range(3000):
        now += rng.choice((0.0, 0.25, 0.5, 2.0)) if step % 50 else -0.25  # exact in binary: expiries meet now
        chosen = rng.sample(keys, rng.randint(1, 3))
        checks = tuple(Check(k, limit, window, rng.choice((0, 1, 20, 90)) if "tpm" in k else 1)
                       for k, limit, window in chosen)
        a = general.reserve_now(checks, now)
        if step % 2:
            b = windows.reserve_windows_now(tuple(replace(c, amount=0) for c in checks), now,
                                            [c.amount for c in checks])
        else:
            b = windows.reserve_windows_now(checks, now)
        assert (a.ok, a.failed, a.remaining, a.reset) == (b.ok, b.failed, b.remaining, b.reset), step
        assert a.retry_after == pytest.approx(b.retry_after), step
        if a.ok:
            held.append((a, b))
        if held and rng.random() < 0.5:
            x, y = held.pop(rng.randrange(len(held)))
            amounts = [rng.choice((None, 0, 5)) for _ in x.checks]
            x.settle_now(amounts)
            y.settle_now(amounts)
