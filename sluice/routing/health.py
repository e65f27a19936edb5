"""Circuit breaker per deployment: stop sending traffic to a deployment that keeps failing.

States and the rule (one ``CircuitPolicy``, defaults ``failures=5, window=30, cooldown=30``):

- **closed** — traffic flows. The circuit **opens** when ``failures`` retryable failures
  (429, 5xx, timeouts, connection errors: ``GatewayError.retryable``) happen within ``window``
  seconds *with no success in between*. A success clears the streak, so a busy, healthy
  deployment with sporadic errors never trips; a client error (4xx other than 429) neither
  counts nor clears.
- **Retry-After**: a 429 that carries ``Retry-After`` opens the circuit at once for that long
  (capped at ``max_retry_after``; off with ``retry_after=False``): the upstream told us when
  it will take requests again, so asking sooner only earns more 429s.
- **open** — no traffic until ``retry_at`` (``cooldown`` after opening, or the Retry-After).
- **half-open** — after ``retry_at``, exactly one request (the *probe*) is let through at a
  time, across all instances sharing the store. Its success closes the circuit; its failure
  opens it again for ``cooldown``; a client error or cancellation releases it so the next
  request probes. A probe that never reports (its process died) is released after
  ``probe_timeout``.

State lives in a ``CircuitStore``: ``LocalCircuitStore`` (this process) or, with Redis,
``sluice.store.circuit_redis.RedisCircuitStore`` (every instance sees the same circuits).

**Consistency with a shared store.** ``allow()`` answers from a local view of each circuit that
is at most ``refresh`` seconds old (default 0.25 s), so a healthy deployment costs no Redis
round trip per request (one per ``refresh`` per deployment per instance) and a success costs
none either unless a failure streak is pending. Hence: *a circuit opened by any instance is
seen by every instance within ``refresh`` seconds (plus one Redis round trip)*; the half-open
probe is granted atomically in Redis, so exactly one request across all instances probes.
Failures always go to the store (one round trip each). Instance clocks are compared (the
store keeps timestamps), so they should be NTP-synchronised; skews of milliseconds are
irrelevant against cooldowns of seconds.

**Store unreachable → fail open.** If the store errors or takes longer than ``store_timeout``,
the breaker routes as if every circuit were closed, logs once, and tries the store again at
most every ``store_retry`` seconds (one request per interval may wait up to ``store_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sluice.routing.stats import StatsRegistry, is_retryable
from sluice.schema import GatewayError

log = logging.getLogger("sluice.routing.health")

Clock = Callable[[], float]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MAX_VIEWS = 10_000


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    enabled: bool = True
    failures: int = 5          # retryable failures in a row …
    window: float = 30.0       # … within this many seconds open the circuit
    cooldown: float = 30.0     # seconds open before the half-open probe
    probe_timeout: float = 60.0  # a probe that never reports is released after this long
    retry_after: bool = True   # a 429's Retry-After opens the circuit for that long
    max_retry_after: float = 300.0
    refresh: float = 0.25      # max age of the local view of a shared circuit
    store_timeout: float = 0.25
    store_retry: float = 1.0   # after a store failure, fail open this long before retrying it

    @property
    def keep(self) -> float:
        """How long a store keeps a circuit past its ``retry_at`` before it may expire."""
        return max(self.window, self.cooldown) + self.probe_timeout


class CircuitRow(NamedTuple):
    """A store's answer: the circuit as of ``now``, and what the call obtained."""

    state: str           # closed | open | half_open
    failures: int        # the current failure streak (closed state)
    opened_at: float     # 0.0 when never opened
    retry_at: float      # 0.0 when closed
    granted: bool        # acquire(): the caller may send this request
    holder: bool         # the caller (owner) holds the half-open probe


