"""Budgets in USD: which apply to a call, their period counters, and what was already spent.

A budget is a hard limit (``max_usd``) with an optional soft threshold (``soft_usd``) on the
spend of one subject — a key, team, user, end user, model alias or tag — per calendar period
in UTC (daily, weekly from Monday, monthly from the 1st) or for all time (``none``).

Exactness under concurrency comes from the limiter: a call **reserves** the most it can cost
(its prompt and ``max_tokens`` at the priciest deployment it may reach) against a period counter
(``Check.period``) in the same all-or-nothing reservation as its rate limits, then **settles**
to what it really cost. Concurrent calls therefore never spend past the limit together.

Counters are in nano-USD (integers: Redis counts exactly, a $0.000001 call still counts). A
counter that does not exist — a new period, a restarted process, a Redis that lost its data —
is seeded from the ledger (``sluice.store.usage.spent_usd``), so a restart does not hand out a
fresh budget. Budgets are loaded from the database, reloaded when an admin changes one (the
``("budget", id)`` event) and every ``refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from sluice.policies.ratelimit import Check
from sluice.store.db import Database
from sluice.store.events import Events
from sluice.store.models import Budget
from sluice.store.usage import spent_usd

log = logging.getLogger("sluice.budgets")

NANO = 1_000_000_000  # counter units per USD


def to_nano(usd: float) -> int:
    return math.ceil(max(usd, 0.0) * NANO)


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the UTC period containing ``now``; (None, None) for ``none``."""
    now = now.astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    if period == "none":
        return None, None
    raise ValueError(f"unknown budget period {period!r}")


@dataclass(frozen=True, slots=True)
class BudgetRule:
    id: str
    scope: str
    subject: str
    period: str
    max_usd: float
    soft_usd: float | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        what = self.name or f"{self.scope} {self.subject}"
        return f"the {self.period} budget of {what}" if self.period != "none" else f"the budget of {what}"

    def check(self, amount_nano: int, now: datetime) -> Check:
        start, end = period_bounds(self.period, now)
        period = math.inf if end is None else max((end - now).total_seconds(), 0.001)
        stamp = int(start.timestamp()) if start else 0
        return Check(f"b:{self.id}:{self.period}:{stamp}", to_nano(self.max_usd), 0.0, amount_nano, period=period)

    def resets_at(self, now: datetime) -> datetime | None:
        return period_bounds(self.period, now)[1]


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a call is, as budgets see it."""

    key_id: str | None
    team_id: str | None
    user_id: str | None
    end_user: str | None
    model: str
    tags: tuple[str, ...]
    key_lineage: str | None = None  # a rotated key's first key: budgets set on any key of the chain are filed there

    def pairs(self) -> Iterable[tuple[str, str]]:
        for scope, value in (("key", self.key_id), ("team", self.team_id), ("user", self.user_id),
                             ("end_user", self.end_user), ("model", self.model)):
            if value:
                yield scope, value
        if self.key_lineage and self.key_lineage != self.key_id:
            yield "key", self.key_lineage
        for tag in self.tags:
            yield "tag", tag


class BudgetBook:
    """The budgets in force, indexed by (scope, subject), kept fresh from the database."""

    def __init__(self, db: Database | None, *, refresh: float = 30.0) -> None:
        self._db = db
        self._refresh = refresh
        self._index: dict[tuple[str, str], tuple[BudgetRule, ...]] = {}
        self._task: asyncio.Task | None = None
        self._reload_soon: asyncio.Event | None = None
        self._seeding: dict[tuple[str, datetime | None], asyncio.Task] = {}

    @property
    def empty(self) -> bool:
        return not self._index

    def set_rules(self, rules: Iterable[BudgetRule]) -> None:
        index: dict[tuple[str, str], list[BudgetRule]] = {}
        for rule in rules:
            index.setdefault((rule.scope, rule.subject), []).append(rule)
        self._index = {k: tuple(v) for k, v in index.items()}

    async def load(self) -> None:
        if self._db is None:
            return
        async with self._db.session() as session:
            rows = (await session.execute(select(Budget))).scalars().all()
        self.set_rules(BudgetRule(b.id, b.scope, b.subject, b.period, b.max_usd, b.soft_usd, b.name) for b in rows)

    async def start(self, events: Events | None) -> None:
        await self.load()
        self._reload_soon = asyncio.Event()
        if events is not None:
            events.subscribe(self._on_event)
        self._task = asyncio.create_task(self._keep_fresh(), name="sluice-budgets")

    def _on_event(self, topic: str, _value: str) -> None:
        if topic in ("budget", "*") and self._reload_soon is not None:
            self._reload_soon.set()

    async def _keep_fresh(self) -> None:
        assert self._reload_soon is not None
        while True:
            try:
                await asyncio.wait_for(self._reload_soon.wait(), self._refresh)
            except TimeoutError:
                pass
            self._reload_soon.clear()
            try:
                await self.load()
            except Exception:  # noqa: BLE001 - keep the last known budgets; try again later
                log.exception("could not reload budgets")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def rules_for(self, subject: Subject) -> list[BudgetRule]:
        if not self._index:
            return []
        return [rule for pair in subject.pairs() for rule in self._index.get(pair, ())]

    async def spent_nano(self, rule: BudgetRule, now: datetime) -> int:
        """What the ledger says ``rule``'s subject spent in the current period.

        One query per budget and period at a time, however many calls ask together (the first
        calls after a restart all need it), and shielded: a caller that gives up (a timeout, a
        client gone) must not cancel a database round trip halfway.
        """
        if self._db is None:
            return 0
        start, _ = period_bounds(rule.period, now)
        slot = (rule.id, start)
        task = self._seeding.get(slot)
        if task is None:
            task = asyncio.ensure_future(self._query_spent(rule, start))
            self._seeding[slot] = task
            task.add_done_callback(lambda _t: self._seeding.pop(slot, None))
        return await asyncio.shield(task)

    async def _query_spent(self, rule: BudgetRule, start: datetime | None) -> int:
        assert self._db is not None
        async with self._db.session() as session:
            return to_nano(await spent_usd(session, rule.scope, rule.subject, start))


__all__ = ["NANO", "BudgetBook", "BudgetRule", "Subject", "period_bounds", "to_nano"]
