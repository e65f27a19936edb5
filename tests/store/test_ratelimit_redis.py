"""RedisLimiter: exact limits across several gateway instances sharing one real Redis.

Each "gateway" is a RedisLimiter with its own Redis client — redis-py's pool, or Sluice's own
pipelined connection, which gets the script's arguments encoded ahead (every test runs on
both). Semantic tests inject ``now``; the fleet tests use the Redis server's clock (``now=None``).
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time

import pytest
from redis.crc import key_slot

from sluice.policies.ratelimit import Check, Limiter, Reservation
from sluice.store.ratelimit_redis import Line, RedisLimiter
from sluice.store.redis import redis_client
from sluice.store.resp import PipelinedRedis

T0 = 1_700_000_000.0


@pytest.fixture(params=["redis-py", "pipelined"])
async def gateways(request, redis_url, redis_prefix):
    """A factory of limiters ("gateway instances"), each on its own client, under a per-test prefix;
    ``inspect`` is a redis-py client to look at what they wrote."""
    prefix = f"{redis_prefix}:{secrets.token_hex(3)}"
    clients = []

    def make(**kwargs) -> RedisLimiter:
        client = PipelinedRedis(redis_url) if request.param == "pipelined" else \
            redis_client(redis_url, name="sluice-test-ratelimit")
        clients.append(client)
        return RedisLimiter(client, prefix, **kwargs)

    make.prefix = prefix
    make.inspect = redis_client(redis_url, name="sluice-test-ratelimit-inspect")
    yield make
    for client in [*clients, make.inspect]:
        await client.aclose()


async def test_is_a_limiter(gateways):
    lim = gateways()
    assert isinstance(lim, Limiter)
    assert isinstance(await lim.reserve([Check("k", 1, 60.0)], now=T0), Reservation)


async def test_window_slides_and_refusal_charges_nothing(gateways):
    a, b = gateways(), gateways()
    key_rpm, team_tpm = Check("key:a", 3, 60.0, 1), Check("team:t", 100, 60.0, 40)
    for t in (0.0, 10.0):
        assert (await a.reserve([key_rpm, team_tpm], now=T0 + t)).ok
    refused = await b.reserve([key_rpm, team_tpm], now=T0 + 20)  # tokens: 80 + 40 > 100
    assert not refused.ok and refused.failed == 1
    assert refused.retry_after == pytest.approx(40.0)
    assert refused.remaining == (1, 20)  # key:a untouched by the refusal
    assert (await b.reserve([key_rpm, Check("team:t", 100, 60.0, 20)], now=T0 + 20)).ok
    full = await a.reserve([key_rpm], now=T0 + 59.5)
    assert not full.ok and full.failed == 0 and full.retry_after == pytest.approx(0.5)
    assert (await a.reserve([key_rpm], now=T0 + 60.0)).ok  # the t=0 entry has left
    never = await a.reserve([Check("team:t", 100, 60.0, 101)], now=T0 + 60)
    assert not never.ok and never.retry_after == math.inf


async def test_settle_down_and_up_across_instances(gateways):
    a, b = gateways(), gateways()
    def tpm(n):
        return Check("tpm", 1000, 60.0, n)
    res = await a.reserve([Check("rpm", 10, 60.0), tpm(900)], now=T0)
    assert res.remaining == (9, 100) and res.reset == (pytest.approx(60.0), pytest.approx(60.0))
    await res.settle([None, 150])
    other = await b.reserve([tpm(850)], now=T0 + 1)
    assert other.ok and other.remaining == (0,)
    await other.settle([1200])  # overdraw: real usage counts
    refused = await a.reserve([tpm(1)], now=T0 + 2)
    assert not refused.ok and refused.retry_after == pytest.approx(59.0)
    await other.settle([300])
    assert (await a.reserve([tpm(550)], now=T0 + 3)).remaining == (0,)
    assert not (await b.reserve([tpm(1000)], now=T0 + 62.5)).ok  # the T0+3 entry is still in
    assert (await b.reserve([tpm(1000)], now=T0 + 63.0)).ok


async def test_settling_without_waiting_lands_in_order_and_after_redis_lost_the_script(gateways):
    a = gateways()
    res = await a.reserve([Check("settle:tpm", 1000, 60.0, 900)], now=T0)
    res.settle_now([100])  # queued: leaves at the end of this turn of the loop
    await a.drain()
    assert (await a.reserve([Check("settle:tpm", 1000, 60.0, 0)], now=T0 + 1)).remaining == (900,)
    again = await a.reserve([Check("settle:tpm", 1000, 60.0, 800)], now=T0 + 2)
    await gateways.inspect.script_flush()  # as after a restart or a failover: the script is unknown
    again.settle_now([50])
    await a.drain()
    assert (await a.reserve([Check("settle:tpm", 1000, 60.0, 0)], now=T0 + 3)).remaining == (850,)


async def test_a_settlement_leaves_before_the_next_reservation_or_soon_after_on_its_own(redis_url, redis_prefix):
    # On Sluice's own client a settlement waits a moment for a reservation to share a write with:
    # the reservation must then see it applied, and a settlement with none to wait for lands anyway.
    client = PipelinedRedis(redis_url)
    lim = RedisLimiter(client, f"{redis_prefix}:{secrets.token_hex(3)}")
    inspect = redis_client(redis_url, name="sluice-test-settle-order")
    try:
        def tpm(n):
            return Check("order:tpm", 1000, 60.0, n)
        held = await lim.reserve([tpm(900)])
        held.settle_now([100])
        assert (await lim.reserve([tpm(800)])).ok  # sent after the settlement, in the same turn
        held = await lim.reserve([tpm(100)])  # 1,000 held now
        held.settle_now([40])
        await asyncio.sleep(0.3)  # no reservation follows: the settlement goes after its moment
        total = await inspect.get(lim.keys_for("order:tpm")[1])
        assert int(total) == 940
    finally:
        await lim.drain()
        await client.aclose()
        await inspect.aclose()


async def test_a_reservation_sent_from_a_template_charges_its_own_amounts(redis_url, redis_prefix):
    """``send_reserve(checks, template)`` encodes the template's command once; a check whose
    amount differs from the template's (a call's token count) is charged its own amount, also
    when the amounts come apart from the checks, and a settle finds the entry under the
    reservation's id and the amount it reserved."""
    client = PipelinedRedis(redis_url)
    lim = RedisLimiter(client, f"{redis_prefix}:{secrets.token_hex(3)}")
    template = (Check("tpl:rpm", 10, 60.0, 1), Check("tpl:tpm", 1000, 60.0, 0), Check("tpl:inflight", 5, 0.0, 1))
    try:
        await lim.reserve([Check("warm", 1, 60.0, 0)])  # connects: send_reserve needs a connection
        results = []
        for tokens in (300, 200, 0):
            if tokens == 200:  # the template itself with the call's amounts beside it, as Limits sends them
                rid, reply = lim.send_reserve(template, template, (1, tokens, 1))
                results.append(lim.reservation(template, rid, await reply, (1, tokens, 1)))
                continue
            checks = (template[0], Check("tpl:tpm", 1000, 60.0, tokens), template[2])
            rid, reply = lim.send_reserve(checks, template)
            results.append(lim.reservation(checks, rid, await reply))
        assert [r.remaining for r in results] == [(9, 700, 4), (8, 500, 3), (7, 500, 2)]
        other = (template[0], Check("tpl:tpm", 1000, 60.0, 600), template[2])
        rid, reply = lim.send_reserve(other, other)  # another template: its own command
        refused = lim.reservation(other, rid, await reply)
        assert not refused.ok and refused.failed == 1 and refused.remaining == (7, 500, 2)
        results[0].settle_now([None, 100, None])  # the 300 reserved became 100
        await results[1].settle([None, 150, None])  # reserved apart from its checks: 200 became 150
        await results[2].release()
        await lim.drain()
        peek = await lim.reserve([Check("tpl:tpm", 1000, 60.0, 0), Check("tpl:inflight", 5, 0.0, 0)])
        assert peek.remaining == (750, 3)
    finally:
        await client.aclose()


