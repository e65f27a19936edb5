"""DeploymentStats: the numbers routing strategies and hedging read, checked against hand math."""

from __future__ import annotations

import asyncio

import pytest

from sluice.routing.stats import DeploymentStats, StatsRegistry, is_retryable
from sluice.schema import GatewayError


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _timed(stats: DeploymentStats, clock: Clock, seconds: float, error=None, first_token=False) -> None:
    started = stats.begin()
    clock.t += seconds
    stats.end(started, error, first_token=first_token)


def test_in_flight_counts_begun_not_ended():
    clock = Clock()
    st = DeploymentStats("d", clock=clock)
    a, b = st.begin(), st.begin()
    assert st.in_flight == 2
    st.end(a)
    assert st.in_flight == 1
    st.end(b, asyncio.CancelledError())
    assert st.in_flight == 0


def test_latency_and_ttft_ewma_are_separate():
    clock = Clock()
    st = DeploymentStats("d", clock=clock, alpha=0.2)
    _timed(st, clock, 1.0)
    assert st.latency_ewma == pytest.approx(1.0)
    _timed(st, clock, 2.0)
    assert st.latency_ewma == pytest.approx(0.2 * 2.0 + 0.8 * 1.0)  # 1.2
    assert st.ttft_ewma is None
    _timed(st, clock, 0.5, first_token=True)
    _timed(st, clock, 0.1, first_token=True)
    assert st.ttft_ewma == pytest.approx(0.2 * 0.1 + 0.8 * 0.5)  # 0.42
    assert st.latency_ewma == pytest.approx(1.2)


def test_failed_attempts_give_no_latency_sample():
    clock = Clock()
    st = DeploymentStats("d", clock=clock)
    _timed(st, clock, 3.0)
    _timed(st, clock, 0.01, GatewayError("server_error", "boom"))
    assert st.latency_ewma == pytest.approx(3.0)
    assert st.latency_p95 == pytest.approx(3.0)


def test_error_rate_counts_only_retryable_failures_and_skips_cancellations():
    clock = Clock()
    st = DeploymentStats("d", clock=clock)
    for _ in range(3):
        _timed(st, clock, 0.1)
    _timed(st, clock, 0.1, GatewayError.from_status(500, "upstream broke"))
    _timed(st, clock, 0.1, GatewayError.from_status(400, "bad request"))  # finished, not an error
    _timed(st, clock, 0.1, asyncio.CancelledError())  # neither
    assert st.window_requests == 5
    assert st.error_rate == pytest.approx(1 / 5)
    assert st.last_error["status"] == 400 and st.last_error["kind"] == "invalid_request"


def test_error_rate_window_slides_by_bucket():
    clock = Clock(0.0)
    st = DeploymentStats("d", clock=clock, window=60.0, buckets=6)
    _timed(st, clock, 0.0, GatewayError.from_status(503, "down"))  # bucket [0, 10)
    clock.t = 35.0
    _timed(st, clock, 0.0)  # bucket [30, 40)
    assert st.error_rate == pytest.approx(0.5)
    clock.t = 65.0  # the [0, 10) bucket has left the 60 s window
    assert st.window_requests == 1
    assert st.error_rate == 0.0
    clock.t = 100.0
    assert st.window_requests == 0 and st.error_rate == 0.0


def test_rpm_and_tpm_reset_each_minute():
    clock = Clock(120.0)
    st = DeploymentStats("d", clock=clock)
    for _ in range(3):
        st.end(st.begin())
    st.add_tokens(700)
    st.add_tokens(50)
    assert (st.rpm_used, st.tpm_used) == (3, 750)
    clock.t = 179.9
    assert (st.rpm_used, st.tpm_used) == (3, 750)
    clock.t = 180.0
    assert (st.rpm_used, st.tpm_used) == (0, 0)
    st.begin()
    assert st.rpm_used == 1


