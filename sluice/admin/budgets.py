"""Budgets: USD spending limits per key, team, user, end user, model or tag, per period.

Who may do what (the rules of ``sluice.admin.scope``, applied to budgets):

* ``admin``: everything.
* ``team_admin``: manages the budgets of their team's keys and users (not an admin's), and reads
  their team's own budget, which only an admin sets.
* ``viewer``: reads what their team admin reads; changes nothing.
* ``member``: reads the budgets of their own keys and of themselves.
* end-user, model and tag budgets span tenants: only admins read or manage them.

A budget outside the caller's view is 404, whatever the request; a budget in view that the role
may not change is 403. A budget carries the team of its subject (``team_id``), kept current
when the subject changes team (``retag_budgets``), so tenant scoping is one indexed column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

# Imported as ``access``: ``scope`` is a budget's own field here (key, team, user, ...).
from sluice.admin import scope as access
from sluice.admin.audit import Change, record, record_per_team
from sluice.admin.errors import unique
from sluice.admin.notify import announce
from sluice.admin.views import budget_view
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import Events
from sluice.store.models import BUDGET_PERIODS, BUDGET_SCOPES, ApiKey, Budget, Team, User, utcnow

UPDATABLE = frozenset({"max_usd", "soft_usd", "name", "period"})
TEAM_MANAGED = ("key", "user")  # scopes a team admin manages inside their team
TEAM_READABLE = ("key", "user", "team")  # scopes a team-wide role reads inside their team
DUPLICATE = "a budget for this scope, subject and period already exists"


@dataclass(slots=True)
class BudgetSpec:
    scope: str
    subject: str
    max_usd: float
    period: str = "monthly"
    soft_usd: float | None = None
    name: str | None = None


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _check_choice(value: Any, choices: tuple[str, ...], param: str) -> str:
    if value not in choices:
        raise _invalid(f"{param} must be one of {', '.join(choices)}", param)
    return value


def _check_amounts(max_usd: Any, soft_usd: Any) -> tuple[float, float | None]:
    """The hard limit is a positive amount; the soft threshold, if any, lies in (0, max_usd]."""
    if isinstance(max_usd, bool) or not isinstance(max_usd, (int, float)) or not math.isfinite(max_usd) \
            or max_usd <= 0:
        raise _invalid("max_usd must be a positive number of US dollars", "max_usd")
    if soft_usd is None:
        return float(max_usd), None
    if isinstance(soft_usd, bool) or not isinstance(soft_usd, (int, float)) or not math.isfinite(soft_usd) \
            or soft_usd <= 0:
        raise _invalid("soft_usd must be a positive number of US dollars", "soft_usd")
    if soft_usd > max_usd:
        raise _invalid(f"soft_usd ({soft_usd}) must not exceed max_usd ({max_usd})", "soft_usd")
    return float(max_usd), float(soft_usd)


def _check_name(name: Any) -> str | None:
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise _invalid("name must be text of at most 200 characters", "name")
    return name


def _check_subject(subject: Any) -> str:
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 300:
        raise _invalid("subject must be non-empty text of at most 300 characters", "subject")
    return subject.strip()


def _require_manager(caller: Principal) -> None:
    if caller.role not in (access.ADMIN, access.TEAM_ADMIN):
        raise access.forbidden(f"a {caller.role} cannot change budgets")


def _require_scope_manager(caller: Principal, budget_scope: str) -> None:
    """A 403 that depends only on the caller and the scope asked for, never on what exists."""
    _require_manager(caller)
    if not access.is_admin(caller) and budget_scope not in TEAM_MANAGED:
        raise access.forbidden(f"only an admin can manage {budget_scope} budgets")


# --- visibility -------------------------------------------------------------------------------

def budget_clause(caller: Principal) -> ColumnElement[bool]:
    """SQL condition selecting the budgets the caller may see."""
    if access.is_admin(caller):
        return true()
    if caller.role in (access.TEAM_ADMIN, access.VIEWER):
        if not caller.team_id:
            return false()
        return and_(Budget.team_id == caller.team_id, Budget.scope.in_(TEAM_READABLE))
    if caller.role == access.MEMBER and caller.user_id:
        own_keys = select(ApiKey.id).where(ApiKey.user_id == caller.user_id)
        return or_(and_(Budget.scope == "user", Budget.subject == caller.user_id),
                   and_(Budget.scope == "key", Budget.subject.in_(own_keys)))
    return false()


async def _visible_budget(session: AsyncSession, caller: Principal, budget_id: str) -> Budget:
    budget = (await session.scalars(select(Budget).where(Budget.id == budget_id,
                                                         budget_clause(caller)))).one_or_none()
    if budget is None:
        raise access.not_found("budget", budget_id)
    return budget


# --- subjects ---------------------------------------------------------------------------------

async def _key_team(session: AsyncSession, caller: Principal, key_id: str) -> str | None:
    key = await session.get(ApiKey, key_id)
    if key is None or not access.key_visible(caller, key):
        raise access.not_found("key", key_id)
    owner = await session.get(User, key.user_id) if key.user_id else None
    if not access.is_admin(caller) and owner is not None and owner.role == access.ADMIN:
        raise access.forbidden("only an admin can manage the budgets of an admin's keys")
    # A key without a team of its own counts in its owner's team (as the gateway counts it).
    return key.team_id or (owner.team_id if owner else None)


async def _user_team(session: AsyncSession, caller: Principal, user_id: str) -> str | None:
    user = await session.get(User, user_id)
    if user is None or not access.user_visible(caller, user):
        raise access.not_found("user", user_id)
    if not access.is_admin(caller) and user.role == access.ADMIN:
        raise access.forbidden("only an admin can manage an admin's budgets")
    return user.team_id


async def _subject_team(session: AsyncSession, caller: Principal, budget_scope: str, subject: str) -> str | None:
    """The team a budget's subject belongs to; 404 when the subject is missing or out of view."""
    if budget_scope == "key":
        return await _key_team(session, caller, subject)
    if budget_scope == "user":
        return await _user_team(session, caller, subject)
    if budget_scope == "team":
        if await session.get(Team, subject) is None:
            raise access.not_found("team", subject)
        return subject
    return None  # end users, models and tags belong to no tenant