async def test_a_models_line_makes_worse_classes_on_other_instances_yield(gateways):
    """Line marks: an instance waiting with class 0 for a model makes class 1-2 reservations of
    other instances come back ``behind`` (nothing charged); its own, equal and better classes
    pass; marks go when the instance reports the class no longer waits, or lapse after a second."""
    a, b = gateways(), gateways()
    rpm = Check("line:rpm", 100, 60.0, 1)
    waiting = await a.reserve([rpm], now=T0, line=Line("q:m", 0, "0"))  # a: a class-0 call waits
    assert waiting.ok and not waiting.behind
    behind = await b.reserve([rpm], now=T0 + 0.1, line=Line("q:m", 2, ""))
    assert not behind.ok and behind.behind and behind.retry_after == pytest.approx(0.1)
    assert (await b.reserve([rpm], now=T0 + 0.2, line=Line("q:m", 0, ""))).ok  # equal class: no yield
    assert (await a.reserve([rpm], now=T0 + 0.3, line=Line("q:m", 2, "0"))).ok  # its own mark: no yield
    assert (await b.reserve([rpm], now=T0 + 0.4)).ok  # a call that cannot wait ignores the line
    assert (await b.reserve([rpm], now=T0 + 1.5, line=Line("q:m", 2, ""))).ok  # a's mark lapsed
    await a.reserve([rpm], now=T0 + 1.6, line=Line("q:m", 0, "0"))
    assert (await b.reserve([rpm], now=T0 + 1.7, line=Line("q:m", 1, ""))).behind
    await a.reserve([rpm], now=T0 + 1.8, line=Line("q:m", 1, ""))  # nothing waits on a any more
    assert (await b.reserve([rpm], now=T0 + 1.9, line=Line("q:m", 1, ""))).ok
    await a.reserve([rpm], now=T0 + 2.0, line=Line("q:m", 0, "0"))
    a.leave_line("q:m")  # a's queue emptied: its marks go at once, not a second later
    await a.drain()
    assert (await b.reserve([rpm], now=T0 + 2.1, line=Line("q:m", 2, ""))).ok
    peek = await a.reserve([Check("line:rpm", 100, 60.0, 0)], now=T0 + 2.2)
    assert peek.remaining == (90,)  # 10 charged: the two that were behind took nothing


