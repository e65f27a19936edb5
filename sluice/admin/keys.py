"""Virtual keys: create (secret shown once), list, get, update, revoke, rotate.

Scope rules are in ``sluice.admin.scope``. A key's model list must lie within its team's and,
for a non-admin creating or changing it, within the caller's own allow-list, so nobody hands
out more than they hold. A key's limits and priority are set by admins and by the team admin
of the key's team; a member creates keys without them and cannot change them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.admin import scope
from sluice.admin.audit import Change, record
from sluice.admin.budgets import retag_budgets
from sluice.admin.durations import parse_duration
from sluice.admin.limits import check_limits, check_priority
from sluice.admin.notify import announce
from sluice.admin.views import as_utc, key_view
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import Events
from sluice.store.models import ApiKey, Team, User, utcnow
from sluice.store.secrets import generate_key

UPDATABLE = frozenset({"name", "models", "metadata", "tags", "expires_at", "duration", "limits", "priority"})
# Fields that shape how much a key may consume: not the key holder's to choose.
CONTROLLED = frozenset({"limits", "priority"})
DEFAULT_GRACE = timedelta(hours=24)
STATUSES = ("active", "revoked", "expired")


@dataclass(slots=True)
class KeySpec:
    name: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    duration: str | None = None  # "30d": expires that long after creation
    limits: dict[str, Any] | None = None  # see sluice.store.models.LIMITS_DOC
    priority: str | None = None  # one of sluice.store.models.PRIORITIES; None = default


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _expiry(expires_at: datetime | None, duration: str | None, now: datetime) -> datetime | None:
    if expires_at is not None and duration is not None:
        raise _invalid("give either expires_at or duration, not both", "duration")
    if duration is not None:
        return now + parse_duration(duration)
    if expires_at is not None:
        expires_at = as_utc(expires_at).astimezone(timezone.utc)
        if expires_at <= now:
            raise _invalid("expires_at is in the past", "expires_at")
    return expires_at


def _check_controls(caller: Principal, fields: set[str]) -> None:
    """Limits and priority are the admins' (a team admin's, for their team's keys, which are the
    only keys they can reach); a member who could set them would lift their own limits."""
    sent = fields & CONTROLLED
    if sent and caller.role not in (scope.ADMIN, scope.TEAM_ADMIN):
        raise scope.forbidden(f"a {caller.role} cannot set a key's {' or '.join(sorted(sent))}")


def _check_models(caller: Principal, team: Team | None, models: list[str] | None) -> list[str] | None:
    """The key's list, checked against the team's and the caller's; None means 'whatever the team has'."""
    if models is None and not scope.is_admin(caller) and caller.models is not None:
        models = list(caller.models)  # a narrowed caller cannot mint a wider key by omission
    if models is None:
        return None
    for allowed, whose in ((team.models if team else None, "the team's"),
                           (None if scope.is_admin(caller) else caller.models, "your own")):
        extra = sorted(set(models) - set(allowed)) if allowed is not None else []
        if extra:
            raise scope.forbidden(f"models {', '.join(extra)} are outside {whose} model list")
    return list(dict.fromkeys(models))


async def _owner(session: AsyncSession, caller: Principal, spec: KeySpec) -> tuple[str | None, Team | None]:
    """(user id, team) of the new key, within what the caller may hand out."""
    if scope.is_admin(caller):
        return await _admin_owner(session, spec)
    scope.require_key_writer(caller)
    if caller.role == scope.TEAM_ADMIN:
        mine = scope.own_team(caller)
        if spec.team_id not in (None, mine):
            raise scope.forbidden("a team admin can only create keys in their own team")
        if spec.user_id is not None:
            user = await session.get(User, spec.user_id)
            if user is None or user.team_id != mine:
                raise scope.not_found("user", spec.user_id)
            _not_an_admins(user)
        return spec.user_id, await session.get(Team, mine)
    if not caller.user_id:
        raise scope.forbidden("only a user can create keys for themselves")
    if spec.user_id not in (None, caller.user_id):
        raise scope.forbidden("a member can only create keys for themselves")
    if spec.team_id not in (None, caller.team_id):
        raise scope.forbidden("a member can only create keys in their own team")
    if await session.get(User, caller.user_id) is None:
        raise scope.forbidden("your user is not registered; ask an admin to add you")
    return caller.user_id, await session.get(Team, caller.team_id) if caller.team_id else None


async def _admin_owner(session: AsyncSession, spec: KeySpec) -> tuple[str | None, Team | None]:
    user = await session.get(User, spec.user_id) if spec.user_id else None
    if spec.user_id and user is None:
        raise scope.not_found("user", spec.user_id)
    team_id = spec.team_id or (user.team_id if user else None)
    team = await session.get(Team, team_id) if team_id else None
    if team_id and team is None:
        raise scope.not_found("team", team_id)
    if user is not None and user.team_id is not None and user.team_id != team_id:
        raise _invalid(f"user {user.id!r} belongs to team {user.team_id!r}, not {team_id!r}", "team_id")
    return spec.user_id, team


