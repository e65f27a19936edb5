"""Exact limits: the ``Limiter`` protocol and its in-process implementation.

A call reserves against several limits at once (requests per minute of the key, tokens per
minute of the team, in-flight requests of the model…), each a ``Check``. ``reserve`` is
all-or-nothing: either every check has room and every one is charged, or none is charged and
the reservation says which check refused and when enough capacity frees up (``retry_after``).

Two kinds of check:

* ``window > 0`` — a **sliding log** over the last ``window`` seconds: every charge is an entry
  ``(timestamp, amount)``; the used amount is the sum of entries newer than ``now - window``.
  This is exact (no approximation error): an entry counts for precisely ``window`` seconds
  after it was charged. ``settle`` changes an entry's amount in place (tokens reserved from
  ``max_tokens`` → the tokens really used), keeping its timestamp; an entry that has already
  left the window is not re-added, because its usage no longer counts anyway.
* ``window == 0`` — a **concurrency gauge**: each entry is one holder until ``release()``.
  Entries carry a lease (``lease`` seconds, default 300) so a holder that crashed without
  releasing stops counting after the lease, instead of leaking capacity forever.

A key string names one counter with one window: give "per minute" and "per day" limits of the
same key different key strings (the Redis TTLs follow the window of the last write).

``settle`` may raise an amount past the limit — the usage happened; later reservations wait
until it slides out. ``LocalLimiter`` serves one process (embedded mode); its methods never
await while mutating, so the event loop makes each call atomic. The Redis implementation,
``sluice.store.ratelimit_redis.RedisLimiter``, has the same semantics across processes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sluice.store.ratelimit_redis import RedisLimiter, RedisReservation

DEFAULT_LEASE = 300.0


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to pass: ``amount`` more of ``key`` must fit under ``limit`` per ``window`` s.

    ``window == 0`` makes it a concurrency gauge (``limit`` simultaneous holders/units).
    """

    key: str
    limit: int
    window: float
    amount: int = 1

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window < 0 or self.amount < 0:
            raise ValueError(f"limit, window and amount must be >= 0 (check {self.key!r})")

    @property
    def gauge(self) -> bool:
        return self.window == 0


@runtime_checkable
class Reservation(Protocol):
    """The outcome of ``reserve``; when refused, nothing was charged.

    ``failed`` is the index (in the checks given) of the check that binds longest — the one
    with the largest ``retry_after``; ``retry_after`` is ``math.inf`` when the amount can never
    fit (amount > limit). ``remaining[i]`` is what is left under check ``i`` after this
    reservation (or before it, when refused); ``reset[i]`` is the seconds until check ``i``
    would be back to zero usage if nothing else were charged (OpenAI's ``x-ratelimit-reset-*``).
    """

    ok: bool
    checks: tuple[Check, ...]
    failed: int | None
    retry_after: float
    remaining: tuple[int, ...]
    reset: tuple[float, ...]

    async def settle(self, amounts: Sequence[int | None]) -> None:
        """Set check ``i``'s charged amount to ``amounts[i]`` (``None``: unchanged)."""

    async def release(self) -> None:
        """Give back the concurrency gauges' units (window checks keep their usage)."""


@runtime_checkable
class Limiter(Protocol):
    async def reserve(self, checks: Sequence[Check], now: float | None = None) -> Reservation: ...


class _Entry:
    __slots__ = ("amount", "live")

    def __init__(self, amount: int) -> None:
        self.amount = amount
        self.live = True


