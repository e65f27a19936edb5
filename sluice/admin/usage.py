"""Usage queries over the ledger, scoped to the caller.

Admins query anything; a team admin and a viewer their team; a member their own user (or,
for a member key without a user, that key). Naming another tenant's team or user explicitly
is 403; a key id outside the caller's scope simply matches nothing, because the scope filter
is always applied with it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sluice.admin import scope
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.usage import query_usage

GROUPS = ("key", "team", "user", "model", "tag", "day")
COLUMNS = ("group", "requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd")
DEFAULT_RANGE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    group_by: str = "model"
    start: datetime | None = None
    end: datetime | None = None
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None


def _scoped(caller: Principal, f: UsageFilter) -> dict[str, str | None]:
    """The key/team/user filters the query will actually run with."""
    if scope.is_admin(caller):
        return {"key_id": f.key_id, "team_id": f.team_id, "user_id": f.user_id}
    if caller.role in (scope.TEAM_ADMIN, scope.VIEWER):
        return {"key_id": f.key_id, "team_id": scope.narrow_team_filter(caller, f.team_id), "user_id": f.user_id}
    if f.team_id not in (None, caller.team_id) or f.user_id not in (None, caller.user_id):
        raise scope.forbidden("a member can only see their own usage")
    if caller.user_id:
        return {"key_id": f.key_id, "team_id": f.team_id, "user_id": caller.user_id}
    if caller.key_id and f.key_id in (None, caller.key_id):
        return {"key_id": caller.key_id, "team_id": f.team_id, "user_id": None}
    raise scope.forbidden("a member can only see their own usage")


def _range(f: UsageFilter) -> tuple[datetime, datetime]:
    end = _utc(f.end) or datetime.now(timezone.utc)
    start = _utc(f.start) or end - DEFAULT_RANGE
    if start >= end:
        raise GatewayError("invalid_request", "start must be before end", param="start")
    return start, end


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


async def usage_report(db: Database, caller: Principal, f: UsageFilter) -> dict[str, Any]:
    """``{"group_by", "start", "end", "rows": [...], "totals": {...}}``."""
    scope.check_caller(caller)
    if f.group_by not in GROUPS:
        raise GatewayError("invalid_request", f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
    filters = _scoped(caller, f)
    start, end = _range(f)
    async with db.session() as session:
        rows, totals = await query_usage(session, group_by=f.group_by, start=start, end=end, **filters)
    return {"group_by": f.group_by, "start": start.isoformat(), "end": end.isoformat(), "rows": rows,
            "totals": totals}


def usage_csv(report: dict[str, Any]) -> str:
    """One line per group, the columns of ``COLUMNS``; totals are left to the spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report["rows"]:
        writer.writerow([row.get(column, "") for column in COLUMNS])
    return out.getvalue()