async def create_key(db: Database, caller: Principal, spec: KeySpec, *,
                     request_id: str | None = None) -> tuple[dict[str, Any], str]:
    """A new key: its view and the secret, which is returned here and never again."""
    scope.check_caller(caller)
    now = utcnow()
    _check_controls(caller, {name for name in CONTROLLED if getattr(spec, name) is not None})
    limits, priority = check_limits(spec.limits), check_priority(spec.priority)
    async with db.transaction() as session:
        user_id, team = await _owner(session, caller, spec)
        models = _check_models(caller, team, spec.models)
        secret, prefix, digest = generate_key()
        key = ApiKey(key_hash=digest, key_prefix=prefix, name=spec.name, user_id=user_id,
                     team_id=team.id if team else None, models=models, metadata_=dict(spec.metadata or {}),
                     tags=list(spec.tags or []), expires_at=_expiry(spec.expires_at, spec.duration, now),
                     limits=limits, priority=priority, created_at=now)
        session.add(key)
        await session.flush()
        view = key_view(key, now)
        record(session, Change(caller, request_id), "key.create", "key", key.id, key.team_id, None, view)
    return view, secret


def _status_clause(status: str, now: datetime):
    if status not in STATUSES:
        raise _invalid(f"status must be one of {', '.join(STATUSES)}", "status")
    live = ApiKey.revoked_at.is_(None)
    if status == "revoked":
        return ApiKey.revoked_at.is_not(None)
    if status == "expired":
        return and_(live, ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    return and_(live, or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))


