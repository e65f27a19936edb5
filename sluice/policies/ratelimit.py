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

import bisect
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, Union, runtime_checkable

from sluice.store.ratelimit_redis import RedisLimiter, RedisReservation

DEFAULT_LEASE = 300.0


@dataclass(slots=True)
class Check:
    """One limit to pass: ``amount`` more of ``key`` must fit under ``limit`` per ``window`` s.

    A value: never changed once made (``dataclasses.replace`` makes another). Not frozen because
    every limited call makes one, and a frozen dataclass's constructor costs several times more.

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


class _Log:
    """One sliding-window key: entries oldest first, and their running total.

    Entries are ``(expiry, seq)`` tuples of plain numbers and amounts live in a ``seq → amount``
    dict, so a busy window (a million entries at high rates) adds no objects for the cyclic
    garbage collector to walk. A key has one window, so expiries arrive in order and a deque
    replaces a heap; an out-of-order ``now`` (tests, replays) is inserted in place. Entries stay
    sorted, so the last one's expiry is when the log will be empty.
    """

    __slots__ = ("amounts", "entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.amounts: dict[int, int] = {}
        self.total = 0

    def purge(self, cutoff: float) -> None:
        entries, amounts = self.entries, self.amounts
        while entries and entries[0][0] <= cutoff:
            amount = amounts.pop(entries.popleft()[1], None)
            if amount is not None:
                self.total -= amount

    def add(self, expiry: float, seq: int, amount: int) -> None:
        if not self.entries or expiry >= self.entries[-1][0]:
            self.entries.append((expiry, seq))
        else:
            bisect.insort(self.entries, (expiry, seq))
        self.amounts[seq] = amount
        self.total += amount

    def wait_for(self, need: int, now: float) -> float:
        """Seconds until entries worth ``need`` have expired."""
        freed = 0
        for expiry, seq in self.entries:
            freed += self.amounts.get(seq, 0)
            if freed >= need:
                return max(expiry - now, 0.0)
        return math.inf


class _Gauge:
    """Holders in flight: ``seq → (lease expiry, amount)``. Released holders leave at once, so
    the dict holds at most ``limit`` entries; expired leases are swept only when a check fails."""

    __slots__ = ("holders", "total")

    def __init__(self) -> None:
        self.holders: dict[int, tuple[float, int]] = {}
        self.total = 0

    def purge(self, cutoff: float) -> None:
        for seq in [seq for seq, (expiry, _) in self.holders.items() if expiry <= cutoff]:
            self.total -= self.holders.pop(seq)[1]


class _Counter:
    """A period counter: its running total and when (monotonic) it resets."""

    __slots__ = ("ends", "total")

    def __init__(self, total: int, ends: float) -> None:
        self.total, self.ends = total, ends


_Slot = Union[_Log, _Gauge, _Counter]


class LocalReservation:
    __slots__ = ("_held", "checks", "failed", "ok", "remaining", "reset", "retry_after")

    def __init__(self, checks: tuple[Check, ...], failed: int | None, retry_after: float,
                 remaining: tuple[int, ...], reset: tuple[float, ...], held: list[list]) -> None:
        self.ok = failed is None
        self.checks, self.failed, self.retry_after = checks, failed, retry_after
        self.remaining, self.reset = remaining, reset
        self._held = held  # [slot, seq, amount charged] per check; seq 0 = nothing charged

    async def settle(self, amounts: Sequence[int | None]) -> None:
        self.settle_now(amounts)

    def settle_now(self, amounts: Sequence[int | None]) -> None:
        """``settle`` without awaiting: the in-process limiter never waits."""
        if len(amounts) != len(self.checks):
            raise ValueError("settle needs one amount (or None) per check")
        for held, amount in zip(self._held, amounts, strict=True):
            if amount is None:
                continue
            slot, seq, charged = held
            if not seq or amount == charged:
                continue
            if type(slot) is _Log:
                if seq not in slot.amounts:  # the entry already left the window: its usage no longer counts
                    continue
                slot.amounts[seq] = amount
            slot.total += amount - charged
            held[2] = amount

    async def release(self) -> None:
        self.release_now()

    def release_now(self) -> None:
        for slot, seq, _ in self._held:
            if isinstance(slot, _Gauge) and seq:
                holder = slot.holders.pop(seq, None)
                if holder is not None:
                    slot.total -= holder[1]


class LocalLimiter:
    """``Limiter`` for one process; ``clock`` is the time source when ``now`` is not given."""

    def __init__(self, *, lease: float = DEFAULT_LEASE, clock: Callable[[], float] = time.monotonic) -> None:
        self._slots: dict[str, _Log | _Gauge] = {}
        self._counters: dict[str, _Counter] = {}
        self._lease = lease
        self.clock = clock
        self._seq = itertools.count(1)

    def _counter(self, check: Check, now: float) -> _Counter | None:
        counter = self._counters.get(check.key)
        if counter is not None and counter.ends <= now:
            del self._counters[check.key]
            counter = None
        if counter is None and check.seed is not None:
            counter = self._counters[check.key] = _Counter(check.seed, now + (check.period or math.inf))
        return counter

    def _slot(self, check: Check, now: float) -> _Slot:
        if check.period is not None:
            return self._counter(check if check.seed is not None else replace(check, seed=0), now)  # type: ignore
        slot = self._slots.get(check.key)
        if slot is None:
            slot = self._slots[check.key] = _Gauge() if check.window == 0 else _Log()
        if type(slot) is _Log:
            entries = slot.entries
            if entries and entries[0][0] <= now:
                slot.purge(now)
        return slot

    async def reserve(self, checks: Sequence[Check], now: float | None = None,
                      seeder: Seeder | None = None) -> LocalReservation:
        checks = tuple(checks)
        at = self.clock() if now is None else now
        unseeded = [i for i, c in enumerate(checks) if c.period is not None and self._counter(c, at) is None]
        if unseeded:
            checks = await seeded(checks, unseeded, seeder)
            at = self.clock() if now is None else now  # the seeder awaited: time moved on
        return self.reserve_now(checks, at)

    def reserve_now(self, checks: tuple[Check, ...], now: float) -> LocalReservation:
        """Synchronous: nothing else runs between reading the totals and charging them.

        Every limited call runs this, so a sliding log's purge and charge are written out here
        rather than called, and a log's usage is read once."""
        numbers = self._seq
        if next(numbers) % 4096 == 0:
            self._sweep(now)
        get = self._slots.get
        slots: list[_Slot] = []
        failed, retry = None, 0.0
        for i, check in enumerate(checks):
            slot = get(check.key) if check.period is None else None
            if type(slot) is _Log:
                entries = slot.entries
                if entries and entries[0][0] <= now:
                    amounts = slot.amounts
                    while entries and entries[0][0] <= now:
                        amount = amounts.pop(entries.popleft()[1], None)
                        if amount is not None:
                            slot.total -= amount
            else:
                slot = self._slot(check, now)
            slots.append(slot)
            if slot.total + check.amount > check.limit:
                if type(slot) is _Gauge:
                    slot.purge(now)  # expired leases of holders that never came back
                if slot.total + check.amount > check.limit:
                    wait = self._wait(check, slot, now)
                    if failed is None or wait > retry:
                        failed, retry = i, wait
        held: list[list] = []
        remaining, reset = [], []
        for check, slot in zip(checks, slots):
            if type(slot) is _Log:
                amount = check.amount if failed is None else 0
                if amount:
                    seq = next(numbers)
                    expiry = now + check.window
                    entries = slot.entries  # type: ignore[union-attr]
                    if not entries or expiry >= entries[-1][0]:
                        entries.append((expiry, seq))
                    else:
                        bisect.insort(entries, (expiry, seq))
                    slot.amounts[seq] = amount  # type: ignore[union-attr]
                    slot.total += amount
                    held.append([slot, seq, amount])
                elif failed is None:
                    held.append([slot, 0, 0])
                left = check.limit - slot.total
                remaining.append(left if left > 0 else 0)
                if slot.entries:  # type: ignore[union-attr]
                    wait = slot.entries[-1][0] - now  # type: ignore[union-attr]
                    reset.append(wait if wait > 0 else 0.0)
                else:
                    reset.append(0.0)
                    self._slots.pop(check.key, None)
                continue
            if failed is None:
                held.append([slot, self._charge(slot, check, now), check.amount])
            left = check.limit - slot.total
            remaining.append(left if left > 0 else 0)
            reset.append(max(slot.ends - now, 0.0) if type(slot) is _Counter else 0.0)  # type: ignore[union-attr]
        return LocalReservation(checks, failed, retry, tuple(remaining), tuple(reset), held)

    def reserve_windows_now(self, checks: tuple[Check, ...], now: float,
                            amounts: Sequence[int] | None = None) -> LocalReservation:
        """``reserve_now`` for sliding-log checks only (``window > 0``, no period): every rate and
        token limit, so most reservations. ``amounts`` (one per check) stand for the checks' own,
        so a caller's checks can be made once and reused.

        One pass: each check is charged as soon as it passes, and a check that does not pass
        takes back what the ones before it charged (synchronous: nobody saw them) and leaves the
        refusal to ``reserve_now``, which works out which check binds and for how long."""
        numbers = self._seq
        if next(numbers) % 4096 == 0:
            self._sweep(now)
        if amounts is None:
            amounts = [c.amount for c in checks]
        slots = self._slots
        held: list[list] = []
        remaining, reset = [], []
        for check, amount in zip(checks, amounts):
            log = slots.get(check.key)
            if log is None:
                log = slots[check.key] = _Log()
            entries = log.entries  # type: ignore[union-attr]
            if entries and entries[0][0] <= now:
                held_amounts = log.amounts  # type: ignore[union-attr]
                while entries and entries[0][0] <= now:
                    expired = held_amounts.pop(entries.popleft()[1], None)
                    if expired is not None:
                        log.total -= expired
            if log.total + amount > check.limit:
                _take_back(held)
                return self.reserve_now(tuple(map(_with_amount, checks, amounts)), now)
            if amount:
                seq = next(numbers)
                expiry = now + check.window
                if not entries or expiry >= entries[-1][0]:
                    entries.append((expiry, seq))
                else:
                    bisect.insort(entries, (expiry, seq))
                log.amounts[seq] = amount  # type: ignore[union-attr]
                log.total += amount
                held.append([log, seq, amount])
            else:
                held.append([log, 0, 0])
            remaining.append(check.limit - log.total)  # it passed: never below zero
            if entries:  # all unexpired, sorted: the last leaves last
                reset.append(entries[-1][0] - now)
            else:
                reset.append(0.0)
                slots.pop(check.key, None)
        return LocalReservation(checks, None, 0.0, tuple(remaining), tuple(reset), held)

    def _sweep(self, now: float) -> None:
        """Drop counters of ended periods, idle gauges, and logs whose entries have all expired:
        a key that stopped calling would otherwise keep its last minute of entries for good."""
        for key in [k for k, c in self._counters.items() if c.ends <= now]:
            del self._counters[key]
        for key in [k for k, slot in self._slots.items()
                    if (not slot.entries or slot.entries[-1][0] <= now if type(slot) is _Log  # type: ignore[union-attr]
                        else not slot.holders)]:  # type: ignore[union-attr]
            del self._slots[key]

    @staticmethod
    def _wait(check: Check, slot: _Slot, now: float) -> float:
        if check.amount > check.limit:
            return math.inf
        if isinstance(slot, _Counter):
            return max(slot.ends - now, 0.0)
        if isinstance(slot, _Gauge):
            expiries = sorted(expiry for expiry, _ in slot.holders.values())
            need = slot.total + check.amount - check.limit
            return max(expiries[need - 1] - now, 0.0) if 0 < need <= len(expiries) else math.inf
        return slot.wait_for(slot.total + check.amount - check.limit, now)

    def _charge(self, slot: _Slot, check: Check, now: float) -> int:
        if check.amount == 0:
            return 0
        seq = next(self._seq)
        kind = type(slot)
        if kind is _Log:
            slot.add(now + check.window, seq, check.amount)  # type: ignore[union-attr]
        elif kind is _Gauge:
            slot.holders[seq] = (now + self._lease, check.amount)  # type: ignore[union-attr]
            slot.total += check.amount
        else:
            slot.total += check.amount
        return seq


def _take_back(held: list[list]) -> None:
    """Undo the charges ``reserve_windows_now`` made before a check failed, entries included
    (a log's last entry says when it empties)."""
    for log, seq, amount in held:
        if seq:
            entries = log.entries
            entry = next(e for e in reversed(entries) if e[1] == seq)
            entries.remove(entry)
            del log.amounts[seq]
            log.total -= amount


def _with_amount(check: Check, amount: int) -> Check:
    return check if check.amount == amount else replace(check, amount=amount)


__all__ = ["Check", "Limiter", "Seeder", "LocalLimiter", "LocalReservation", "RedisLimiter", "RedisReservation",
           "Reservation"]
