"""Users: create, list, get, update, delete — admins anywhere, team admins inside their team.

A team admin cannot grant the ``admin`` role, touch an admin, move a user to another team, or
set a user's limits (admin only). A user who leaves a team (moved, removed or deleted) loses the
keys that team granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.admin import scope
from sluice.admin.audit import Change, record_per_team
from sluice.admin.budgets import drop_budgets, retag_budgets
from sluice.admin.errors import unique
from sluice.admin.keys import adopt_keys, revoke_owned_keys
from sluice.admin.limits import check_limits
from sluice.admin.notify import announce
from sluice.admin.views import user_view
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import Events
from sluice.store.models import ROLES, Team, User, utcnow

UPDATABLE = frozenset({"email", "name", "role", "team_id", "external_id", "limits"})
DUPLICATE = "a user with this email or external id already exists"


@dataclass(slots=True)
class UserSpec:
    email: str | None = None
    name: str | None = None
    role: str = "member"
    team_id: str | None = None
    external_id: str | None = None
    limits: dict[str, Any] | None = None  # see sluice.store.models.LIMITS_DOC


def _check_limits_setter(caller: Principal) -> None:
    # A team admin choosing their users' limits could lift the limits an admin set on the team's people.
    if not scope.is_admin(caller):
        raise scope.forbidden("only an admin can set a user's limits")


def check_role(caller: Principal, role: str) -> None:
    if role not in ROLES:
        raise GatewayError("invalid_request", f"role must be one of {', '.join(ROLES)}", param="role")
    if role == scope.ADMIN and not scope.is_admin(caller):
        raise scope.forbidden("only an admin can grant the admin role")


async def _check_team(session: AsyncSession, caller: Principal, team_id: str | None) -> None:
    """May the caller put a user into ``team_id``? (None: no team.)"""
    if scope.is_admin(caller):
        if team_id is not None and await session.get(Team, team_id) is None:
            raise scope.not_found("team", team_id)
        return
    if team_id not in (None, scope.own_team(caller)):
        raise scope.forbidden("a team admin cannot move users to other teams")


async def create_user(db: Database, caller: Principal, spec: UserSpec, *,
                      request_id: str | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    scope.require_user_manager(caller)
    check_role(caller, spec.role)
    if spec.limits is not None:
        _check_limits_setter(caller)
    limits = check_limits(spec.limits)
    team_id = spec.team_id if scope.is_admin(caller) else (spec.team_id or scope.own_team(caller))
    async with db.transaction() as session:
        await _check_team(session, caller, team_id)
        user = User(email=spec.email, name=spec.name, role=spec.role, team_id=team_id,
                    external_id=spec.external_id, limits=limits, created_at=utcnow())
        async with unique(session, DUPLICATE):
            session.add(user)
        view = user_view(user)
        record_per_team(session, Change(caller, request_id), "user.create", "user", user.id, [team_id], None, view)
    return view


async def list_users(db: Database, caller: Principal, *, team_id: str | None = None, role: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    scope.check_caller(caller)
    if caller.role in (scope.TEAM_ADMIN, scope.VIEWER):
        team_id = scope.narrow_team_filter(caller, team_id)
    elif caller.role == scope.MEMBER and team_id not in (None, caller.team_id):
        raise scope.forbidden("a member can only see their own user")
    stmt = select(User).where(scope.user_clause(caller))
    if team_id is not None:
        stmt = stmt.where(User.team_id == team_id)
    if role is not None:
        stmt = stmt.where(User.role == role)
    stmt = stmt.order_by(User.created_at, User.id).limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
    async with db.session() as session:
        return [user_view(user) for user in (await session.scalars(stmt)).all()]


async def visible_user(session: AsyncSession, caller: Principal, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None or not scope.user_visible(caller, user):
        raise scope.not_found("user", user_id)
    return user


async def get_user(db: Database, caller: Principal, user_id: str) -> dict[str, Any]:
    scope.check_caller(caller)
    async with db.session() as session:
        return user_view(await visible_user(session, caller, user_id))


def require_manageable(caller: Principal, user: User) -> None:
    scope.require_user_manager(caller)
    if user.role == scope.ADMIN and not scope.is_admin(caller):
        raise scope.forbidden("a team admin cannot change an admin")


async def move_user(session: AsyncSession, change: Change, user: User, team_id: str | None) -> list[tuple[str, str]]:
    """Put ``user`` in ``team_id``; keys granted by the team left behind are revoked.

    The user's team-less keys join the new team: the gateway already counts such a key in its
    owner's team, so the team's admins must see it too.
    """
    messages: list[tuple[str, str]] = []
    if user.team_id is not None and user.team_id != team_id:
        hashes = await revoke_owned_keys(session, change, user_id=user.id, team_id=user.team_id)
        messages += [("key", digest) for digest in hashes]
    if team_id is not None:
        messages += await adopt_keys(session, change, user.id, team_id)
    messages += await retag_budgets(session, change, "user", [user.id], team_id)
    user.team_id = team_id
    return messages


async def update_user(db: Database, caller: Principal, user_id: str, changes: dict[str, Any], *,
                      request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    """Change email, name, role, team, external id or limits (admin only; ``None`` removes them).

    A change of role, team or limits is announced, so gateways reload the user's keys.
    """
    scope.check_caller(caller)
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise GatewayError("invalid_request", f"cannot update {', '.join(sorted(unknown))}")
    change = Change(caller, request_id)
    async with db.transaction() as session:
        user = await visible_user(session, caller, user_id)
        require_manageable(caller, user)
        before = user_view(user)
        messages: list[tuple[str, str]] = []
        if "role" in changes:
            check_role(caller, changes["role"])
            user.role = changes["role"]
        if "team_id" in changes:
            await _check_team(session, caller, changes["team_id"])
            messages += await move_user(session, change, user, changes["team_id"])
        for name in ("email", "name", "external_id"):
            if name in changes:
                setattr(user, name, changes[name])
        if "limits" in changes:
            _check_limits_setter(caller)
            user.limits = check_limits(changes["limits"])
        async with unique(session, DUPLICATE):
            pass
        after = user_view(user)
        if after != before:
            record_per_team(session, change, "user.update", "user", user.id,
                            [before["team_id"], after["team_id"]], before, after)
        if any(before[name] != after[name] for name in ("role", "team_id", "limits")):
            messages.append(("user", user.id))
    await announce(events, messages)
    return after


async def delete_user(db: Database, caller: Principal, user_id: str, *, request_id: str | None = None,
                      events: Events | None = None) -> None:
    """Delete a user after revoking all their keys (the audit log keeps their history)."""
    scope.check_caller(caller)
    change = Change(caller, request_id)
    async with db.transaction() as session:
        user = await visible_user(session, caller, user_id)
        require_manageable(caller, user)
        before = user_view(user)
        hashes = await revoke_owned_keys(session, change, user_id=user.id)
        budgets = await drop_budgets(session, change, "user", user.id)
        await session.delete(user)
        record_per_team(session, change, "user.delete", "user", user_id, [before["team_id"]], before, None)
    await announce(events, [("key", digest) for digest in hashes] + budgets + [("user", user_id)])