async def list_keys(db: Database, caller: Principal, *, team_id: str | None = None, user_id: str | None = None,
                    status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    scope.check_caller(caller)
    if caller.role in (scope.TEAM_ADMIN, scope.VIEWER):
        team_id = scope.narrow_team_filter(caller, team_id)
    if caller.role == scope.MEMBER and (user_id not in (None, caller.user_id)
                                        or team_id not in (None, caller.team_id)):
        raise scope.forbidden("a member can only list their own keys")
    now = utcnow()
    stmt = select(ApiKey).where(scope.key_clause(caller))
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if status is not None:
        stmt = stmt.where(_status_clause(status, now))
    stmt = stmt.order_by(ApiKey.created_at, ApiKey.id).limit(min(max(limit, 1), 1000)).offset(max(offset, 0))
    async with db.session() as session:
        return [key_view(key, now) for key in (await session.scalars(stmt)).all()]


async def _visible_key(session: AsyncSession, caller: Principal, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or not scope.key_visible(caller, key):
        raise scope.not_found("key", key_id)
    return key


async def get_key(db: Database, caller: Principal, key_id: str) -> dict[str, Any]:
    scope.check_caller(caller)
    async with db.session() as session:
        return key_view(await _visible_key(session, caller, key_id))


def _not_an_admins(owner: User | None) -> None:
    """A key acts with its owner's role: a team admin who could mint or rotate an admin's key
    (an admin may sit in a team) would hold admin power."""
    if owner is not None and owner.role == scope.ADMIN:
        raise scope.forbidden("only an admin can create or change an admin's keys")


async def _writable_key(session: AsyncSession, caller: Principal, key_id: str) -> ApiKey:
    key = await _visible_key(session, caller, key_id)
    scope.require_key_writer(caller)
    if not scope.is_admin(caller) and key.user_id is not None:
        _not_an_admins(await session.get(User, key.user_id))
    return key


def _apply_update(key: ApiKey, caller: Principal, team: Team | None, changes: dict[str, Any],
                  now: datetime) -> None:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise _invalid(f"cannot update {', '.join(sorted(unknown))}", min(unknown))
    if key.revoked_at is not None:
        raise _invalid("the key is revoked", "key_id")
    _check_controls(caller, set(changes))
    if "limits" in changes:
        key.limits = check_limits(changes["limits"])
    if "priority" in changes:
        key.priority = check_priority(changes["priority"])
    if "name" in changes:
        key.name = changes["name"]
    if "models" in changes:
        key.models = _check_models(caller, team, changes["models"])
    if "metadata" in changes:
        key.metadata_ = dict(changes["metadata"] or {})
    if "tags" in changes:
        key.tags = list(changes["tags"] or [])
    if "expires_at" in changes or "duration" in changes:
        key.expires_at = _expiry(changes.get("expires_at"), changes.get("duration"), now)


async def update_key(db: Database, caller: Principal, key_id: str, changes: dict[str, Any], *,
                     request_id: str | None = None, events: Events | None = None) -> dict[str, Any]:
    """Change name, models, metadata, tags, expiry (``expires_at: None`` removes it), limits or priority.

    ``limits`` replaces the whole object (None removes every limit); only an admin or the key's
    team admin may send ``limits`` or ``priority``.
    """
    scope.check_caller(caller)
    now = utcnow()
    async with db.transaction() as session:
        key = await _writable_key(session, caller, key_id)
        team = await session.get(Team, key.team_id) if key.team_id else None
        before = key_view(key, now)
        _apply_update(key, caller, team, changes, now)
        after = key_view(key, now)
        if after != before:
            record(session, Change(caller, request_id), "key.update", "key", key.id, key.team_id, before, after)
        digest = key.key_hash
    await announce(events, [("key", digest)])
    return after


async def revoke_key(db: Database, caller: Principal, key_id: str, *, request_id: str | None = None,
                     events: Events | None = None) -> dict[str, Any]:
    """Revoke at once; revoking a revoked key changes nothing and writes no audit entry."""
    scope.check_caller(caller)
    now = utcnow()
    async with db.transaction() as session:
        key = await _writable_key(session, caller, key_id)
        if key.revoked_at is None:
            before = key_view(key, now)
            key.revoked_at = now
            record(session, Change(caller, request_id), "key.revoke", "key", key.id, key.team_id, before,
                   key_view(key, now))
        view, digest = key_view(key, now), key.key_hash
    await announce(events, [("key", digest)])
    return view


async def rotate_key(db: Database, caller: Principal, key_id: str, *, grace: timedelta = DEFAULT_GRACE,
                     request_id: str | None = None, events: Events | None = None) -> tuple[dict[str, Any], str]:
    """A new key with the old one's settings; the old one keeps working for ``grace`` only."""
    scope.check_caller(caller)
    if grace < timedelta(0):
        raise _invalid("grace must not be negative", "grace")
    now = utcnow()
    change = Change(caller, request_id)
    async with db.transaction() as session:
        old = await _writable_key(session, caller, key_id)
        if old.revoked_at is not None or (old.expires_at is not None and as_utc(old.expires_at) <= now):
            raise _invalid("only an active key can be rotated", "key_id")
        secret, prefix, digest = generate_key()
        new = ApiKey(key_hash=digest, key_prefix=prefix, name=old.name, user_id=old.user_id, team_id=old.team_id,
                     models=old.models, metadata_=dict(old.metadata_ or {}), tags=list(old.tags or []),
                     expires_at=old.expires_at, rotated_from=old.id, lineage=old.limits_id, created_at=now,
                     # Kept, or rotating a key would be a way out of its limits.
                     limits=copy.deepcopy(old.limits), priority=old.priority)
        before = key_view(old, now)
        old.expires_at = min(now + grace, as_utc(old.expires_at) or now + grace)
        session.add(new)
        await session.flush()
        view = key_view(new, now)
        record(session, change, "key.rotate", "key", old.id, old.team_id, before, key_view(old, now))
        record(session, change, "key.create", "key", new.id, new.team_id, None, view)
        old_digest = old.key_hash
    # The key's budgets are filed under its lineage, which the new key shares: nothing to copy.
    await announce(events, [("key", old_digest)])
    return view, secret


async def revoke_owned_keys(session: AsyncSession, change: Change, *, user_id: str | None = None,
                            team_id: str | None = None) -> list[str]:
    """Revoke a user's (in a team, or anywhere) or a whole team's live keys; their hashes, to announce.

    Used when a user leaves a team or is deleted and when a team is deleted: a key must never
    outlive the membership that granted it (a team-less key would lose its team's model limits).
    """
    stmt = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    now = utcnow()
    hashes = []
    for key in (await session.scalars(stmt)).all():
        before = key_view(key, now)
        key.revoked_at = now
        record(session, change, "key.revoke", "key", key.id, key.team_id, before, key_view(key, now))
        hashes.append(key.key_hash)
    return hashes


async def adopt_keys(session: AsyncSession, change: Change, user_id: str, team_id: str) -> list[tuple[str, str]]:
    """Give a user's live team-less keys (and their budgets) the team they joined; what to announce."""
    stmt = select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.team_id.is_(None), ApiKey.revoked_at.is_(None))
    now = utcnow()
    messages: list[tuple[str, str]] = []
    adopted = []
    for key in (await session.scalars(stmt)).all():
        before = key_view(key, now)
        key.team_id = team_id
        record(session, change, "key.update", "key", key.id, team_id, before, key_view(key, now))
        messages.append(("key", key.key_hash))
        adopted.append(key.limits_id)  # a key's budgets are filed under its lineage
    return messages + await retag_budgets(session, change, "key", adopted, team_id)
