"""Teams and their members.

Admins create, rename, re-scope (models), limit and delete teams. A team admin may edit their
own team's metadata only: the name is unique across tenants (a clash would reveal another team's
name), and the model list and the limits are the access grant itself. Team admins add and remove
members of their own team; a user already in another team is invisible to them (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.admin import scope
from sluice.admin.audit import Change, record, record_per_team
from sluice.admin.budgets import drop_budgets, retag_budgets
from sluice.admin.errors import unique
from sluice.admin.keys import revoke_owned_keys
from sluice.admin.limits import check_limits
from sluice.admin.notify import announce
from sluice.admin.users import check_role, move_user, require_manageable
from sluice.admin.views import team_view, user_view
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import Events
from sluice.store.models import Team, User, utcnow

UPDATABLE = frozenset({"name", "models", "metadata", "limits"})
# What, when it changes, alters what the team's keys may do: the gateway must reload them.
ANNOUNCED = ("models", "limits")
TEAM_ADMIN_UPDATABLE = frozenset({"metadata"})
DUPLICATE = "a team with this name already exists"


@dataclass(slots=True)
class TeamSpec:
    name: str
    models: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] | None = None  # see sluice.store.models.LIMITS_DOC


async def create_team(db: Database, caller: Principal, spec: TeamSpec, *,
                      request_id: str | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    scope.require_admin(caller, "create teams")
    limits = check_limits(spec.limits)
    async with db.transaction() as session:
        team = Team(name=spec.name, models=spec.models, metadata_=dict(spec.metadata or {}), limits=limits,
                    created_at=utcnow())
        async with unique(session, DUPLICATE):
            session.add(team)
        view = team_view(team)
        record(session, Change(caller, request_id), "team.create", "team", team.id, team.id, None, view)
    return view


async def list_teams(db: Database, caller: Principal, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    scope.check_caller(caller)
    stmt = select(Team).where(scope.team_clause(caller)).order_by(Team.created_at, Team.id)
    stmt = stmt.limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
    async with db.session() as session:
        return [team_view(team) for team in (await session.scalars(stmt)).all()]


async def _visible_team(session: AsyncSession, caller: Principal, team_id: str) -> Team:
    team = await session.get(Team, team_id)
    if team is None or not scope.team_visible(caller, team):
        raise scope.not_found("team", team_id)
    return team


async def get_team(db: Database, caller: Principal, team_id: str) -> dict[str, Any]:
    scope.check_caller(caller)
    async with db.session() as session:
        return team_view(await _visible_team(session, caller, team_id))


def _check_team_changes(caller: Principal, changes: dict[str, Any]) -> None:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise GatewayError("invalid_request", f"cannot update {', '.join(sorted(unknown))}")
    if "name" in changes and not changes["name"]:
        raise GatewayError("invalid_request", "a team needs a name", param="name")
    if scope.is_admin(caller):
        return
    if caller.role != scope.TEAM_ADMIN:
        raise scope.forbidden(f"a {caller.role} cannot change a team")
    if set(changes) - TEAM_ADMIN_UPDATABLE:
        raise scope.forbidden("a team admin can change only their team's metadata")


async def update_team(db: Database, caller: Principal, team_id: str, changes: dict[str, Any], *,
                      request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    async with db.transaction() as session:
        team = await _visible_team(session, caller, team_id)
        _check_team_changes(caller, changes)
        before = team_view(team)
        if "name" in changes:
            team.name = changes["name"]
        if "models" in changes:
            team.models = list(changes["models"]) if changes["models"] is not None else None
        if "metadata" in changes:
            team.metadata_ = dict(changes["metadata"] or {})
        if "limits" in changes:
            team.limits = check_limits(changes["limits"])
        async with unique(session, DUPLICATE):
            pass
        after = team_view(team)
        if after != before:
            record(session, Change(caller, request_id), "team.update", "team", team.id, team.id, before, after)
    if any(before[name] != after[name] for name in ANNOUNCED):
        await announce(events, [("team", team_id)])
    return after


async def delete_team(db: Database, caller: Principal, team_id: str, *, request_id: str | None = None,
                      events: Events | None = None) -> None:
    """Delete a team: its live keys are revoked and its users left without a team first."""
    scope.check_caller(caller)
    change = Change(caller, request_id)
    async with db.transaction() as session:
        team = await _visible_team(session, caller, team_id)
        scope.require_admin(caller, "delete teams")
        before = team_view(team)
        hashes = await revoke_owned_keys(session, change, team_id=team_id)
        members = (await session.scalars(select(User).where(User.team_id == team_id))).all()
        for user in members:
            user_before = user_view(user)
            user.team_id = None
            record(session, change, "team.member_remove", "user", user.id, team_id, user_before, user_view(user))
        budgets = await retag_budgets(session, change, "user", [user.id for user in members], None)
        budgets += await drop_budgets(session, change, "team", team_id)
        await session.flush()
        await session.delete(team)
        record(session, change, "team.delete", "team", team_id, team_id, before, None)
    await announce(events, [("key", d) for d in hashes] + [("user", u.id) for u in members] + budgets
                   + [("team", team_id)])


async def list_members(db: Database, caller: Principal, team_id: str) -> list[dict[str, Any]]:
    """A team's users, as far as the caller may see users (a member sees only themselves)."""
    scope.check_caller(caller)
    async with db.session() as session:
        await _visible_team(session, caller, team_id)
        stmt = select(User).where(User.team_id == team_id, scope.user_clause(caller))
        return [user_view(user) for user in (await session.scalars(stmt.order_by(User.created_at, User.id))).all()]


async def _addable_user(session: AsyncSession, caller: Principal, user_id: str, team_id: str) -> User:
    """An admin may move anyone; a team admin may add non-admin users of no team (or already theirs).

    Anyone else is outside a team admin's view, so 404, like every other unseen object.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise scope.not_found("user", user_id)
    if not scope.is_admin(caller) and (user.team_id not in (None, team_id) or user.role == scope.ADMIN):
        raise scope.not_found("user", user_id)
    require_manageable(caller, user)
    return user


async def add_member(db: Database, caller: Principal, team_id: str, user_id: str, *, role: str | None = None,
                     request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    change = Change(caller, request_id)
    async with db.transaction() as session:
        await _visible_team(session, caller, team_id)
        scope.require_user_manager(caller)
        user = await _addable_user(session, caller, user_id, team_id)
        before = user_view(user)
        if role is not None:
            check_role(caller, role)
            user.role = role
        messages = await move_user(session, change, user, team_id)
        after = user_view(user)
        if after != before:
            record_per_team(session, change, "team.member_add", "user", user.id, [before["team_id"], team_id],
                            before, after)
            messages.append(("user", user.id))
    await announce(events, messages)
    return after


async def remove_member(db: Database, caller: Principal, team_id: str, user_id: str, *,
                        request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    change = Change(caller, request_id)
    async with db.transaction() as session:
        await _visible_team(session, caller, team_id)
        user = await session.get(User, user_id)
        if user is None or user.team_id != team_id or not scope.user_visible(caller, user):
            raise scope.not_found("user", user_id)
        require_manageable(caller, user)
        before = user_view(user)
        messages = await move_user(session, change, user, None)
        after = user_view(user)
        record(session, change, "team.member_remove", "user", user.id, team_id, before, after)
    await announce(events, [*messages, ("user", user_id)])
    return after
