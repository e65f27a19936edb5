"""Live per-deployment statistics for routing strategies, hedging and ``GET /health/deployments``.

In-process and cheap: every update is O(1) and lock-free (one event loop owns the numbers).
Each gateway instance keeps its own view: latency and load are properties of *this* instance's
traffic, which is what its routing decisions should be based on.

Definitions (the clock is injectable; by default ``time.monotonic``, in seconds):

- ``in_flight``: attempts begun and not yet ended.
- ``latency_ewma`` / ``ttft_ewma``: exponentially weighted moving average of successful
  attempts' durations, ``ewma = alpha * sample + (1 - alpha) * ewma`` (the first sample seeds
  it). A streaming attempt ends at its first chunk (that is when the router hands the stream
  over), so its duration is the time to first token and goes to ``ttft_ewma``; a whole-answer
  attempt goes to ``latency_ewma``. Failed attempts give no latency sample: a fast 500 must not
  make a broken deployment look quick.
- ``latency_p95`` / ``ttft_p95``: nearest-rank 95th percentile of the last ``reservoir``
  successful samples (a ring buffer; computed on read, cached until the next sample).
- ``error_rate``: retryable failures (429, 5xx, timeouts, connection errors) / finished attempts
  over the last ``window`` seconds, kept in ``buckets`` time buckets (so the window slides in
  steps of ``window / buckets``). A client error (a 400) is a finished attempt, not an error;
  a cancelled attempt (the client went away) counts for neither.
- ``rpm_used`` / ``tpm_used``: attempts begun and tokens added in the current minute, a fixed
  window of 60 s on the clock (for usage-aware routing against an upstream account's RPM/TPM).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from sluice.schema import GatewayError

Clock = Callable[[], float]
MAX_DEPLOYMENTS = 10_000


def is_retryable(err: BaseException | None) -> bool:
    """Whether a failure says something about the deployment's health (429, 5xx, timeout, network)."""
    if err is None or isinstance(err, asyncio.CancelledError):
        return False
    if isinstance(err, GatewayError):
        return err.retryable
    return isinstance(err, (TimeoutError, ConnectionError, OSError))


class _Ring:
    """The last ``size`` samples, with a cached nearest-rank percentile."""

    __slots__ = ("_data", "_next", "_p95", "_size")

    def __init__(self, size: int) -> None:
        self._data: list[float] = []
        self._next = 0
        self._p95: float | None = None
        self._size = size

    def add(self, value: float) -> None:
        if len(self._data) < self._size:
            self._data.append(value)
        else:
            self._data[self._next] = value
            self._next = (self._next + 1) % self._size
        self._p95 = None

    def p95(self) -> float | None:
        if self._p95 is None and self._data:
            ordered = sorted(self._data)
            self._p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
        return self._p95


