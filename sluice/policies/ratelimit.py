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

* ``period`` set — a **period counter** (budgets): a plain running total that resets when its
  period ends, ``period`` seconds from now (``math.inf``: never). Spend over a month is one
  number, not a log of every call. A counter that does not exist yet (a new process, a Redis
  that restarted, a new period) must be **seeded** with what was already spent — the ledger
  knows — so ``reserve`` takes a ``seeder``: it is called with the checks that need a starting
  value, and the reservation is tried again with them. The key string must name the period
  (e.g. include its start), so the next period is a new counter.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
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
    period: float | None = None  # a period counter: seconds until it resets (inf: never)
    seed: int | None = None  # a period counter's starting value when it does not exist yet

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window < 0 or self.amount < 0:
            raise ValueError(f"limit, window and amount must be >= 0 (check {self.key!r})")
        if self.period is not None and self.period <= 0:
            raise ValueError(f"a period counter needs period > 0 (check {self.key!r})")

    @property
    def gauge(self) -> bool:
        return self.window == 0 and self.period is None

    @property
    def counter(self) -> bool:
        return self.period is not None


Seeder = Callable[[list[Check]], Awaitable[list[int]]]


async def seeded(checks: tuple[Check, ...], unseeded: Sequence[int], seeder: Seeder | None) -> tuple[Check, ...]:
    """``checks`` with starting values for the counters at ``unseeded`` (indexes), from ``seeder``."""
    if seeder is None:
        raise ValueError("a period counter needs a seeder to learn what was already spent")
    values = await seeder([checks[i] for i in unseeded])
    out = list(checks)
    for i, value in zip(unseeded, values, strict=True):
        out[i] = replace(checks[i], seed=int(value))
    return tuple(out)


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
    async def reserve(self, checks: Sequence[Check], now: float | None = None,
                      seeder: Seeder | None = None) -> Reservation: ...


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


class _Counter:
    """A period counter: its running total and when (monotonic) it resets."""

    __slots__ = ("ends", "total")

    def __init__(self, total: int, ends: float) -> None:
        self.total, self.ends = total, ends


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
        self._counters: dict[str, _Counter] = {}
        self._lease = lease
        self._clock = clock
        self._seq = itertools.count()

    def _log(self, key: str, now: float) -> _Log:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        log.purge(now)  # scores are expiry times, for windows and gauges alike
        return log

    def _counter(self, check: Check, now: float) -> _Counter | None:
        counter = self._counters.get(check.key)
        if counter is not None and counter.ends <= now:
            del self._counters[check.key]
            counter = None
        if counter is None and check.seed is not None:
            counter = self._counters[check.key] = _Counter(check.seed, now + (check.period or math.inf))
        return counter

    async def reserve(self, checks: Sequence[Check], now: float | None = None,
                      seeder: Seeder | None = None) -> LocalReservation:
        checks = tuple(checks)
        at = self._clock() if now is None else now
        unseeded = [i for i, c in enumerate(checks) if c.counter and self._counter(c, at) is None]
        if unseeded:
            checks = await seeded(checks, unseeded, seeder)
            at = self._clock() if now is None else now  # the seeder awaited: time moved on
        if next(self._seq) % 4096 == 0:
            self._sweep(at)
        return self._reserve(checks, at)

    def _sweep(self, now: float) -> None:
        """Drop counters of ended periods that nobody asked about again."""
        for key in [k for k, c in self._counters.items() if c.ends <= now]:
            del self._counters[key]

    def _reserve(self, checks: tuple[Check, ...], now: float) -> LocalReservation:
        """Synchronous: nothing else runs between reading the totals and charging them."""
        slots: list[_Log | _Counter] = [
            self._counter(c if c.seed is not None else replace(c, seed=0), now) if c.counter  # type: ignore[misc]
            else self._log(c.key, now) for c in checks]
        failed, retry = None, 0.0
        for i, (check, slot) in enumerate(zip(checks, slots, strict=True)):
            if slot.total + check.amount > check.limit:
                wait = self._wait(check, slot, now)
                if failed is None or wait > retry:
                    failed, retry = i, wait
        held: list[tuple[_Log | _Counter, _Entry | None]] = []
        if failed is None:
            for check, slot in zip(checks, slots, strict=True):
                held.append((slot, self._charge(slot, check, now)))
        remaining = tuple(max(c.limit - slot.total, 0) for c, slot in zip(checks, slots, strict=True))
        reset = tuple(self._reset(c, slot, now) for c, slot in zip(checks, slots, strict=True))
        for check, slot in zip(checks, slots, strict=True):
            if isinstance(slot, _Log) and not slot.heap:
                self._logs.pop(check.key, None)
        return LocalReservation(checks, failed, retry, remaining, reset, held)  # type: ignore[arg-type]

    @staticmethod
    def _wait(check: Check, slot: _Log | _Counter, now: float) -> float:
        if check.amount > check.limit:
            return math.inf
        if isinstance(slot, _Counter):
            return max(slot.ends - now, 0.0)
        return slot.wait_for(slot.total + check.amount - check.limit, now)

    @staticmethod
    def _reset(check: Check, slot: _Log | _Counter, now: float) -> float:
        if isinstance(slot, _Counter):
            return max(slot.ends - now, 0.0)
        return 0.0 if check.gauge else slot.reset(now)

    def _charge(self, slot: _Log | _Counter, check: Check, now: float) -> _Entry | None:
        if check.amount == 0:
            return None
        entry = _Entry(check.amount)
        slot.total += check.amount
        if isinstance(slot, _Log):
            expiry = now + (self._lease if check.gauge else check.window)
            heapq.heappush(slot.heap, (expiry, next(self._seq), entry))
            slot.newest = max(slot.newest, expiry)
        return entry


__all__ = ["Check", "Limiter", "Seeder", "LocalLimiter", "LocalReservation", "RedisLimiter", "RedisReservation",
           "Reservation"]
