"""The audit log: one row per change, written in the same transaction as the change itself.

Entries carry ``team_id`` so a team admin can read their team's history and nothing else.
Snapshots are the views of ``sluice.admin.views``, which never contain a secret or a hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.admin import scope
from sluice.admin.views import audit_view
from sluice.policies.auth import Principal
from sluice.store.db import Database
from sluice.store.models import AuditEntry, utcnow

MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Change:
    """What every write needs besides its arguments: who asks, under which request id."""

    caller: Principal
    request_id: str | None = None


def record(session: AsyncSession, change: Change, action: str, object_type: str, object_id: str,
           team_id: str | None, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    session.add(AuditEntry(ts=utcnow(), actor=change.caller.actor, action=action, object_type=object_type,
                           object_id=object_id, team_id=team_id, before=before, after=after,
                           request_id=change.request_id))


def record_per_team(session: AsyncSession, change: Change, action: str, object_type: str, object_id: str,
                    teams: list[str | None], before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> None:
    """A change that touches two teams (a user moving) is written once for each, so both see it."""
    for team_id in dict.fromkeys(teams):
        record(session, change, action, object_type, object_id, team_id, before, after)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    team_id: str | None = None
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    request_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


async def query_audit(db: Database, caller: Principal, query: AuditQuery) -> list[dict[str, Any]]:
    """Newest first. Admins read everything; a team admin their team's entries; others nothing."""
    scope.check_caller(caller)
    if caller.role not in (scope.ADMIN, scope.TEAM_ADMIN):
        raise scope.forbidden(f"a {caller.role} cannot read the audit log")
    team_id = scope.narrow_team_filter(caller, query.team_id)
    stmt = select(AuditEntry)
    for column, value in ((AuditEntry.team_id, team_id), (AuditEntry.actor, query.actor),
                          (AuditEntry.action, query.action), (AuditEntry.object_type, query.object_type),
                          (AuditEntry.object_id, query.object_id), (AuditEntry.request_id, query.request_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.start is not None:
        stmt = stmt.where(AuditEntry.ts >= query.start)
    if query.end is not None:
        stmt = stmt.where(AuditEntry.ts < query.end)
    stmt = stmt.order_by(AuditEntry.id.desc()).limit(min(max(query.limit, 1), MAX_LIMIT))
    stmt = stmt.offset(max(query.offset, 0))
    async with db.session() as session:
        return [audit_view(entry) for entry in (await session.scalars(stmt)).all()]
