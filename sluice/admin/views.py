"""Plain, JSON-safe views of the identity objects: what the API returns and the audit log keeps.

A key's view never holds its secret or its hash; only the display prefix, which exists so
people can recognise a key in a list.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from sluice.store.models import ApiKey, AuditEntry, Budget, Team, User


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


def key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    expires = as_utc(key.expires_at)
    if expires is not None and expires <= now:
        return "expired"
    return "active"


def key_view(key: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return {
        "id": key.id,
        "key_prefix": key.key_prefix,
        "name": key.name,
        "user_id": key.user_id,
        "team_id": key.team_id,
        "models": list(key.models) if key.models is not None else None,
        "metadata": dict(key.metadata_ or {}),
        "tags": list(key.tags or []),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "rotated_from": key.rotated_from,
        "lineage": key.limits_id,
        "limits": _limits(key.limits),
        "priority": key.priority,
        "created_at": iso(key.created_at),
        "status": key_status(key, now),
    }


def team_view(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "models": list(team.models) if team.models is not None else None,
        "metadata": dict(team.metadata_ or {}),
        "limits": _limits(team.limits),
        "created_at": iso(team.created_at),
    }


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "team_id": user.team_id,
        "external_id": user.external_id,
        "limits": _limits(user.limits),
        "created_at": iso(user.created_at),
    }


def _limits(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # A copy: views end up in audit rows, which must not share (and later see) a live object's JSON.
    return copy.deepcopy(value) if value else None


def budget_view(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.id,
        "scope": budget.scope,
        "subject": budget.subject,
        "period": budget.period,
        "max_usd": budget.max_usd,
        "soft_usd": budget.soft_usd,
        "name": budget.name,
        "team_id": budget.team_id,
        "created_at": iso(budget.created_at),
        "updated_at": iso(budget.updated_at),
    }


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "ts": iso(entry.ts),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "team_id": entry.team_id,
        "before": entry.before,
        "after": entry.after,
        "request_id": entry.request_id,
    }