# --- the service ------------------------------------------------------------------------------

async def create_budget(db: Database, caller: Principal, spec: BudgetSpec, *, request_id: str | None = None,
                        events: Events | None = None) -> dict[str, Any]:
    access.check_caller(caller)
    _require_manager(caller)
    budget_scope = _check_choice(spec.scope, BUDGET_SCOPES, "scope")
    _require_scope_manager(caller, budget_scope)
    period = _check_choice(spec.period, BUDGET_PERIODS, "period")
    max_usd, soft_usd = _check_amounts(spec.max_usd, spec.soft_usd)
    subject, name = _check_subject(spec.subject), _check_name(spec.name)
    now = utcnow()
    async with db.transaction() as session:
        team_id = await _subject_team(session, caller, budget_scope, subject)
        if budget_scope == "key":  # filed under the key's lineage: it goes on applying when the key is rotated
            subject = (await session.get(ApiKey, subject)).limits_id  # type: ignore[union-attr]
        budget = Budget(scope=budget_scope, subject=subject, period=period, max_usd=max_usd, soft_usd=soft_usd,
                        name=name, team_id=team_id, created_at=now, updated_at=now)
        async with unique(session, DUPLICATE):
            session.add(budget)
        view = budget_view(budget)
        record(session, Change(caller, request_id), "budget.create", "budget", budget.id, team_id, None, view)
    await announce(events, [("budget", view["id"])])
    return view


def _list_filters(caller: Principal, budget_scope: str | None, team_id: str | None) -> str | None:
    """The team filter the list runs with; 403 for naming another tenant, 400 for a bad scope."""
    if budget_scope is not None:
        _check_choice(budget_scope, BUDGET_SCOPES, "scope")
    if caller.role in (access.TEAM_ADMIN, access.VIEWER):
        return access.narrow_team_filter(caller, team_id)
    if caller.role == access.MEMBER and team_id not in (None, caller.team_id):
        raise access.forbidden("a member can only see their own budgets")
    return team_id


