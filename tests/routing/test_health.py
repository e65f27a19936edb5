"""CircuitBreaker over the in-process store: the state machine, driven by an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from sluice.routing.health import (
    CircuitBreaker,
    CircuitPolicy,
    LocalCircuitStore,
    deployments_report,
    open_circuit_error,
)
from sluice.routing.stats import StatsRegistry
from sluice.schema import GatewayError


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def err(status: int, retry_after: float | None = None) -> GatewayError:
    return GatewayError.from_status(status, f"upstream said {status}", retry_after=retry_after)


async def fail(breaker: CircuitBreaker, name: str, times: int, status: int = 500, clock=None, step: float = 0.0):
    for _ in range(times):
        await breaker.record_failure(name, err(status))
        if clock is not None:
            clock.t += step


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(LocalCircuitStore(), CircuitPolicy(failures=5, window=30, cooldown=30), clock=clock)


async def test_opens_after_five_retryable_failures(breaker, clock):
    await fail(breaker, "d", 4)
    assert await breaker.allow("d")
    assert (await breaker.state("d"))["failures"] == 4
    await breaker.record_failure("d", err(503))
    assert not await breaker.allow("d")
    assert await breaker.state("d") == {"state": "open", "failures": 0, "opened_at": 1000.0, "retry_at": 1030.0}
    assert await breaker.allow("other")  # circuits are per deployment


async def test_failures_older_than_the_window_do_not_count(breaker, clock):
    for t in (0, 10, 20, 31, 40):
        clock.t = 1000 + t
        await breaker.record_failure("d", err(500))
    # at t=40 only 20, 31, 40 lie within the last 30 s
    assert (await breaker.state("d"))["state"] == "closed"
    assert (await breaker.state("d"))["failures"] == 3
    for t in (41, 42):
        clock.t = 1000 + t
        await breaker.record_failure("d", err(500))
    assert (await breaker.state("d"))["state"] == "open"


async def test_a_success_clears_the_streak(breaker):
    await fail(breaker, "d", 4)
    await breaker.record_success("d")
    await fail(breaker, "d", 4)
    assert (await breaker.state("d"))["state"] == "closed"
    assert (await breaker.state("d"))["failures"] == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_never_open_the_circuit(breaker, status):
    await fail(breaker, "d", 20, status=status)
    assert await breaker.state("d") == {"state": "closed", "failures": 0, "opened_at": None, "retry_at": None}
    assert await breaker.allow("d")


@pytest.mark.parametrize("error", [GatewayError("timeout", "t"), GatewayError("upstream_unavailable", "u"),
                                   ConnectionRefusedError(), TimeoutError()])
async def test_timeouts_and_connection_errors_count(breaker, error):
    for _ in range(5):
        await breaker.record_failure("d", error)
    assert not await breaker.allow("d")


async def test_cooldown_half_open_single_probe_then_closed(breaker, clock):
    await fail(breaker, "d", 5)
    clock.t = 1029.9
    assert not await breaker.allow("d")
    clock.t = 1030.0
    assert (await breaker.state("d"))["state"] == "half_open"
    assert await breaker.allow("d")  # the probe
    assert not await breaker.allow("d")  # only one at a time
    assert not await breaker.allow("d")
    await breaker.record_success("d")
    assert await breaker.state("d") == {"state": "closed", "failures": 0, "opened_at": None, "retry_at": None}
    assert all([await breaker.allow("d") for _ in range(3)])


async def test_probe_failure_reopens_for_another_cooldown(breaker, clock):
    await fail(breaker, "d", 5)
    clock.t = 1031.0
    assert await breaker.allow("d")
    await breaker.record_failure("d", err(502))
    assert await breaker.state("d") == {"state": "open", "failures": 0, "opened_at": 1031.0, "retry_at": 1061.0}
    clock.t = 1060.0
    assert not await breaker.allow("d")
    clock.t = 1061.0
    assert await breaker.allow("d")


async def test_half_open_grants_one_probe_under_concurrency(breaker, clock):
    await fail(breaker, "d", 5)
    clock.t = 1030.0
    granted = await asyncio.gather(*(breaker.allow("d") for _ in range(50)))
    assert granted.count(True) == 1


async def test_half_open_probe_is_exclusive_across_breakers_on_one_store(clock):
    store = LocalCircuitStore()
    a, b = (CircuitBreaker(store, CircuitPolicy(), clock=clock) for _ in range(2))
    await fail(a, "d", 5)
    assert not await b.allow("d")
    clock.t = 1030.0
    assert await b.allow("d")
    assert not await a.allow("d")
    await a.record_success("d")  # a does not hold the probe: no verdict
    assert (await a.state("d"))["state"] == "half_open"
    await b.record_success("d")
    assert await a.allow("d")


async def test_a_client_error_on_the_probe_releases_it(breaker, clock):
    await fail(breaker, "d", 5)
    clock.t = 1030.0
    assert await breaker.allow("d")
    await breaker.record_failure("d", err(400))
    assert (await breaker.state("d"))["state"] == "half_open"
    assert await breaker.allow("d")  # the next request probes


async def test_release_soon_gives_the_probe_back_after_cancellation(breaker, clock):
    await fail(breaker, "d", 5)
    clock.t = 1030.0
    assert await breaker.allow("d")
    breaker.release_soon("d")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await breaker.allow("d")


async def test_a_probe_that_never_reports_is_released_after_probe_timeout(clock):
    breaker = CircuitBreaker(LocalCircuitStore(), CircuitPolicy(probe_timeout=10), clock=clock)
    await fail(breaker, "d", 5)
    clock.t = 1030.0
    assert await breaker.allow("d")
    clock.t = 1039.9
    assert not await breaker.allow("d")
    clock.t = 1040.0
    assert await breaker.allow("d")


async def test_429_retry_after_opens_for_that_long(breaker, clock):
    await breaker.record_failure("d", err(429, retry_after=7))
    assert await breaker.state("d") == {"state": "open", "failures": 0, "opened_at": 1000.0, "retry_at": 1007.0}
    clock.t = 1007.0
    assert await breaker.allow("d")


async def test_retry_after_is_capped_and_can_be_turned_off(clock):
    capped = CircuitBreaker(LocalCircuitStore(), CircuitPolicy(max_retry_after=60), clock=clock)
    await capped.record_failure("d", err(429, retry_after=3600))
    assert (await capped.state("d"))["retry_at"] == 1060.0
    ignored = CircuitBreaker(LocalCircuitStore(), CircuitPolicy(retry_after=False), clock=clock)
    await ignored.record_failure("d", err(429, retry_after=3600))
    assert await ignored.state("d") == {"state": "closed", "failures": 1, "opened_at": None, "retry_at": None}
    # a 503 with Retry-After is an ordinary failure
    plain = CircuitBreaker(LocalCircuitStore(), CircuitPolicy(), clock=clock)
    await plain.record_failure("d", err(503, retry_after=30))
    assert (await plain.state("d"))["state"] == "closed"


async def test_a_later_retry_after_extends_an_open_circuit(breaker, clock):
    await fail(breaker, "d", 5)  # open until 1030
    clock.t = 1010.0
    await breaker.record_failure("d", err(429, retry_after=60))
    assert (await breaker.state("d"))["retry_at"] == 1070.0


async def test_disabled_policy_and_per_deployment_override(clock):
    breaker = CircuitBreaker(LocalCircuitStore(), CircuitPolicy(enabled=False), clock=clock,
                             policies={"fragile": CircuitPolicy(failures=1, cooldown=5)})
    await fail(breaker, "d", 50)
    assert await breaker.allow("d")
    await fail(breaker, "fragile", 1)
    assert not await breaker.allow("fragile")
    assert (await breaker.state("fragile"))["retry_at"] == 1005.0


async def test_available_is_a_non_reserving_peek(breaker, clock):
    assert breaker.available("d")
    await fail(breaker, "d", 5)
    assert not breaker.available("d")
    clock.t = 1030.0
    assert breaker.available("d")  # probe-able
    assert breaker.available("d")
    assert await breaker.allow("d")  # available() reserved nothing


async def test_open_circuit_error_is_503_with_retry_after(breaker, clock):
    await fail(breaker, "a", 5)
    clock.t = 1010.0
    await fail(breaker, "b", 5)
    await breaker.allow("a"), await breaker.allow("b")
    error = open_circuit_error("gpt-4o", breaker, ["a", "b"])
    assert (error.status, error.kind, error.retry_after) == (503, "upstream_unavailable", 20.0)
    assert "gpt-4o" in error.message


async def test_deployments_report(breaker, clock):
    stats = StatsRegistry(clock=clock)
    st = stats.get("a")
    started = st.begin()
    clock.t += 0.2
    st.end(started)
    started = st.begin()
    clock.t += 0.4
    st.end(started, first_token=True)
    st.begin()  # still in flight
    await fail(breaker, "b", 5)
    rows = await deployments_report(["a", "b"], stats, breaker)
    a, b = rows
    assert a["deployment"] == "a" and a["state"] == "closed"
    assert (a["latency_ms"], a["ttft_ms"], a["in_flight"], a["requests_this_minute"]) == (200.0, 400.0, 1, 3)
    assert a["error_rate"] == 0.0
    assert b["deployment"] == "b" and b["state"] == "open"
    assert b["retry_at"] == clock.t + 30
    assert b["latency_ms"] is None
    rows = await deployments_report(["a"], stats, None)
    assert rows[0]["state"] == "closed"
