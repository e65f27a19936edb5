"""The limits stage on the in-process limiter: which checks a call meets, headers, refusals, the
priority queue, and the Redis failure policy (against a Redis port nobody listens on)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sluice.config import LimitsConfig
from sluice.policies.auth import Principal
from sluice.policies.budgets import BudgetBook, BudgetRule
from sluice.policies.deployment_limits import deployment_capacity
from sluice.policies.limits import LATER, Admission, Demand, Limits, format_reset
from sluice.policies.ratelimit import Check, LocalLimiter, RedisLimiter
from sluice.schema import GatewayError
from sluice.store.redis import redis_client
from sluice.store.resp import PipelinedRedis


def key(limits: dict | None = None, priority: str | None = None, key_id: str = "key_1",
        team: dict | None = None) -> Principal:
    scoped = [("key", key_id, limits)] if limits else []
    if team:
        scoped.append(("team", "team_1", team))
    return Principal("key", key_id, role="member", key_id=key_id, team_id="team_1", limits=tuple(scoped),
                     priority=priority)


def settings(**kw) -> LimitsConfig:
    return LimitsConfig(**kw)


def demand(alias: str = "gpt", tokens_in: int = 10, tokens_out: int = 5, cost: float = 0.0) -> Demand:
    return Demand(alias, tokens_in, tokens_out, lambda: cost)


async def test_no_limits_means_no_checks_and_no_reservation():
    limits = Limits(LocalLimiter(), settings())
    assert not limits.applies(key(), None, "gpt")
    assert await limits.admit(key(), None, (), demand()) is None


async def test_every_scope_contributes_its_checks():
    limits = Limits(LocalLimiter(), settings(end_user={"rpm": 5}, models={"gpt": {"tpm": 1000}}),
                    capacity={"gpt": {"rpm": 100}})
    caller = key({"rpm": 10, "concurrency": 2, "models": {"gpt": {"output_tpm": 50}}}, team={"tpm": 500})
    from datetime import datetime, timezone

    planned = limits.plan(caller, "alice", (), demand(), datetime.now(timezone.utc))
    keys = {p.check.key: (p.check.limit, p.check.amount, p.queueable) for p in planned}
    assert keys == {
        "k:key_1:rpm": (10, 1, False), "k:key_1:concurrency": (2, 1, False),
        "k:key_1:m:gpt:output_tpm": (50, 5, False), "t:team_1:tpm": (500, 15, False),
        "e:alice:rpm": (5, 1, False), "m:gpt:tpm": (1000, 15, True), "cap:gpt:rpm": (100, 1, True),
    }


async def test_rpm_refusal_says_which_limit_and_when():
    limits = Limits(LocalLimiter(), settings())
    caller = key({"rpm": 2, "tpm": 100})
    first = await limits.admit(caller, None, (), demand())
    headers = {name.decode(): value.decode() for name, value in first.rate_headers}
    assert headers == {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1",
                       "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-limit-tokens": "100",
                       "x-ratelimit-remaining-tokens": "85", "x-ratelimit-reset-tokens": "1m0s"}
    await limits.admit(caller, None, (), demand())
    with pytest.raises(GatewayError) as refused:
        await limits.admit(caller, None, (), demand())
    err = refused.value
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert "key key_1" in err.message and "requests per minute" in err.message
    assert 59 < err.retry_after <= 60
    assert err.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tokens_settle_to_what_was_used():
    limits = Limits(LocalLimiter(), settings())
    caller = key({"tpm": 100})
    admission = await limits.admit(caller, None, (), demand(tokens_in=10, tokens_out=80))
    with pytest.raises(GatewayError):
        await limits.admit(caller, None, (), demand(tokens_in=10, tokens_out=80))
    await admission.settle(10, 5, None)  # used 15 of the 90 reserved
    assert await limits.admit(caller, None, (), demand(tokens_in=10, tokens_out=70))


async def test_a_request_larger_than_the_limit_is_told_so():
    limits = Limits(LocalLimiter(), settings())
    with pytest.raises(GatewayError) as refused:
        await limits.admit(key({"tpm": 50}), None, (), demand(tokens_in=40, tokens_out=40))
    assert refused.value.code == "request_too_large" and refused.value.retry_after is None


async def test_concurrency_is_given_back_on_settle():
    limits = Limits(LocalLimiter(), settings())
    caller = key({"concurrency": 1})
    held = await limits.admit(caller, None, (), demand())
    with pytest.raises(GatewayError):
        await limits.admit(caller, None, (), demand())
    await held.settle(1, 1, None)
    assert await limits.admit(caller, None, (), demand())


async def test_budget_refusal_names_the_budget_and_its_reset():
    book = BudgetBook(None)
    book.set_rules([BudgetRule("bud_1", "team", "team_1", "daily", 1.0, 0.5, name="research")])
    limits = Limits(LocalLimiter(), settings(), book)
    caller = key()
    ok = await limits.admit(caller, None, (), demand(cost=0.6))
    assert "x-sluice-budget-warning" in ok.headers  # past the $0.50 alert threshold
    with pytest.raises(GatewayError) as refused:
        await limits.admit(caller, None, (), demand(cost=0.6))
    err = refused.value
    assert err.status == 429 and err.code == "budget_exceeded"
    assert "daily budget of research" in err.message and "resets at" in err.message
    await ok.settle(100, 100, 0.1)  # the call cost less than its maximum
    assert await limits.admit(caller, None, (), demand(cost=0.6))


async def test_queue_serves_interactive_before_batch():
    limits = Limits(LocalLimiter(), settings(models={"gpt": {"concurrency": 1}}, queue={"max_wait": 5}))
    holder = await limits.admit(key(key_id="k0"), None, (), demand())
    order: list[str] = []

    async def call(name: str, priority: str):
        admission = await limits.admit(key(key_id=name, priority=priority), None, (), demand())
        order.append(name)
        await asyncio.sleep(0.01)
        await admission.settle(1, 1, None)

    tasks = [asyncio.create_task(call("batch-1", "batch"))]
    await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(call("batch-2", "batch")))
    await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(call("urgent", "interactive")))
    await asyncio.sleep(0.05)
    assert order == [] and limits.queue.waiting("gpt") == 3
    await holder.settle(1, 1, None)
    await asyncio.gather(*tasks)
    assert order == ["urgent", "batch-1", "batch-2"]


async def test_queue_gives_up_after_max_wait_with_retry_after():
    limits = Limits(LocalLimiter(), settings(models={"gpt": {"concurrency": 1}}, queue={"max_wait": 0.2}))
    await limits.admit(key(key_id="k0"), None, (), demand())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayError) as refused:
        await limits.admit(key(key_id="k1"), None, (), demand())
    assert 0.19 <= loop.time() - started < 1.0
    assert refused.value.status == 429 and refused.value.retry_after


async def test_a_full_queue_refuses_at_once():
    limits = Limits(LocalLimiter(), settings(models={"gpt": {"concurrency": 1}}, queue={"max_wait": 5, "max_size": 0}))
    await limits.admit(key(key_id="k0"), None, (), demand())
    with pytest.raises(GatewayError):
        await asyncio.wait_for(limits.admit(key(key_id="k1"), None, (), demand()), 1.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_redis_failure_policy(policy, caplog):
    client = redis_client(f"redis://127.0.0.1:{_closed_port()}/0")
    limits = Limits(RedisLimiter(client, "t", timeout=0.5), settings(redis_failure=policy), shared=True)
    try:
        if policy == "open":
            assert await limits.admit(key({"rpm": 1}), None, (), demand()) is None
            assert await limits.admit(key({"rpm": 1}), None, (), demand()) is None  # not counted: open
        else:
            with pytest.raises(GatewayError) as refused:
                await limits.admit(key({"rpm": 1}), None, (), demand())
            assert refused.value.status == 503 and refused.value.code == "limiter_unavailable"
        assert limits.failures >= 1
        assert any("rate limiter unavailable" in r.getMessage() for r in caplog.records)
    finally:
        await client.aclose()


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_a_redis_that_stops_answering_fails_each_call_at_the_timeout(policy):
    """The connection is up but nothing comes back (a Redis stopped or cut off mid-stream)."""
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    client = PipelinedRedis(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0")
    limits = Limits(RedisLimiter(client, "t", timeout=0.2), settings(redis_failure=policy), shared=True)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(2):  # the second call meets the same silent connection
            started = loop.time()
            if policy == "open":
                assert await limits.admit(key({"rpm": 1}), None, (), demand()) is None
            else:
                with pytest.raises(GatewayError) as refused:
                    await limits.admit(key({"rpm": 1}), None, (), demand())
                assert refused.value.status == 503
            assert 0.15 <= loop.time() - started < 1.0
        assert limits.failures == 2
    finally:
        await client.aclose()
        server.close()


def test_capacity_needs_every_deployment_to_declare_it():
    class D:
        def __init__(self, rpm, tpm):
            self.rpm, self.tpm = rpm, tpm

    assert deployment_capacity([D(10, 100), D(20, None)]) == {"rpm": 30}
    assert deployment_capacity([D(None, None)]) == {}


def test_reset_format_matches_openai():
    assert format_reset(0.02) == "20ms"
    assert format_reset(1.0) == "1s"
    assert format_reset(360) == "6m0s"
    assert format_reset(3723) == "1h2m3s"


async def test_a_queued_call_refused_by_its_own_limit_leaves_at_once():
    limits = Limits(LocalLimiter(), settings(models={"gpt": {"concurrency": 1}}, queue={"max_wait": 5}))
    holder = await limits.admit(key(key_id="k0"), None, (), demand())
    caller = key({"rpm": 1}, key_id="k1")
    waiting = asyncio.create_task(limits.admit(caller, None, (), demand()))
    await asyncio.sleep(0.05)
    await limits.admit(caller, None, (), demand(alias="other"))  # uses up k1's own rpm meanwhile
    await holder.settle(1, 1, None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayError) as refused:
        await waiting
    assert loop.time() - started < 1.0  # not held until max_wait
    assert refused.value.code == "rate_limit_exceeded" and "key key_1" not in refused.value.message
    assert "key k1" in refused.value.message


class _Deployment:
    """What DeploymentLimits reads of a routing Deployment: its name, limits and upstream model."""

    def __init__(self, name: str, rpm: int | None = None, tpm: int | None = None) -> None:
        from types import SimpleNamespace

        self.name, self.rpm, self.tpm = name, rpm, tpm
        self.client = SimpleNamespace(upstream=SimpleNamespace(model="gpt-4o-mini"))


async def test_deployment_tokens_are_reserved_then_settled_to_what_was_used():
    from types import SimpleNamespace

    from sluice.policies.deployment_limits import DeploymentLimits

    limits = Limits(LocalLimiter(), settings())
    gate = DeploymentLimits(limits, lambda req, model: (20, 30))  # 50 reserved per attempt
    dep = _Deployment("acct-1", tpm=120)
    routes = [SimpleNamespace(alias="gpt", tickets=None) for _ in range(3)]
    assert await gate.enter(dep, None, routes[0]) is None
    assert await gate.enter(dep, None, routes[1]) is None
    wait = await gate.enter(dep, None, routes[2])  # 150 > 120
    assert wait is not None and wait > 0 and routes[2].tickets is None
    ticket = routes[0].tickets[0]
    assert ticket.deployment == "acct-1"
    assert ticket.admission.settle_nowait(5, 5, None)  # used 10, not 50: 60 + 50 fit under 120 now
    assert await gate.enter(dep, None, routes[2]) is None
    assert limits.refusals["deployment_rate_limit"] == 1


async def test_deployment_requests_per_minute():
    from types import SimpleNamespace

    from sluice.policies.deployment_limits import DeploymentLimits

    gate = DeploymentLimits(Limits(LocalLimiter(), settings()), lambda req, model: (0, 0))
    dep = _Deployment("acct-2", rpm=2)
    answers = [await gate.enter(dep, None, SimpleNamespace(alias="gpt", tickets=None)) for _ in range(3)]
    assert answers[:2] == [None, None] and answers[2] > 0


async def test_admitting_without_an_await_matches_admit_and_hands_over_what_it_cannot_do():
    limits = Limits(LocalLimiter(), settings(models={"gpt": {"concurrency": 1}}, queue={"max_wait": 5}))
    caller = key({"rpm": 2, "tpm": 100})

    def tokens(hint):
        return 10, 5

    first = limits.admit_now(caller, None, "gpt", tokens)
    assert isinstance(first, Admission) and first.reservation.remaining[:2] == (1, 85)
    # the model's one slot is taken: a queueable refusal charges nothing and is handed to admit
    assert limits.admit_now(caller, None, "gpt", tokens) is LATER
    assert first.settle_nowait(10, 5, None)
    second = limits.admit_now(caller, None, "gpt", tokens)
    assert isinstance(second, Admission)
    second.settle_nowait(10, 5, None)
    with pytest.raises(GatewayError) as refused:  # the caller's own limit: refused at once, as admit does
        limits.admit_now(caller, None, "gpt", tokens)
    assert refused.value.code == "rate_limit_exceeded" and "key key_1" in refused.value.message
    assert limits.refusals["rate_limit_exceeded"] == 1


async def test_admitting_without_an_await_is_for_the_in_process_limiter_only():
    client = redis_client(f"redis://127.0.0.1:{_closed_port()}/0")
    shared = Limits(RedisLimiter(client, "t", timeout=0.5), settings(), shared=True)
    assert shared.admit_now(key({"rpm": 1}), None, "gpt", lambda hint: (1, 1)) is LATER
    await client.aclose()


async def test_admitting_without_an_await_counts_tokens_only_for_a_limit_that_needs_them():
    limits = Limits(LocalLimiter(), settings())
    asked = []

    def tokens(hint):
        asked.append(hint)
        return 30, 20

    assert isinstance(limits.admit_now(key({"rpm": 5}), None, "gpt", tokens, "gpt-4o"), Admission)
    assert asked == []
    admission = limits.admit_now(key({"rpm": 5, "output_tpm": 100}, key_id="key_2"), None, "gpt", tokens, "gpt-4o")
    assert asked == ["gpt-4o"] and admission.reservation.remaining == (4, 80)
    assert dict(admission.rate_headers)[b"x-ratelimit-remaining-tokens"] == b"80"


async def test_admitting_without_an_await_names_the_calls_own_amount_when_too_large():
    limits = Limits(LocalLimiter(), settings())
    with pytest.raises(GatewayError) as refused:
        limits.admit_now(key({"tpm": 100}), None, "gpt", lambda hint: (90, 50))
    assert refused.value.code == "request_too_large" and "needs 140 tokens" in refused.value.message


async def test_admitting_without_an_await_adds_an_end_users_limits():
    limits = Limits(LocalLimiter(), settings(end_user={"rpm": 1}))
    caller = key({"rpm": 10})
    first = limits.admit_now(caller, "alice", "gpt", lambda hint: (1, 1))
    assert isinstance(first, Admission) and first.reservation.remaining == (9, 0)
    with pytest.raises(GatewayError) as refused:
        limits.admit_now(caller, "alice", "gpt", lambda hint: (1, 1))
    assert "end user alice" in refused.value.message
    assert isinstance(limits.admit_now(caller, "bob", "gpt", lambda hint: (1, 1)), Admission)


async def test_a_shared_reservation_sent_at_once_survives_redis_losing_its_script(redis_url, redis_prefix):
    """Sluice's own client sends the reservation in the caller's turn (send_reserve); after a
    SCRIPT FLUSH (a restart, a failover) the call goes the limiter's own way, which loads it."""
    import redis.asyncio as redis

    client = PipelinedRedis(redis_url)
    inspect = redis.from_url(redis_url)
    limits = Limits(RedisLimiter(client, f"{redis_prefix}:sent", timeout=2.0), settings(), shared=True)
    caller = key({"rpm": 3, "tpm": 1000}, key_id="key_sent")
    try:
        first = await limits.admit(caller, None, (), demand())  # connects: the limiter's own way
        second = await limits.admit(caller, None, (), demand())  # connected: sent at once
        assert [a.reservation.remaining for a in (first, second)] == [(2, 985), (1, 970)]
        await inspect.script_flush()
        third = await limits.admit(caller, None, (), demand())
        assert third.reservation.remaining == (0, 955)
        with pytest.raises(GatewayError) as refused:
            await limits.admit(caller, None, (), demand())
        assert refused.value.code == "rate_limit_exceeded" and limits.failures == 0
        third.settle_nowait(10, 0, None)  # settled to 10 tokens: 5 of 15 given back
        await limits.limiter.drain()
        peek = await limits.limiter.reserve([Check(first.reservation.checks[1].key, 1000, 60.0, 0)])
        assert peek.remaining == (960,)
    finally:
        await client.aclose()
        await inspect.aclose()


async def test_headers_report_the_tightest_request_and_token_limits():
    limits = Limits(LocalLimiter(), settings())
    caller = key({"rpm": 10, "tpm": 1000}, team={"rpm": 3, "input_tpm": 50})
    admission = limits.admit_now(caller, None, "gpt", lambda hint: (20, 5))
    assert dict(admission.rate_headers) == {
        b"x-ratelimit-limit-requests": b"3", b"x-ratelimit-remaining-requests": b"2",
        b"x-ratelimit-reset-requests": b"1m0s", b"x-ratelimit-limit-tokens": b"50",
        b"x-ratelimit-remaining-tokens": b"30", b"x-ratelimit-reset-tokens": b"1m0s"}