class DeploymentStats:
    """Numbers for one deployment; see the module docstring for their exact meaning."""

    def __init__(self, name: str, *, clock: Clock = time.monotonic, alpha: float = 0.2,
                 window: float = 60.0, buckets: int = 6, reservoir: int = 128) -> None:
        self.name = name
        self._clock = clock
        self._alpha = alpha
        self.in_flight = 0
        self.latency_ewma: float | None = None
        self.ttft_ewma: float | None = None
        self.last_error: dict[str, Any] | None = None
        self._latency = _Ring(reservoir)
        self._ttft = _Ring(reservoir)
        self._width = window / buckets
        self._epochs = [-1] * buckets
        self._total = [0] * buckets
        self._errors = [0] * buckets
        self._minute = -1
        self._rpm = 0
        self._tpm = 0

    # ---- updates --------------------------------------------------------------------------

    def begin(self) -> float:
        """An attempt starts; returns its start time, to hand back to ``end``."""
        now = self._clock()
        self.in_flight += 1
        self._roll_minute(now)
        self._rpm += 1
        return now

    def withdraw(self) -> None:
        """An attempt begun but never sent: as if it had not begun."""
        self.in_flight -= 1
        self._rpm = max(self._rpm - 1, 0)

    def end(self, started: float, error: BaseException | None = None, *, first_token: bool = False) -> float:
        """An attempt begun at ``started`` is over; ``error`` is what it raised, if anything.

        ``first_token``: the attempt ended at a stream's first chunk (its duration is a TTFT).
        Returns the attempt's duration in seconds.
        """
        now = self._clock()
        elapsed = now - started
        self.in_flight -= 1
        if isinstance(error, asyncio.CancelledError):
            return elapsed
        failed = is_retryable(error)
        self._count_outcome(now, failed)
        if error is not None:
            self._note_error(now, error)
        if error is None:
            self._sample(elapsed, first_token)
        return elapsed

    def attempt(self, *, first_token: bool = False) -> _Attempt:
        """``with stats.attempt(): await call()`` — begin/end around a block, exception included."""
        return _Attempt(self, first_token)

    def add_tokens(self, tokens: int) -> None:
        """Tokens an attempt used (or is estimated to use), counted in the current minute."""
        self._roll_minute(self._clock())
        self._tpm += tokens

    def _sample(self, elapsed: float, first_token: bool) -> None:
        a = self._alpha
        if first_token:
            self.ttft_ewma = elapsed if self.ttft_ewma is None else a * elapsed + (1 - a) * self.ttft_ewma
            self._ttft.add(elapsed)
        else:
            self.latency_ewma = elapsed if self.latency_ewma is None else a * elapsed + (1 - a) * self.latency_ewma
            self._latency.add(elapsed)

    def _count_outcome(self, now: float, failed: bool) -> None:
        epoch = int(now // self._width)
        slot = epoch % len(self._epochs)
        if self._epochs[slot] != epoch:
            self._epochs[slot], self._total[slot], self._errors[slot] = epoch, 0, 0
        self._total[slot] += 1
        if failed:
            self._errors[slot] += 1

    def _note_error(self, now: float, error: BaseException) -> None:
        if isinstance(error, GatewayError):
            self.last_error = {"at": now, "kind": error.kind, "status": error.status, "message": error.message[:300]}
        else:
            self.last_error = {"at": now, "kind": type(error).__name__, "status": None, "message": str(error)[:300]}

    def _roll_minute(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._rpm, self._tpm = minute, 0, 0

    # ---- reads ----------------------------------------------------------------------------

    @property
    def rpm_used(self) -> int:
        self._roll_minute(self._clock())
        return self._rpm

    @property
    def tpm_used(self) -> int:
        self._roll_minute(self._clock())
        return self._tpm

    def _window_counts(self) -> tuple[int, int]:
        epoch = int(self._clock() // self._width)
        oldest = epoch - len(self._epochs)
        total = errors = 0
        for i, e in enumerate(self._epochs):
            if e > oldest:
                total += self._total[i]
                errors += self._errors[i]
        return total, errors

    @property
    def error_rate(self) -> float:
        total, errors = self._window_counts()
        return errors / total if total else 0.0

    @property
    def window_requests(self) -> int:
        return self._window_counts()[0]

    @property
    def latency_p95(self) -> float | None:
        return self._latency.p95()

    @property
    def ttft_p95(self) -> float | None:
        return self._ttft.p95()

    def snapshot(self) -> dict[str, Any]:
        """The numbers in display units (ms), for the health report."""
        last = self.last_error
        if last is not None:
            last = {**last, "seconds_ago": round(self._clock() - last["at"], 3)}
            del last["at"]
        return {
            "latency_ms": _ms(self.latency_ewma),
            "ttft_ms": _ms(self.ttft_ewma),
            "latency_p95_ms": _ms(self.latency_p95),
            "ttft_p95_ms": _ms(self.ttft_p95),
            "error_rate": round(self.error_rate, 4),
            "window_requests": self.window_requests,
            "in_flight": self.in_flight,
            "requests_this_minute": self.rpm_used,
            "tokens_this_minute": self.tpm_used,
            "last_error": last,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class _Attempt:
    __slots__ = ("_first_token", "_started", "_stats")

    def __init__(self, stats: DeploymentStats, first_token: bool) -> None:
        self._stats = stats
        self._first_token = first_token
        self._started = 0.0

    def __enter__(self) -> Self:
        self._started = self._stats.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stats.end(self._started, exc, first_token=self._first_token)


class StatsRegistry:
    """``DeploymentStats`` by deployment name, created on first use with shared settings."""

    def __init__(self, *, clock: Clock = time.monotonic, **settings: Any) -> None:
        self._clock = clock
        self._settings = settings
        self._by_name: dict[str, DeploymentStats] = {}

    def get(self, name: str) -> DeploymentStats:
        stats = self._by_name.get(name)
        if stats is None:
            if len(self._by_name) >= MAX_DEPLOYMENTS:
                # pass-through names are client-chosen: forget idle ones rather than grow forever
                self._by_name = {n: s for n, s in self._by_name.items() if s.in_flight}
            stats = self._by_name[name] = DeploymentStats(name, clock=self._clock, **self._settings)
        return stats

    def names(self) -> Iterable[str]:
        return self._by_name.keys()

    # ---- the LiveStats protocol of sluice.routing.strategies (reads never create entries) ----

    def inflight(self, name: str) -> int:
        stats = self._by_name.get(name)
        return stats.in_flight if stats is not None else 0

    def latency(self, name: str, stream: bool) -> float | None:
        """Latency EWMA in seconds; for a stream, its time-to-first-token EWMA."""
        stats = self._by_name.get(name)
        if stats is None:
            return None
        return stats.ttft_ewma if stream else stats.latency_ewma

    def usage_this_minute(self, name: str) -> tuple[int, int]:
        stats = self._by_name.get(name)
        return (stats.rpm_used, stats.tpm_used) if stats is not None else (0, 0)

    def p95(self, name: str, stream: bool) -> float | None:
        """Recent p95 latency in seconds (TTFT for streams): a hedging threshold."""
        stats = self._by_name.get(name)
        if stats is None:
            return None
        return stats.ttft_p95 if stream else stats.latency_p95


__all__ = ["DeploymentStats", "StatsRegistry", "is_retryable"]
