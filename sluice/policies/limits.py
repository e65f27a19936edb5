"""The limits stage: rate, token and concurrency limits and budgets, reserved before a call and
settled after it, exactly, across every instance that shares the limiter.

Which limits a call meets (each becomes one ``Check`` of one all-or-nothing reservation):

* the caller's, from the database — its key, its user and its team (``Principal.limits``):
  ``rpm``, ``tpm``, ``input_tpm``, ``output_tpm``, ``concurrency``, and the same per model alias
  under ``models`` (the (key|user|team, model) pair);
* each end user's (``limits.end_user`` in sluice.yaml), keyed by the OpenAI ``user`` field or
  the ``x-sluice-end-user`` header;
* the model alias's, for all callers together (``limits.models``), and its **capacity**: the
  sum of its deployments' declared ``rpm``/``tpm`` (the upstream accounts' limits);
* budgets in USD (``sluice.policies.budgets``).

Tokens are reserved before the call — the prompt counted offline plus ``max_tokens`` (or
``limits.default_max_tokens``) — and settled to what the provider reported when the call ends:
a finished stream, a failure, or a client that went away (then whatever usage is known, else
the reservation stands: better to over-count a call than to let a limit leak).

When the refusal comes from the model's own limits or capacity (not the caller's), the call
waits in a per-alias queue ordered by its key's priority class, up to ``queue.max_wait``, and
then gets 429 with ``Retry-After``. The queue's order holds per instance; capacity itself is
shared exactly through the limiter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, Protocol

from sluice.policies.budgets import BudgetBook, BudgetRule, Subject, to_nano
from sluice.policies.capacity_queue import CapacityQueue
from sluice.policies.ratelimit import Check, Limiter, LocalLimiter, Reservation
from sluice.schema import GatewayError
from sluice.store.ratelimit_redis import Line

log = logging.getLogger("sluice.limits")

WINDOW = 60.0  # every rate limit is "per minute", sliding
PRIORITY_RANK = {"interactive": 0, "default": 1, "batch": 2}
_MEASURES = (("rpm", "requests"), ("tpm", "tokens"), ("input_tpm", "input"), ("output_tpm", "output"),
             ("concurrency", "concurrency"))
_UNITS = {"requests": "requests per minute", "tokens": "tokens per minute", "input": "input tokens per minute",
          "output": "output tokens per minute", "concurrency": "requests in flight"}


class LimitSettings(Protocol):
    """The shape of ``sluice.config.LimitsConfig`` (policies may not import config)."""

    redis_failure: str
    default_max_tokens: int
    end_user: Any
    models: dict[str, Any]
    queue: Any
    default_priority: str


@dataclass(slots=True)
class Demand:
    """What a call asks for: its alias, tokens, and (lazily) the most it can cost in USD."""

    alias: str
    input_tokens: int
    output_tokens: int
    max_cost: Callable[[], float] | None = None


@dataclass(slots=True)
class Planned:
    """One check of a call's reservation and what it stands for. A value, shared between calls
    when its amount is always one: never changed once made (not frozen, as ``Check``)."""

    check: Check
    measure: str  # requests | tokens | input | output | concurrency | budget
    owner: str  # for messages: "key key_…", "model gpt-4o", "end user alice"
    queueable: bool = False  # the model's own limits: wait in the queue rather than refuse at once
    budget: BudgetRule | None = None


def _amount(measure: str, demand: Demand) -> int:
    if measure == "tokens":
        return demand.input_tokens + demand.output_tokens
    if measure == "input":
        return demand.input_tokens
    if measure == "output":
        return demand.output_tokens
    return 1


_UNIT_MEASURES = frozenset(("requests", "concurrency"))  # their amount is always one
_TOKEN_KINDS = {"tokens": 0, "input": 1, "output": 2}
_SETTLED_KINDS = {**_TOKEN_KINDS, "budget": 3}


class _Compiled:
    """A (caller's limits, alias) pair's checks and what they stand for, made once
    (``Limits._compiled``). A check that counts tokens holds amount 0 here: the call's own is
    made per call at ``tokens``' indexes (kind 0: input + output, 1: input, 2: output)."""

    __slots__ = ("amounts", "checks", "planned", "queueable", "scoped", "shape", "tokens", "windows_only")

    def __init__(self, scoped: Any, planned: list[Planned]) -> None:
        self.scoped = scoped  # the principal's limits tuple this was made from (compared by identity)
        self.planned = tuple(planned)
        self.checks = tuple(p.check for p in planned)
        self.amounts = tuple(c.amount for c in self.checks)
        self.tokens = tuple((i, _TOKEN_KINDS[p.measure]) for i, p in enumerate(planned) if p.measure in _TOKEN_KINDS)
        self.queueable = any(p.queueable for p in planned)
        self.shape = Shape(planned)
        self.windows_only = all(c.window > 0 and c.period is None for c in self.checks)  # rates and tokens

    def amounts_for(self, input_tokens: int, output_tokens: int) -> tuple[int, ...] | list[int]:
        """Each check's amount for a call with these tokens (``checks_for`` without making checks)."""
        if not self.tokens:
            return self.amounts
        made = list(self.amounts)
        for i, kind in self.tokens:
            made[i] = input_tokens + output_tokens if kind == 0 else input_tokens if kind == 1 else output_tokens
        return made

    def checks_for(self, input_tokens: int, output_tokens: int) -> tuple[Check, ...]:
        """The checks of a call with these tokens."""
        if not self.tokens:
            return self.checks
        amounts = self.amounts_for(input_tokens, output_tokens)
        made = list(self.checks)
        for i, _ in self.tokens:
            c = made[i]
            made[i] = Check(c.key, c.limit, c.window, amounts[i])
        return tuple(made)


def _get(limits: Any, name: str) -> int | None:
    return limits.get(name) if isinstance(limits, dict) else getattr(limits, name, None)


def rate_templates(prefix: str, limits: Any) -> list[tuple[str, int, float, str]]:
    """(key, limit, window, measure) of each limit a limits object (a dict from the database or
    a config model) sets."""
    out = []
    for name, measure in _MEASURES:
        limit = _get(limits, name)
        if limit is not None:
            out.append((f"{prefix}:{name}", int(limit), 0.0 if measure == "concurrency" else WINDOW, measure))
    return out


def rate_checks(prefix: str, owner: str, limits: Any, demand: Demand, *, queueable: bool = False) -> list[Planned]:
    """The checks one limits object asks for, charged with ``demand``."""
    return [Planned(Check(key, limit, window, _amount(measure, demand)), measure, owner, queueable)
            for key, limit, window, measure in rate_templates(prefix, limits)]


def _safe(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class Shape:
    """What each check of a reservation stands for, as the settle and the headers need it:
    worked out once per (limits, alias) for the common plan (``_Compiled``), per call otherwise."""

    __slots__ = ("charges_cost", "headers", "holds_gauges", "measures", "settled")

    def __init__(self, planned: Sequence[Planned]) -> None:
        self.measures = tuple(p.measure for p in planned)
        self.holds_gauges = "concurrency" in self.measures
        self.charges_cost = "budget" in self.measures  # settling needs the call's cost (else it is not worked out)
        # the checks a settle changes, and how (0: input + output tokens, 1: input, 2: output, 3: cost)
        self.settled = tuple((i, _SETTLED_KINDS[m]) for i, m in enumerate(self.measures) if m in _SETTLED_KINDS)
        # x-ratelimit-*-requests and -tokens: the header names, and the checks that may fill them
        # with their x-ratelimit-limit-* header made (a check's limit is the same on every call)
        self.headers = tuple(
            (tuple((i, (names[0], b"%d" % planned[i].check.limit)) for i, m in enumerate(self.measures) if m in wanted),
             names)
            for wanted, names in ((("requests",), _REQUEST_HEADERS), (_TOKEN_MEASURES, _TOKEN_HEADERS))
            if any(m in wanted for m in self.measures))


class Admission:
    """A call's reservation; ``settle`` once when the call ends (idempotent)."""

    __slots__ = ("_done", "_on_release", "_settles_now", "demand", "headers", "rate_headers", "reservation",
                 "shape", "warnings")

    def __init__(self, demand: Demand, shape: Shape, reservation: Reservation | None,
                 on_release: Callable[[], None] | None = None, *, report: bool = True) -> None:
        self.demand = demand
        self.shape = shape
        self.reservation = reservation
        # x-ratelimit-*, encoded; report=False: nobody reads them (a deployment's own reservation)
        self.rate_headers = rate_header_pairs(shape, reservation) if reservation is not None and report else []
        self.headers: dict[str, str] = {}  # other reports (a budget's warning)
        self.warnings: list[str] = []
        self._on_release = on_release
        self._done = False
        # Settled without awaiting: the in-process limiter, and Redis for window checks (its
        # adjustments are queued); a gauge on Redis is released before the queue is told.
        self._settles_now = hasattr(reservation, "settle_now") and (
            not shape.holds_gauges or hasattr(reservation, "release_now"))

    def _amounts(self, input_tokens: int | None, output_tokens: int | None,
                 cost_usd: float | None) -> list[int | None]:
        amounts: list[int | None] = [None] * len(self.shape.measures)  # requests, concurrency: as charged
        for i, kind in self.shape.settled:
            if kind == 0:
                amounts[i] = None if input_tokens is None or output_tokens is None else input_tokens + output_tokens
            elif kind == 1:
                amounts[i] = input_tokens
            elif kind == 2:
                amounts[i] = output_tokens
            else:
                amounts[i] = None if cost_usd is None else to_nano(cost_usd)
        return amounts

    def settle_nowait(self, input_tokens: int | None, output_tokens: int | None, cost_usd: float | None) -> bool:
        """Settle at once when that needs no await (no task); False when it must be awaited (``settle``)."""
        if self._done or self.reservation is None:
            return True
        if not self._settles_now:
            return False
        self._done = True
        if self.shape.settled:
            self.reservation.settle_now(self._amounts(input_tokens, output_tokens, cost_usd))  # type: ignore[attr-defined]
        if self.shape.holds_gauges:
            self.reservation.release_now()  # type: ignore[attr-defined]
            if self._on_release is not None:
                self._on_release()
        return True

    async def settle(self, input_tokens: int | None, output_tokens: int | None, cost_usd: float | None) -> None:
        """Charge what the call really used; ``None`` keeps that part of the reservation as is."""
        if self._done or self.reservation is None:
            return
        self._done = True
        amounts = self._amounts(input_tokens, output_tokens, cost_usd)
        try:
            if any(a is not None for a in amounts):
                await self.reservation.settle(amounts)
        finally:
            if self.shape.holds_gauges:
                await self.reservation.release()
                if self._on_release is not None:
                    self._on_release()


def format_reset(seconds: float) -> str:
    """OpenAI's style: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    whole = int(math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _reset_value(seconds: float) -> bytes:
    """``format_reset`` as a header value; whole seconds are remembered (a window's reset is the
    same on every call)."""
    if seconds < 1:
        return format_reset(seconds).encode()
    whole = int(math.ceil(seconds))
    value = _RESET_VALUES.get(whole)
    if value is None:
        value = format_reset(whole).encode()
        if len(_RESET_VALUES) < 4096:
            _RESET_VALUES[whole] = value
    return value


_RESET_VALUES: dict[int, bytes] = {}
_TOKEN_MEASURES = frozenset(("tokens", "input", "output"))


def rate_header_pairs(shape: Shape, reservation: Reservation) -> list[tuple[bytes, bytes]]:
    """``x-ratelimit-*`` for the tightest request limit and the tightest token limit, as raw
    response header pairs: they go out with every limited call, so they are encoded once, here."""
    remaining = reservation.remaining
    pairs: list[tuple[bytes, bytes]] = []
    for candidates, names in shape.headers:
        i, limit = candidates[0]
        if len(candidates) > 1:
            for j, other in candidates[1:]:
                if remaining[j] < remaining[i]:
                    i, limit = j, other
        reset = reservation.reset[i]
        value = _RESET_VALUES.get(math.ceil(reset)) if reset >= 1 else None  # a window's: the same every call
        pairs += (limit, (names[1], b"%d" % remaining[i]), (names[2], value or _reset_value(reset)))
    return pairs


_REQUEST_HEADERS = (b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests")
_TOKEN_HEADERS = (b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")


def rate_headers(planned: Sequence[Planned], reservation: Reservation) -> dict[str, str]:
    """``rate_header_pairs`` as a dict (a refusal's headers)."""
    return {name.decode(): value.decode() for name, value in rate_header_pairs(Shape(planned), reservation)}


def refusal(planned: Sequence[Planned], reservation: Reservation, now: datetime) -> GatewayError:
    """The 429 a refused reservation becomes, naming the limit and when to come back."""
    p = planned[reservation.failed or 0]
    retry = reservation.retry_after
    headers = rate_headers(planned, reservation)
    if p.budget is not None:
        resets = p.budget.resets_at(now)
        when = f"it resets at {resets.strftime('%Y-%m-%dT%H:%M:%SZ')}" if resets else "it does not reset"
        err = GatewayError("rate_limit", f"Budget exceeded: {p.budget.label} (${p.budget.max_usd:.2f}) is used up; "
                           f"{when}.", code="budget_exceeded",
                           retry_after=None if resets is None else (resets - now).total_seconds())
    elif math.isinf(retry):
        err = GatewayError("rate_limit", f"This request needs {p.check.amount} {_UNITS[p.measure].split(' per ')[0]}, "
                           f"more than the limit of {p.check.limit} {_UNITS[p.measure]} for {p.owner}.",
                           code="request_too_large")
    else:
        err = GatewayError("rate_limit", f"Rate limit reached for {p.owner} on {_UNITS[p.measure]}: limit "
                           f"{p.check.limit}. Please try again in {retry:.2f}s.", code="rate_limit_exceeded",
                           retry_after=max(retry, 0.001) if p.measure != "concurrency" else 1.0)
    err.headers = headers  # type: ignore[attr-defined]
    return err


LATER = object()  # Limits.admit_now: this call must be admitted with an await (Limits.admit)


class LimiterUnavailable(Exception):
    """The shared limiter (Redis) did not answer in time."""


class Limits:
    """Builds each call's checks, reserves them (queueing for capacity), and applies the Redis
    failure policy. ``capacity``: alias → {"rpm": …, "tpm": …} summed from its deployments."""

    def __init__(self, limiter: Limiter, settings: LimitSettings, budgets: BudgetBook | None = None,
                 capacity: dict[str, dict[str, int]] | None = None, *, shared: bool = False) -> None:
        self.limiter = limiter
        self.settings = settings
        self.budgets = budgets
        self.capacity = capacity or {}
        self.shared = shared  # a Redis limiter: apply the failure policy
        self._local = limiter if isinstance(limiter, LocalLimiter) else None  # reserved without awaiting
        self.can_admit_now = self._local is not None  # admit_now may admit; with Redis it always says LATER
        self._send_reserve = getattr(limiter, "send_reserve", None) if shared else None
        leave_line = getattr(limiter, "leave_line", None) if shared else None
        self.queue = CapacityQueue(settings.queue.max_size, settings.queue.max_wait,
                                   on_empty=(lambda alias: leave_line(f"q:{_safe(alias)}")) if leave_line else None)
        self._compiled_cache: dict[tuple[int, str], _Compiled] = {}
        # Plain counters, exported by sluice.observability.metrics when scraped.
        self.failures = 0  # limiter round trips that failed or timed out
        self.refusals: Counter[str] = Counter()  # by error code
        self.alerts = 0  # calls that crossed a budget's alert threshold
        self._last_failure_log = 0.0

    def applies(self, principal: Any, end_user: str | None, alias: str) -> bool:
        """Cheap: could any limit or budget concern this call? (Most calls in a default setup: no.)"""
        return bool(getattr(principal, "limits", None) or (end_user and self.settings.end_user is not None)
                    or alias in self.settings.models or alias in self.capacity
                    or (self.budgets is not None and not self.budgets.empty))

    def plan(self, principal: Any, end_user: str | None, tags: Sequence[str], demand: Demand,
             now: datetime | None = None) -> list[Planned]:
        """The checks this call meets; ``now`` (UTC) places budgets in their periods."""
        compiled = self._compiled(principal, demand.alias)
        checks = compiled.checks_for(demand.input_tokens, demand.output_tokens)
        planned = [p if p.check is c else Planned(c, p.measure, p.owner, p.queueable)
                   for p, c in zip(compiled.planned, checks, strict=True)]
        if end_user and self.settings.end_user is not None:
            planned += rate_checks(f"e:{_safe(end_user)}", f"end user {end_user}", self.settings.end_user, demand)
        if self.budgets is not None and not self.budgets.empty:
            planned += self._budget_checks(principal, end_user, tags, demand, now or datetime.now(timezone.utc))
        return planned

    def _compiled(self, principal: Any, alias: str) -> _Compiled:
        """The caller's and the model's limits for ``alias``, worked out once per (limits, alias):
        a principal comes from the auth cache, so its ``limits`` tuple is the same object on every
        call until the key, user or team changes."""
        scoped = getattr(principal, "limits", ()) or ()
        slot = (id(scoped), alias)
        compiled = self._compiled_cache.get(slot)
        if compiled is not None and compiled.scoped is scoped:
            return compiled
        rules: list[tuple[str, int, float, str, str, bool]] = []
        for scope, subject_id, limits in scoped:
            # a key's limits count under its lineage (rotation keeps the windows); messages name the key itself
            named = (getattr(principal, "key_id", None) or subject_id) if scope == "key" else subject_id
            prefix, owner = f"{scope[0]}:{subject_id}", f"{scope} {named}"
            rules += [(*t, owner, False) for t in rate_templates(prefix, limits)]
            per_model = (limits.get("models") or {}).get(alias) if isinstance(limits, dict) else None
            if per_model:
                rules += [(*t, f"{owner} on model {alias}", False)
                          for t in rate_templates(f"{prefix}:m:{_safe(alias)}", per_model)]
        model_limits = self.settings.models.get(alias)
        if model_limits is not None:
            rules += [(*t, f"model {alias}", True) for t in rate_templates(f"m:{_safe(alias)}", model_limits)]
        capacity = self.capacity.get(alias)
        if capacity:
            rules += [(*t, f"the capacity of model {alias}", True)
                      for t in rate_templates(f"cap:{_safe(alias)}", capacity)]
        compiled = _Compiled(scoped, [Planned(Check(key, limit, window, int(measure in _UNIT_MEASURES)), measure,
                                              owner, queueable)
                                      for key, limit, window, measure, owner, queueable in rules])
        if len(self._compiled_cache) > 10_000:
            self._compiled_cache.clear()
        self._compiled_cache[slot] = compiled
        return compiled

    def _budget_checks(self, principal: Any, end_user: str | None, tags: Sequence[str], demand: Demand,
                       now: datetime) -> list[Planned]:
        assert self.budgets is not None
        subject = Subject(getattr(principal, "key_id", None), getattr(principal, "team_id", None),
                          getattr(principal, "user_id", None), end_user, demand.alias, tuple(tags),
                          getattr(principal, "key_lineage", None))
        rules = self.budgets.rules_for(subject)
        if not rules:
            return []
        cost = to_nano(demand.max_cost()) if demand.max_cost is not None else 0
        return [Planned(rule.check(cost, now), "budget", rule.label, budget=rule) for rule in rules]

    def admit_now(self, principal: Any, end_user: str | None, alias: str,
                  tokens: Callable[[Any], tuple[int, int]], hint: Any = None) -> Admission | None | object:
        """``admit`` without awaiting, for the common case: the in-process limiter, no budget to
        seed, no queue to join. ``tokens(hint)`` gives the call's (input, output) tokens; it is
        asked only when a limit counts tokens. Returns ``LATER`` when the call needs ``admit``.

        Every limited call of a single instance runs this, so the caller's checks come ready
        made (``_compiled``): only those counting tokens are made per call."""
        local = self._local
        if local is None or (self.budgets is not None and not self.budgets.empty):
            return LATER
        if end_user and self.settings.end_user is not None:
            return self._admit_planned_now(local, principal, end_user, Demand(alias, *tokens(hint)))
        compiled = self._compiled(principal, alias)
        checks = compiled.checks
        if not checks:
            return None
        queueable = compiled.queueable and self.settings.queue.enabled
        if queueable and self.queue.waiting(alias):
            return LATER  # others are waiting for this model: join them
        input_tokens = output_tokens = 0
        if compiled.tokens:
            input_tokens, output_tokens = tokens(hint)
        if compiled.windows_only:
            res = local.reserve_windows_now(checks, local.clock(), compiled.amounts_for(input_tokens, output_tokens))
        else:
            res = local.reserve_now(compiled.checks_for(input_tokens, output_tokens), local.clock())
        demand = Demand(alias, input_tokens, output_tokens)
        if not res.ok:
            failed = compiled.planned[res.failed or 0]
            if queueable and failed.queueable and not math.isinf(res.retry_after):
                return LATER  # nothing was charged: admit queues the call
            self._refuse(self.plan(principal, None, (), demand), res, None)
        shape = compiled.shape
        return Admission(demand, shape, res, self._notifier(alias) if shape.holds_gauges else None)

    def _admit_planned_now(self, local: LocalLimiter, principal: Any, end_user: str | None,
                           demand: Demand) -> Admission | None | object:
        """``admit_now`` for a plan made per call (an end user's limits)."""
        planned = self.plan(principal, end_user, (), demand)
        if not planned:
            return None
        queueable = self.settings.queue.enabled and any(p.queueable for p in planned)
        if queueable and self.queue.waiting(demand.alias):
            return LATER
        res = local.reserve_now(tuple([p.check for p in planned]), local.clock())
        if not res.ok:
            if queueable and planned[res.failed or 0].queueable and not math.isinf(res.retry_after):
                return LATER
            self._refuse(planned, res, None)
        return Admission(demand, Shape(planned), res, self._notifier(demand.alias))

    def _refuse(self, planned: list[Planned], res: Reservation, now: datetime | None) -> None:
        err = refusal(planned, res, now or datetime.now(timezone.utc))
        self.refusals[err.code or "rate_limit"] += 1
        raise err

    def admit(self, principal: Any, end_user: str | None, tags: Sequence[str],
              demand: Demand) -> Awaitable[Admission | None]:
        """Reserve, or raise the 429 (or 503 when the limiter is down and the policy is closed).

        Not a coroutine itself: it hands over the one that does the work, so the caller's await
        reaches the limiter's reply through one coroutine fewer."""
        compiled = self._common_plan(principal, end_user, demand.alias)
        if compiled is not None:
            return self._admit_compiled(compiled, principal, demand)
        return self._admit_planned(principal, end_user, tags, demand, self.budgets is not None and not self.budgets.empty)

    def _common_plan(self, principal: Any, end_user: str | None, alias: str) -> _Compiled | None:
        """The caller's checks, compiled, when its plan is the common one (no budget, no end
        user's limits, no queue); else None."""
        if (self.budgets is not None and not self.budgets.empty) or (end_user and self.settings.end_user is not None):
            return None
        compiled = self._compiled(principal, alias)
        return None if compiled.queueable and self.settings.queue.enabled else compiled

    async def _admit_planned(self, principal: Any, end_user: str | None, tags: Sequence[str], demand: Demand,
                             budgeted: bool) -> Admission | None:
        """``admit`` with the plan made per call: budgets, an end user's limits, or the queue."""
        now = datetime.now(timezone.utc) if budgeted else None
        planned = self.plan(principal, end_user, tags, demand, now)
        if not planned:
            return None
        checks = [p.check for p in planned]
        seed = _no_seed
        if budgeted and any(p.budget is not None for p in planned):
            seed = self._budget_seeder(planned, now)  # type: ignore[arg-type]
        try:
            if self.settings.queue.enabled and any(p.queueable for p in planned):
                res = await self._first_attempt(demand.alias, planned, checks, seed, principal)
            else:
                res = await self._reserve(checks, seed)
        except LimiterUnavailable:
            return self._limiter_down()
        if not res.ok:
            self._refuse(planned, res, now)
        admission = Admission(demand, Shape(planned), res, self._notifier(demand.alias))
        if budgeted:
            self._soft_warnings(admission, planned, res)
        return admission

    def admit_ahead(self, principal: Any, end_user: str | None, demand: Demand) -> Awaitable[Admission | None] | None:
        """``admit`` for a caller with other work to do before it needs the answer: the
        reservation is written to Redis now, and the answer comes when the returned awaitable is
        awaited. None when this call's plan cannot be sent at once (budgets, an end user's
        limits, the queue, no shared limiter or no connection to it): then use ``admit``."""
        compiled = self._common_plan(principal, end_user, demand.alias) if self._send_reserve is not None else None
        if compiled is None or not compiled.checks:
            return None
        checks = compiled.checks
        amounts = compiled.amounts_for(demand.input_tokens, demand.output_tokens)
        sent = self._send_reserve(checks, checks, amounts, True)
        return None if sent is None else self._reserved(compiled, principal, demand, amounts, sent)

    def _admit_compiled(self, compiled: _Compiled, principal: Any, demand: Demand) -> Awaitable[Admission | None]:
        """``admit`` for the common plan (no budget, no end user's limits, no queue): the
        caller's checks come ready made, as in ``admit_now``. A limiter that can send the
        reservation at once (``send_reserve``: Sluice's Redis client, connected) sends it here, and
        the caller awaits its reply with no coroutine in between: each one is paid again when the
        reply wakes the call."""
        checks = compiled.checks
        if not checks:
            return _nothing()
        amounts = compiled.amounts_for(demand.input_tokens, demand.output_tokens)  # no check made per call
        sent = self._send_reserve(checks, checks, amounts) if self._send_reserve is not None else None
        return self._reserved(compiled, principal, demand, amounts, sent)

    async def _reserved(self, compiled: _Compiled, principal: Any, demand: Demand, amounts: list[int],
                        sent: tuple[Any, Awaitable] | None) -> Admission | None:
        """The admission of a reservation ``sent`` (its id and reply), or of one made now when it
        was not sent."""
        checks = compiled.checks
        res = None
        try:
            if sent is not None:
                try:
                    res = self.limiter.reservation(checks, sent[0], await sent[1], amounts)  # type: ignore[attr-defined]
                except (GatewayError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - any limiter failure goes through the policy
                    if not self.limiter.script_missing(exc):  # type: ignore[attr-defined]
                        self._unavailable(exc)
            if res is None:  # not sent, or Redis lost the script: the limiter's own way (it loads it)
                res = await self._reserve(compiled.checks_for(demand.input_tokens, demand.output_tokens), _no_seed)
        except LimiterUnavailable:
            return self._limiter_down()
        if not res.ok:
            self._refuse(self.plan(principal, None, (), demand), res, None)
        shape = compiled.shape
        return Admission(demand, shape, res, self._notifier(demand.alias) if shape.holds_gauges else None)

    def _notifier(self, alias: str) -> Callable[[], None]:
        return lambda: self.queue.notify(alias)

    def _budget_seeder(self, planned: list[Planned], now: datetime) -> Callable[[list[Check]], Awaitable[list[int]]]:
        """Starting values of budget counters the limiter does not hold: what the ledger says was spent."""
        rules = {p.check.key: p.budget for p in planned if p.budget is not None}

        async def seed(wanted: list[Check]) -> list[int]:
            assert self.budgets is not None
            return [await self.budgets.spent_nano(rules[c.key], now) for c in wanted]  # type: ignore[arg-type]

        return seed

    async def _first_attempt(self, alias: str, planned: list[Planned], checks: list[Check],
                             seed: Callable[[list[Check]], Awaitable[list[int]]], principal: Any) -> Reservation:
        """Reserve for a call that may wait for the model's capacity: in this instance's queue, best
        class first. With Redis, the classes waiting on every instance are marked in the model's
        line, and a call yields (``behind``) while a better class waits elsewhere."""
        rank = PRIORITY_RANK.get(getattr(principal, "priority", None) or self.settings.default_priority, 1)
        line = f"q:{_safe(alias)}" if self.shared else None  # the model's line (see leave_line)

        def attempt() -> Awaitable[Reservation]:  # the classes waiting here, as of this attempt
            return self._reserve(checks, seed, Line(line, rank, self.queue.classes(alias)) if line else None)

        def worth_waiting(res: Reservation) -> bool:
            return getattr(res, "behind", False) or planned[res.failed or 0].queueable
        if self.queue.waiting(alias):
            res = None  # others are already waiting for this model: no overtaking them
            retry = 0.0
        else:
            res = await attempt()
            if res.ok or not worth_waiting(res) or math.isinf(res.retry_after):
                return res
            retry = res.retry_after
        queued = await self.queue.wait_turn(alias, rank, attempt, retry, worth_waiting)
        res = queued if queued is not None else res if res is not None else await attempt()
        if getattr(res, "behind", False):  # the wait ran out: refused as the model's capacity
            res.failed = next(i for i, p in enumerate(planned) if p.queueable)
        return res

    async def _reserve(self, checks: list[Check], seed: Callable[[list[Check]], Awaitable[list[int]]],
                       line: Line | None = None) -> Reservation:
        local = self._local
        if local is not None:
            if seed is _no_seed:  # windows and gauges only: nothing to seed, nothing to await
                return local.reserve_now(tuple(checks), local.clock())
            return await local.reserve(checks, seeder=seed)
        try:  # a shared limiter bounds its own round trips (RedisLimiter's timeout)
            if line is not None:
                return await self.limiter.reserve(checks, seeder=seed, line=line)  # type: ignore[call-arg]
            return await self.limiter.reserve(checks, seeder=seed)
        except (GatewayError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - any limiter failure goes through the policy
            if not self.shared:
                raise
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> NoReturn:
        self.failures += 1
        self._log_failure(exc)
        raise LimiterUnavailable from exc

    def _log_failure(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= 10.0:
            self._last_failure_log = now
            action = "letting calls through unlimited" if self.settings.redis_failure == "open" else \
                "refusing calls"
            log.warning("rate limiter unavailable (%s: %s); redis_failure=%s: %s", type(exc).__name__, exc,
                        self.settings.redis_failure, action)

    def _limiter_down(self) -> Admission | None:
        if self.settings.redis_failure == "open":
            return None
        self.refusals["limiter_unavailable"] += 1
        raise GatewayError("overloaded", "The rate limiter is unavailable, and this gateway refuses calls it cannot "
                           "count (limits.redis_failure: closed). Please try again shortly.",
                           status=503, code="limiter_unavailable", retry_after=1.0)

    def _soft_warnings(self, admission: Admission, planned: list[Planned], res: Reservation) -> None:
        for i, p in enumerate(planned):
            rule = p.budget
            if rule is None or rule.soft_usd is None:
                continue
            used = p.check.limit - res.remaining[i]
            if used >= to_nano(rule.soft_usd):
                admission.warnings.append(f"{rule.label} has passed its alert threshold (${rule.soft_usd:.2f})")
                admission.headers["x-sluice-budget-warning"] = admission.warnings[-1]
                if used - p.check.amount < to_nano(rule.soft_usd):  # this call crossed it
                    self.alerts += 1
                    log.warning("budget alert threshold reached", extra={
                        "budget_id": rule.id, "scope": rule.scope, "subject": rule.subject,
                        "soft_usd": rule.soft_usd, "max_usd": rule.max_usd})

    async def close(self) -> None:
        drain = getattr(self.limiter, "drain", None)
        if drain is not None:  # adjustments still queued for Redis (bounded: Redis may be down)
            await asyncio.wait([asyncio.ensure_future(drain())], timeout=5)
        if self.budgets is not None:
            await self.budgets.close()

    # ---- what the admin API shows ------------------------------------------------------------

    async def _peek(self, planned: list[Planned], seeder: Any = None) -> Reservation | None:
        """Current usage of ``planned``'s checks without charging anything (amounts of 0)."""
        from dataclasses import replace

        try:
            return await self._reserve([replace(p.check, amount=0) for p in planned], seeder)
        except LimiterUnavailable:
            return None

    async def key_status(self, key: dict) -> dict:
        """Per limit of the key (and per model pair): limit, used, remaining, seconds to reset."""
        limits = key.get("limits") or {}
        demand = Demand("", 0, 0)
        prefix = f"k:{key.get('lineage') or key['id']}"  # a rotated key's windows are its lineage's
        planned = rate_checks(prefix, "", limits, demand)
        models = limits.get("models") or {}
        per_model = {alias: rate_checks(f"{prefix}:m:{_safe(alias)}", "", lim, demand) for alias, lim in models.items()}
        everything = planned + [p for ps in per_model.values() for p in ps]
        if not everything:
            return {"limits": {}, "models": {}}
        res = await self._peek(everything)
        if res is None:
            return {"error": "the rate limiter is unavailable"}
        status = _status(everything, res)
        names = [p.check.key.rsplit(":", 1)[-1] for p in everything]
        out: dict[str, Any] = {"limits": {}, "models": {}}
        i = 0
        for name, item in zip(names[:len(planned)], status[:len(planned)], strict=True):
            out["limits"][name] = item
            i += 1
        for alias, ps in per_model.items():
            out["models"][alias] = {names[j]: status[j] for j in range(i, i + len(ps))}
            i += len(ps)
        return out

    async def budget_status(self, budget: dict) -> dict:
        """Spent, remaining and reset time of one budget in its current period."""
        rule = BudgetRule(budget["id"], budget["scope"], budget["subject"], budget["period"],
                          float(budget["max_usd"]), budget.get("soft_usd"), budget.get("name"))
        now = datetime.now(timezone.utc)
        check = rule.check(0, now)

        async def seed(wanted: list[Check]) -> list[int]:
            return [await self.budgets.spent_nano(rule, now) if self.budgets else 0 for _ in wanted]

        res = await self._peek([Planned(check, "budget", rule.label, budget=rule)], seed)
        if res is None:
            return {"error": "the rate limiter is unavailable"}
        spent = (check.limit - res.remaining[0]) / 1e9 if res.remaining[0] > 0 else None
        if spent is None:  # at or past the limit: remaining is clamped at 0, so ask the ledger
            spent = (await self.budgets.spent_nano(rule, now)) / 1e9 if self.budgets else rule.max_usd
        resets = rule.resets_at(now)
        return {"spent_usd": round(spent, 9), "remaining_usd": round(max(rule.max_usd - spent, 0.0), 9),
                "resets_at": resets.isoformat() if resets else None,
                "soft_reached": rule.soft_usd is not None and spent >= rule.soft_usd,
                "exhausted": spent >= rule.max_usd}


def _status(planned: list[Planned], res: Reservation) -> list[dict[str, Any]]:
    return [{"limit": p.check.limit, "used": max(p.check.limit - res.remaining[i], 0),
             "remaining": res.remaining[i], "reset_seconds": round(res.reset[i], 3)}
            for i, p in enumerate(planned)]


async def _nothing() -> None:
    return None


async def _no_seed(wanted: list[Check]) -> list[int]:
    return [0 for _ in wanted]  # deployment limits are windows: nothing to seed


__all__ = ["LATER", "Admission", "CapacityQueue", "Demand", "Limits", "Planned", "format_reset", "rate_header_pairs",
           "rate_headers", "refusal"]