class CircuitStore(Protocol):
    """Atomic circuit transitions. ``owner`` identifies one breaker (one gateway instance).

    Methods return a row shaped like ``CircuitRow`` (a plain tuple will do: stores live in
    ``sluice.store`` and cannot import this module). ``keep`` is ``CircuitPolicy.keep``.
    """

    shared: bool  # True when other instances see the same circuits (enables the local view)

    async def acquire(self, name: str, now: float, owner: str, probe_timeout: float,
                      keep: float) -> tuple: ...

    async def success(self, name: str, now: float, owner: str, keep: float) -> tuple: ...

    async def failure(self, name: str, now: float, owner: str, failures: int, window: float,
                      cooldown: float, open_for: float, keep: float) -> tuple: ...

    async def release(self, name: str, now: float, owner: str, keep: float) -> tuple: ...

    async def peek(self, name: str, now: float, owner: str) -> tuple: ...


class _Circuit:
    """One circuit as ``LocalCircuitStore`` keeps it; ``fails`` are the streak's timestamps."""

    __slots__ = ("fails", "lease", "open", "opened_at", "probe", "retry_at")

    def __init__(self) -> None:
        self.open = False
        self.fails: list[float] = []
        self.opened_at = 0.0
        self.retry_at = 0.0
        self.probe = ""
        self.lease = 0.0

    def row(self, now: float, owner: str, granted: bool = False) -> CircuitRow:
        state = CLOSED if not self.open else OPEN if now < self.retry_at else HALF_OPEN
        holder = self.probe == owner and self.lease > now
        return CircuitRow(state, len(self.fails), self.opened_at, self.retry_at, granted, holder)

    def trip(self, now: float, seconds: float) -> None:
        self.open, self.fails, self.opened_at, self.retry_at = True, [], now, now + seconds
        self.probe, self.lease = "", 0.0


class LocalCircuitStore:
    """In-process circuits. The same transitions as the Lua script of ``RedisCircuitStore``."""

    shared = False

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}

    def is_closed(self, name: str) -> bool:
        """No open circuit for ``name``: ``acquire`` would grant without changing anything."""
        circuit = self._circuits.get(name)
        return circuit is None or not circuit.open

    def _get(self, name: str) -> _Circuit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = _Circuit()
        return circuit

    def _tidy(self, name: str, circuit: _Circuit) -> None:
        if not circuit.open and not circuit.fails:
            self._circuits.pop(name, None)

    async def acquire(self, name: str, now: float, owner: str, probe_timeout: float, keep: float) -> CircuitRow:
        c = self._circuits.get(name)
        if c is None or not c.open:
            return CircuitRow(CLOSED, len(c.fails) if c else 0, 0.0, 0.0, True, False)
        if now < c.retry_at or (c.probe and c.lease > now):
            return c.row(now, owner)
        c.probe, c.lease = owner, now + probe_timeout
        return c.row(now, owner, granted=True)

    async def success(self, name: str, now: float, owner: str, keep: float) -> CircuitRow:
        c = self._circuits.get(name)
        if c is None or not c.open or (now >= c.retry_at and c.probe == owner):
            self._circuits.pop(name, None)  # a success clears the streak; the probe's closes
            return CircuitRow(CLOSED, 0, 0.0, 0.0, False, False)
        return c.row(now, owner)

    async def failure(self, name: str, now: float, owner: str, failures: int, window: float,
                      cooldown: float, open_for: float, keep: float) -> CircuitRow:
        c = self._get(name)
        if c.open:
            if now >= c.retry_at and c.probe == owner:
                c.trip(now, max(cooldown, open_for))
            elif open_for > 0 and now + open_for > c.retry_at:
                c.retry_at = now + open_for
            return c.row(now, owner)
        if open_for > 0:
            c.trip(now, open_for)
            return c.row(now, owner)
        c.fails = [t for t in c.fails if now - t < window][-(failures - 1):] if failures > 1 else []
        c.fails.append(now)
        if len(c.fails) >= failures:
            c.trip(now, cooldown)
        return c.row(now, owner)

    async def release(self, name: str, now: float, owner: str, keep: float) -> CircuitRow:
        c = self._get(name)
        if c.probe == owner:
            c.probe, c.lease = "", 0.0
        row = c.row(now, owner)
        self._tidy(name, c)
        return row

    async def peek(self, name: str, now: float, owner: str) -> CircuitRow:
        c = self._circuits.get(name)
        return c.row(now, owner) if c is not None else CircuitRow(CLOSED, 0, 0.0, 0.0, False, False)