async def test_gauge_release_and_lease(gateways):
    a, b = gateways(lease=30.0), gateways(lease=30.0)
    gauge = Check("inflight", 2, 0.0, 1)
    first = await a.reserve([Check("rpm", 100, 60.0), gauge], now=T0)
    assert first.ok and (await b.reserve([gauge], now=T0)).ok
    refused = await b.reserve([gauge], now=T0 + 1)
    assert not refused.ok and refused.retry_after == pytest.approx(29.0)
    await first.release()
    await first.release()
    again = await b.reserve([Check("rpm", 100, 60.0), gauge], now=T0 + 1)
    assert again.ok and again.remaining == (98, 0)  # the request count was not given back
    assert not (await a.reserve([gauge], now=T0 + 29.5)).ok
    assert (await a.reserve([gauge], now=T0 + 30.0)).ok  # b's unreleased T0 holder's lease ended


async def _stored(gateways, key: str) -> tuple[int, int, int, int]:
    """(the stored total, the sum of the log's members, the log's TTL, the total's TTL) of a check key."""
    client, tag = gateways.inspect, f"{{{gateways.prefix}:rl}}"
    members = await client.zrange(f"{tag}:l:{key}", 0, -1)
    total = await client.get(f"{tag}:n:{key}")
    return (int(total or 0), sum(int(m.rsplit(b":", 1)[1]) for m in members),
            await client.pttl(f"{tag}:l:{key}"), await client.pttl(f"{tag}:n:{key}"))