async def list_budgets(db: Database, caller: Principal, *, scope: str | None = None, subject: str | None = None,
                       team_id: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Budgets in the caller's view, optionally narrowed to a scope, a subject or a team. A key
    named as the subject finds the budgets of its lineage (where a rotated key's are filed)."""
    access.check_caller(caller)
    team_id = _list_filters(caller, scope, team_id)
    async with db.session() as session:
        if scope == "key" and subject is not None:
            key = await session.get(ApiKey, subject)
            subject = key.limits_id if key is not None else subject
        stmt = select(Budget).where(budget_clause(caller))
        for column, value in ((Budget.scope, scope), (Budget.subject, subject), (Budget.team_id, team_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        stmt = stmt.order_by(Budget.created_at, Budget.id).limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
        return [budget_view(budget) for budget in (await session.scalars(stmt)).all()]


async def get_budget(db: Database, caller: Principal, budget_id: str) -> dict[str, Any]:
    access.check_caller(caller)
    async with db.session() as session:
        return budget_view(await _visible_budget(session, caller, budget_id))


async def _writable_budget(session: AsyncSession, caller: Principal, budget_id: str) -> Budget:
    budget = await _visible_budget(session, caller, budget_id)
    _require_scope_manager(caller, budget.scope)
    if not access.is_admin(caller):
        await _subject_team(session, caller, budget.scope, budget.subject)  # not an admin's key or user
    return budget


def _apply_update(budget: Budget, changes: dict[str, Any]) -> None:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise _invalid(f"cannot update {', '.join(sorted(unknown))}", min(unknown))
    if "period" in changes:
        budget.period = _check_choice(changes["period"], BUDGET_PERIODS, "period")
    max_usd = changes.get("max_usd", budget.max_usd)
    soft_usd = changes["soft_usd"] if "soft_usd" in changes else budget.soft_usd
    budget.max_usd, budget.soft_usd = _check_amounts(max_usd, soft_usd)
    if "name" in changes:
        budget.name = _check_name(changes["name"])


async def update_budget(db: Database, caller: Principal, budget_id: str, changes: dict[str, Any], *,
                        request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    """Change max_usd, soft_usd (None removes it), name or period; only the fields given change."""
    access.check_caller(caller)
    async with db.transaction() as session:
        budget = await _writable_budget(session, caller, budget_id)
        before = budget_view(budget)
        _apply_update(budget, changes)
        changed = {k: v for k, v in budget_view(budget).items() if k != "updated_at"} != \
            {k: v for k, v in before.items() if k != "updated_at"}
        if changed:
            budget.updated_at = utcnow()
            async with unique(session, DUPLICATE):
                pass
        after = budget_view(budget)
        if changed:
            record(session, Change(caller, request_id), "budget.update", "budget", budget.id, budget.team_id,
                   before, after)
    if changed:
        await announce(events, [("budget", budget_id)])
    return after


async def delete_budget(db: Database, caller: Principal, budget_id: str, *, request_id: str | None = None,
                        events: Events | None = None) -> None:
    access.check_caller(caller)
    async with db.transaction() as session:
        budget = await _writable_budget(session, caller, budget_id)
        before = budget_view(budget)
        await session.delete(budget)
        record(session, Change(caller, request_id), "budget.delete", "budget", budget_id, before["team_id"],
               before, None)
    await announce(events, [("budget", budget_id)])


# --- following subjects: used by the key, user and team services in their own transactions ----

async def retag_budgets(session: AsyncSession, change: Change, budget_scope: str, subjects: list[str],
                        team_id: str | None) -> list[tuple[str, str]]:
    """Give the budgets of ``subjects`` their new team, so the old team's admins lose sight of them."""
    if not subjects:
        return []
    stmt = select(Budget).where(Budget.scope == budget_scope, Budget.subject.in_(subjects),
                                Budget.team_id.is_distinct_from(team_id))
    messages = []
    for budget in (await session.scalars(stmt)).all():
        before = budget_view(budget)
        budget.team_id, budget.updated_at = team_id, utcnow()
        record_per_team(session, change, "budget.update", "budget", budget.id, [before["team_id"], team_id],
                        before, budget_view(budget))
        messages.append(("budget", budget.id))
    return messages


async def drop_budgets(session: AsyncSession, change: Change, budget_scope: str,
                       subject: str) -> list[tuple[str, str]]:
    """Delete the budgets of a subject that is being deleted (the audit log keeps them)."""
    stmt = select(Budget).where(Budget.scope == budget_scope, Budget.subject == subject)
    messages = []
    for budget in (await session.scalars(stmt)).all():
        before = budget_view(budget)
        await session.delete(budget)
        record(session, change, "budget.delete", "budget", budget.id, before["team_id"], before, None)
        messages.append(("budget", budget.id))
    return messages


__all__ = ["BudgetSpec", "budget_clause", "create_budget", "delete_budget", "drop_budgets",
           "get_budget", "list_budgets", "retag_budgets", "update_budget"]