class _View:
    """This instance's last answer from the store for one circuit."""

    __slots__ = ("failures", "fetched", "holder", "opened_at", "retry_at", "state")

    def __init__(self, row: tuple, fetched: float) -> None:
        self.update(row, fetched)

    def update(self, row: tuple, fetched: float) -> None:
        self.state, self.failures, self.opened_at, self.retry_at, _, self.holder = row
        self.fetched = fetched


class CircuitBreaker:
    """Per-deployment circuits over a ``CircuitStore``; see the module docstring for the rules.

    ``policies`` overrides the default policy for named deployments.
    """

    def __init__(self, store: CircuitStore | None = None, policy: CircuitPolicy | None = None, *,
                 policies: dict[str, CircuitPolicy] | None = None, clock: Clock = time.time) -> None:
        self.store: CircuitStore = store if store is not None else LocalCircuitStore()
        self.policy = policy or CircuitPolicy()
        self.policies = dict(policies or {})
        self.owner = secrets.token_hex(8)
        self._clock = clock
        self._shared = bool(getattr(self.store, "shared", False))
        # In-process store: a closed circuit answers "allowed" without an awaited store call.
        self._closed_here = None if self._shared else getattr(self.store, "is_closed", None)
        self._views: dict[str, _View] = {}
        self._down_until = 0.0
        self._outage = False
        self._background: set[asyncio.Task] = set()

    def policy_for(self, name: str) -> CircuitPolicy:
        return self.policies.get(name, self.policy)

    # ---- the request path -----------------------------------------------------------------

    async def allow(self, name: str) -> bool:
        """May a request go to ``name`` now? In half-open, True reserves the single probe."""
        policy = self.policy_for(name)
        if not policy.enabled:
            return True
        if self._closed_here is not None and self._closed_here(name):
            return True
        now = self._clock()
        view = self._views.get(name)
        if view is not None and self._shared and now - view.fetched < policy.refresh:
            if view.state == CLOSED:
                return True
            if view.state == HALF_OPEN or now < view.retry_at:
                return False
        if view is not None:
            view.fetched = now  # concurrent callers use this view while the store answers
        row = await self._call(name, now, self.store.acquire, name, now, self.owner,
                               policy.probe_timeout, policy.keep)
        return True if row is None else bool(row[4])

    def healthy(self, name: str) -> bool:
        """A success would change nothing: closed, no failure counted (``record_success`` is a no-op)."""
        view = self._views.get(name)
        if view is None:
            return not self.policy_for(name).enabled
        return view.state == CLOSED and not view.failures

    async def record_success(self, name: str) -> None:
        view = self._views.get(name)
        if not self.policy_for(name).enabled:
            return
        if view is not None and view.state == CLOSED and not view.failures:
            return  # nothing to clear: no store call (no round trip) for a healthy deployment
        now = self._clock()
        await self._call(name, now, self.store.success, name, now, self.owner, self.policy_for(name).keep)

    async def record_failure(self, name: str, err: BaseException) -> None:
        """Count a retryable failure; a client error or cancellation only releases a held probe."""
        policy = self.policy_for(name)
        if not policy.enabled:
            return
        if not is_retryable(err):
            await self.release(name)
            return
        now = self._clock()
        await self._call(name, now, self.store.failure, name, now, self.owner, policy.failures,
                         policy.window, policy.cooldown, self._open_for(err, policy), policy.keep)

    async def release(self, name: str) -> None:
        """Give back the half-open probe without a verdict (e.g. the probe got a 400)."""
        view = self._views.get(name)
        if view is None or not view.holder:
            return
        now = self._clock()
        await self._call(name, now, self.store.release, name, now, self.owner, self.policy_for(name).keep)

    def release_soon(self, name: str) -> None:
        """``release`` from a place that cannot await (a cancelled attempt's cleanup)."""
        view = self._views.get(name)
        if view is None or not view.holder:
            return
        task = asyncio.get_running_loop().create_task(self.release(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def available(self, name: str) -> bool:
        """Cheap, non-reserving: False when this instance's view says the circuit is open.

        For strategies that filter candidates before choosing; ``allow`` stays the gate.
        """
        view = self._views.get(name)
        if view is None or view.state == CLOSED:
            return True
        return view.state == OPEN and self._clock() >= view.retry_at

    async def state(self, name: str) -> dict[str, Any]:
        """The circuit as the store has it now (falls back to the local view if unreachable)."""
        now = self._clock()
        row = await self._call(name, now, self.store.peek, name, now, self.owner)
        view = self._views.get(name)
        if row is None:
            row = (view.state, view.failures, view.opened_at, view.retry_at, False, view.holder) if view \
                else (CLOSED, 0, 0.0, 0.0, False, False)
        state, failures, opened_at, retry_at = row[0], int(row[1]), float(row[2]), float(row[3])
        return {"state": state, "failures": failures, "opened_at": opened_at or None,
                "retry_at": retry_at if state != CLOSED else None}

    # ---- helpers --------------------------------------------------------------------------

    def _open_for(self, err: BaseException, policy: CircuitPolicy) -> float:
        if not (policy.retry_after and isinstance(err, GatewayError) and err.status == 429):
            return 0.0
        return min(float(err.retry_after or 0.0), policy.max_retry_after)

    async def _call(self, name: str, now: float, op: Callable[..., Awaitable[tuple]], *args: Any) -> tuple | None:
        """One store operation; remembers the answer. ``None`` means: store down, fail open."""
        if not self._shared:
            row = await op(*args)
        else:
            if now < self._down_until:
                return None
            try:
                row = await asyncio.wait_for(op(*args), self.policy.store_timeout)
            except Exception as exc:  # noqa: BLE001 — any store failure means "fail open"
                self._store_failed(exc)
                return None
            if self._outage:
                self._outage = False
                log.info("circuit store reachable again")
        view = self._views.get(name)
        if view is not None:
            view.update(row, now)
            return row
        if len(self._views) >= MAX_VIEWS:
            # pass-through names are client-chosen: forget healthy circuits rather than grow forever
            self._views = {n: v for n, v in self._views.items() if v.state != CLOSED}
        self._views[name] = _View(row, now)
        return row

    def _store_failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self.policy.store_retry
        if not self._outage:
            self._outage = True
            log.warning("circuit store unreachable (%s: %s); routing as if every circuit were closed",
                        type(exc).__name__, exc)


def open_circuit_error(alias: str, breaker: CircuitBreaker, names: Iterable[str]) -> GatewayError:
    """What to answer when every deployment of ``alias`` is open: 503 with a Retry-After."""
    now = breaker._clock()
    waits = [v.retry_at - now for n in names if (v := breaker._views.get(n)) is not None and v.state == OPEN]
    retry_after = max(1.0, round(min(waits), 3)) if waits else None
    return GatewayError("upstream_unavailable", f"Every deployment of '{alias}' is temporarily unavailable.",
                        status=503, retry_after=retry_after)


async def deployments_report(names: Iterable[str], stats: StatsRegistry,
                             breaker: CircuitBreaker | None) -> list[dict[str, Any]]:
    """The rows of ``GET /health/deployments``: circuit state and live numbers per deployment."""
    names = list(names)
    states = await asyncio.gather(*(breaker.state(n) for n in names)) if breaker is not None \
        else [{"state": CLOSED, "failures": 0, "opened_at": None, "retry_at": None}] * len(names)
    return [{"deployment": name, **circuit, **stats.get(name).snapshot()} for name, circuit in zip(names, states)]


__all__ = [
    "CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitPolicy", "CircuitRow", "CircuitStore",
    "LocalCircuitStore", "deployments_report", "open_circuit_error",
]