async def test_totals_ttls_and_reset_stay_right_on_the_servers_clock(gateways):
    lim = gateways()
    res = await lim.reserve([Check("clock:rpm", 100, 60.0, 1), Check("clock:tpm", 10_000, 60.0, 900)])
    assert res.ok and res.reset == (60.0, 60.0)  # just charged: the newest entry is this call's
    total, members, log_ttl, total_ttl = await _stored(gateways, "clock:tpm")
    assert total == members == 900 and 60_000 < log_ttl <= 61_000 and 60_000 < total_ttl <= 61_000
    await res.settle([None, 120])  # an adjusted entry keeps its expiry, and the keys their TTLs
    total, members, log_ttl, total_ttl = await _stored(gateways, "clock:tpm")
    assert total == members == 120 and 59_000 < log_ttl <= 61_000 and 59_000 < total_ttl <= 61_000
    looked = await lim.reserve([Check("clock:tpm", 10_000, 60.0, 0)])  # nothing charged: read the log
    assert looked.remaining == (9_880,) and 59.0 < looked.reset[0] <= 60.0


async def test_a_key_checked_twice_in_one_reservation_keeps_one_true_total(gateways):
    lim = gateways()
    for t in (0.0, 61.0):  # the second reservation first drops the first one's expired entries
        res = await lim.reserve([Check("twice", 100, 60.0, 3), Check("twice", 100, 60.0, 4)], now=T0 + t)
        assert res.ok
        total, members, _, _ = await _stored(gateways, "twice")
        assert total == members == 7


async def test_a_refusal_over_a_long_log_finds_its_wait_and_keeps_the_total(gateways):
    lim = gateways()
    for i in range(200):  # more entries than one page of the script's walk
        assert (await lim.reserve([Check("long", 200, 60.0, 1)], now=T0 + i * 0.1)).ok
    refused = await lim.reserve([Check("long", 200, 60.0, 100)], now=T0 + 20)
    assert not refused.ok and refused.retry_after == pytest.approx(49.9)  # the 100th oldest leaves at T0 + 69.9
    refused = await lim.reserve([Check("long", 50, 60.0, 100)], now=T0 + 65)  # over the limit itself
    assert not refused.ok and refused.retry_after == math.inf
    total, members, _, _ = await _stored(gateways, "long")  # the refusal dropped 51 expired entries
    assert total == members == 149


async def test_keys_share_one_cluster_slot_and_expire(gateways):
    lim = gateways()
    await lim.reserve([Check("key:a", 5, 60.0), Check("team:b", 5, 0.0)])
    client = gateways.inspect
    keys = sorted([k.decode() async for k in client.scan_iter(match=f"{{{gateways.prefix}:rl}}*")])
    assert keys == [f"{{{gateways.prefix}:rl}}:{kind}:{name}"
                    for kind, name in (("l", "key:a"), ("l", "team:b"), ("n", "key:a"), ("n", "team:b"))]
    # Redis Cluster routes by CRC16 of the hash tag: every key of every reservation, one slot
    assert {key_slot(k.encode()) for k in keys} == {key_slot(f"{gateways.prefix}:rl".encode())}
    ttls = [await client.pttl(k) for k in keys]
    assert 60_000 < ttls[0] <= 61_000 and 300_000 < ttls[1] <= 301_000


async def test_three_gateways_300_requests_limit_50_exactly_50_pass(gateways):
    fleet = [gateways() for _ in range(3)]
    check = Check("key:hot:rpm", 50, 60.0, 1)
    results = await asyncio.gather(*(fleet[i % 3].reserve([check]) for i in range(300)))
    assert sum(r.ok for r in results) == 50
    refused = [r for r in results if not r.ok]
    assert all(r.failed == 0 and 0 < r.retry_after <= 60.0 for r in refused)