class _Log:
    """One key's entries in a heap by expiry score, and their running total."""

    __slots__ = ("heap", "newest", "total")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Entry]] = []
        self.total = 0
        self.newest = 0.0  # the latest expiry ever pushed: when the log will be empty

    def purge(self, cutoff: float) -> None:
        while self.heap and self.heap[0][0] <= cutoff:
            entry = heapq.heappop(self.heap)[2]
            if entry.live:
                self.total -= entry.amount
                entry.live = False

    def wait_for(self, need: int, now: float) -> float:
        """Seconds until entries worth ``need`` have expired (scores are expiry times)."""
        freed = 0
        for score, _, entry in sorted(self.heap, key=lambda item: (item[0], item[1])):
            if entry.live:
                freed += entry.amount
                if freed >= need:
                    return max(score - now, 0.0)
        return math.inf

    def reset(self, now: float) -> float:
        return max(self.newest - now, 0.0) if self.heap else 0.0


class LocalReservation:
    __slots__ = ("_held", "checks", "failed", "ok", "remaining", "reset", "retry_after")

    def __init__(self, checks: tuple[Check, ...], failed: int | None, retry_after: float,
                 remaining: tuple[int, ...], reset: tuple[float, ...],
                 held: list[tuple[_Log, _Entry | None]]) -> None:
        self.ok = failed is None
        self.checks, self.failed, self.retry_after = checks, failed, retry_after
        self.remaining, self.reset = remaining, reset
        self._held = held

    async def settle(self, amounts: Sequence[int | None]) -> None:
        if len(amounts) != len(self.checks):
            raise ValueError("settle needs one amount (or None) per check")
        for (log, entry), amount in zip(self._held, amounts, strict=True):
            if amount is None or entry is None or not entry.live:
                continue
            log.total += amount - entry.amount
            entry.amount = amount

    async def release(self) -> None:
        for (log, entry), check in zip(self._held, self.checks, strict=True):
            if check.gauge and entry is not None and entry.live:
                log.total -= entry.amount
                entry.live = False  # stays in the heap until its lease score passes


class LocalLimiter:
    """``Limiter`` for one process; ``clock`` is the time source when ``now`` is not given."""

    def __init__(self, *, lease: float = DEFAULT_LEASE, clock: Callable[[], float] = time.monotonic) -> None:
        self._logs: dict[str, _Log] = {}
        self._lease = lease
        self._clock = clock
        self._seq = itertools.count()

    def _log(self, key: str, check: Check, now: float) -> _Log:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        log.purge(now)  # scores are expiry times, for windows and gauges alike
        return log

    async def reserve(self, checks: Sequence[Check], now: float | None = None) -> LocalReservation:
        checks = tuple(checks)
        now = self._clock() if now is None else now
        logs = [self._log(c.key, c, now) for c in checks]
        failed, retry = None, 0.0
        for i, (check, log) in enumerate(zip(checks, logs, strict=True)):
            if log.total + check.amount > check.limit:
                wait = log.wait_for(log.total + check.amount - check.limit, now) \
                    if check.amount <= check.limit else math.inf
                if failed is None or wait > retry:
                    failed, retry = i, wait
        held: list[tuple[_Log, _Entry | None]] = []
        if failed is None:
            for check, log in zip(checks, logs, strict=True):
                held.append((log, self._charge(log, check, now)))
        remaining = tuple(max(c.limit - log.total, 0) for c, log in zip(checks, logs, strict=True))
        reset = tuple(0.0 if c.gauge else log.reset(now) for c, log in zip(checks, logs, strict=True))
        for check, log in zip(checks, logs, strict=True):
            if not log.heap:
                self._logs.pop(check.key, None)
        return LocalReservation(checks, failed, retry, remaining, reset, held)

    def _charge(self, log: _Log, check: Check, now: float) -> _Entry | None:
        if check.amount == 0:
            return None
        entry = _Entry(check.amount)
        expiry = now + (self._lease if check.gauge else check.window)
        heapq.heappush(log.heap, (expiry, next(self._seq), entry))
        log.newest = max(log.newest, expiry)
        log.total += check.amount
        return entry


__all__ = ["Check", "Limiter", "LocalLimiter", "LocalReservation", "RedisLimiter", "RedisReservation",
           "Reservation"]