def test_p95_nearest_rank_over_a_bounded_ring():
    clock = Clock()
    st = DeploymentStats("d", clock=clock, reservoir=20)
    for ms in range(1, 101):
        _timed(st, clock, ms / 1000)
    # the ring holds the last 20 samples, 81..100 ms; nearest rank ceil(0.95 * 20) = 19th → 99 ms
    assert st.latency_p95 == pytest.approx(0.099)
    _timed(st, clock, 5.0)  # replaces 81 ms: 82..100 ms + 5 s → 19th of 20 is 100 ms
    assert st.latency_p95 == pytest.approx(0.100)
    assert st.ttft_p95 is None


def test_attempt_context_manager_records_the_exception_and_reraises():
    clock = Clock()
    st = DeploymentStats("d", clock=clock)
    with pytest.raises(GatewayError), st.attempt():
        assert st.in_flight == 1
        clock.t += 0.3
        raise GatewayError("timeout", "upstream timed out")
    assert st.in_flight == 0
    assert st.error_rate == 1.0
    with st.attempt(first_token=True):
        clock.t += 0.25
    assert st.ttft_ewma == pytest.approx(0.25)


def test_snapshot_in_milliseconds():
    clock = Clock()
    st = DeploymentStats("d", clock=clock)
    _timed(st, clock, 0.1234)
    _timed(st, clock, 0.05, GatewayError.from_status(429, "slow down"))
    clock.t += 2.0
    snap = st.snapshot()
    assert snap["latency_ms"] == 123.4
    assert snap["ttft_ms"] is None
    assert snap["error_rate"] == 0.5
    assert snap["requests_this_minute"] == 2
    assert snap["in_flight"] == 0
    assert snap["last_error"] == {"kind": "rate_limit", "status": 429, "message": "slow down", "seconds_ago": 2.0}


def test_registry_shares_one_stats_per_name():
    reg = StatsRegistry(clock=Clock(), alpha=0.5)
    assert reg.get("a") is reg.get("a")
    assert reg.get("a") is not reg.get("b")
    assert sorted(reg.names()) == ["a", "b"]


def test_registry_serves_the_strategies_live_stats():
    from sluice.routing.strategies import least_busy, lowest_latency, usage_aware

    class Dep:
        def __init__(self, name, rpm=None):
            self.name, self.weight, self.priority, self.rpm, self.tpm = name, 1.0, 0, rpm, None

    clock = Clock()
    reg = StatsRegistry(clock=clock)
    fast, slow = Dep("fast", rpm=10), Dep("slow", rpm=10)
    for name, seconds in (("fast", 0.1), ("slow", 0.9)):
        _timed(reg.get(name), clock, seconds)
        _timed(reg.get(name), clock, seconds * 3, first_token=True)
    reg.get("slow").begin()
    reg.get("slow").begin()
    assert (reg.inflight("slow"), reg.inflight("fast"), reg.inflight("idle")) == (2, 0, 0)
    assert reg.latency("fast", False) == pytest.approx(0.1)
    assert reg.latency("fast", True) == pytest.approx(0.3)
    assert reg.latency("idle", False) is None
    assert reg.usage_this_minute("slow") == (4, 0)
    assert reg.usage_this_minute("idle") == (0, 0)
    assert reg.p95("slow", True) == pytest.approx(2.7)
    assert "idle" not in reg.names()  # reads create nothing
    assert [d.name for d in lowest_latency([slow, fast], stats=reg)] == ["fast", "slow"]
    assert least_busy([slow, fast], stats=reg)[0].name == "fast"
    assert usage_aware([slow, fast], stats=reg)[0].name == "fast"  # 2 of 10 used vs 4 of 10


def test_is_retryable():
    assert is_retryable(GatewayError.from_status(429, "x"))
    assert is_retryable(GatewayError.from_status(502, "x"))
    assert is_retryable(GatewayError("timeout", "x"))
    assert is_retryable(ConnectionResetError())
    assert not is_retryable(GatewayError.from_status(400, "x"))
    assert not is_retryable(GatewayError.from_status(404, "x"))
    assert not is_retryable(asyncio.CancelledError())
    assert not is_retryable(None)
    assert not is_retryable(ValueError("a bug, not an upstream failure"))