async def test_three_gateways_token_budget_never_exceeded(gateways):
    fleet = [gateways() for _ in range(3)]
    rng = random.Random(5)
    limit = 20_000
    amounts = [rng.randint(1, 900) for _ in range(300)]
    results = await asyncio.gather(*(
        fleet[i % 3].reserve([Check("rpm", 1000, 60.0), Check("team:tpm", limit, 60.0, n)])
        for i, n in enumerate(amounts)))
    admitted = sum(n for n, r in zip(amounts, results, strict=True) if r.ok)
    refused = [n for n, r in zip(amounts, results, strict=True) if not r.ok]
    assert admitted <= limit and refused  # the budget was contended
    # exact, not merely safe: each refused amount really did not fit in what was left
    assert limit - admitted < min(refused)
    probe = await fleet[0].reserve([Check("team:tpm", limit, 60.0, 0)])
    assert probe.remaining == (limit - admitted,)
    rpm_left = (await fleet[1].reserve([Check("rpm", 1000, 60.0, 0)])).remaining
    assert rpm_left == (1000 - sum(r.ok for r in results),)  # refused calls charged no request


async def test_three_gateways_concurrency_gauge_holds_at_five(gateways):
    fleet = [gateways() for _ in range(3)]
    gauge = Check("model:inflight", 5, 0.0, 1)
    inflight, peak, done = 0, 0, 0

    async def holder(lim: RedisLimiter) -> None:
        nonlocal inflight, peak, done
        while not (res := await lim.reserve([gauge])).ok:
            await asyncio.sleep(0.002)
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.01)
        inflight -= 1
        await res.release()
        done += 1

    await asyncio.gather(*(holder(fleet[i % 3]) for i in range(50)))
    assert peak == 5 and done == 50
    assert (await fleet[0].reserve([Check("model:inflight", 5, 0.0, 0)])).remaining == (5,)


async def _script_calls(client) -> int:
    """EVALSHA and EVAL calls the Redis server has run, from its own statistics."""
    stats = await client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_benchmark_one_round_trip_per_reserve(gateways):
    lim = gateways()
    checks = [Check("bench:key", 10**9, 60.0), Check("bench:team:tpm", 10**12, 60.0, 500),
              Check("bench:inflight", 10**9, 0.0)]
    await lim.reserve(checks)  # loads the script (NOSCRIPT → SCRIPT LOAD) once
    n = 2000
    before = await _script_calls(gateways.inspect)
    start = time.perf_counter()
    for _ in range(n):
        await lim.reserve(checks)
    elapsed = time.perf_counter() - start
    trips = (await _script_calls(gateways.inspect) - before) / n
    res = await lim.reserve(checks)
    before = await _script_calls(gateways.inspect)
    await res.settle([None, 120, None])
    settle_trips = await _script_calls(gateways.inspect) - before
    before = await _script_calls(gateways.inspect)
    await res.release()
    release_trips = await _script_calls(gateways.inspect) - before
    fleet = [gateways() for _ in range(3)]
    await asyncio.gather(*(g.reserve(checks) for g in fleet))
    start = time.perf_counter()
    await asyncio.gather(*(_worker(fleet[i % 3], checks, 20) for i in range(150)))
    rate = 3000 / (time.perf_counter() - start)
    print(f"\nRedisLimiter: {trips:.2f} round trips/reserve (3 checks), {elapsed / n * 1e6:.0f} µs/reserve "
          f"sequential over {n}; settle {settle_trips} trip, release {release_trips} trip; "
          f"3 gateways x 50 concurrent callers: {rate:.0f} reserves/s")
    # The shared Redis serves other tests' clients only between tests: these counts are this test's.
    assert trips == 1.0 and settle_trips == 1 and release_trips == 1


async def _worker(lim: RedisLimiter, checks: list[Check], n: int) -> None:
    for _ in range(n):
        assert (await lim.reserve(checks)).ok
