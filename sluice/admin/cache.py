"""The response cache in the admin API: hit rates and savings (from the ledger), and purges.

Stats are scoped like usage (``sluice.admin.usage``). Purging: an admin purges anything; a team
admin their own team's entries (namespace ``t:<team>``) or a key of their team (``k:<key>``).
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select

from sluice.admin import scope
from sluice.admin.audit import Change, record
from sluice.admin.usage import UsageFilter, _range, _scoped
from sluice.policies.auth import Principal
from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.models import ApiKey
from sluice.store.usage import cache_stats


class CacheControl(Protocol):
    """``sluice.policies.cache.ResponseCache``, seen from here."""

    async def purge(self, alias: str | None = None, namespace: str | None = None) -> int: ...


async def cache_report(db: Database, caller: Principal, f: UsageFilter, cache: Any | None) -> dict[str, Any]:
    scope.check_caller(caller)
    filters = _scoped(caller, f)
    start, end = _range(f)
    async with db.session() as session:
        rows = await cache_stats(session, start=start, end=end, **filters)
    requests = sum(r["requests"] for r in rows)
    hits = sum(r["hits"] for r in rows)
    report: dict[str, Any] = {
        "start": start.isoformat(), "end": end.isoformat(), "enabled": cache is not None, "models": rows,
        "totals": {"requests": requests, "hits": hits, "hit_rate": round(hits / requests, 4) if requests else 0.0,
                   "cost_saved_usd": sum(r["cost_saved_usd"] for r in rows)},
    }
    if cache is not None and scope.is_admin(caller):
        report["entries"] = await cache.store.size()
    return report


async def purge_cache(db: Database, caller: Principal, cache: CacheControl | None, *, model: str | None,
                      team_id: str | None, key_id: str | None, request_id: str | None = None) -> dict[str, Any]:
    scope.check_caller(caller)
    if cache is None:
        raise GatewayError("not_found", "The response cache is not enabled on this gateway.")
    if team_id and key_id:
        raise GatewayError("invalid_request", "give team_id or key_id, not both", param="key_id")
    if not scope.is_admin(caller):
        await _check_purge_scope(db, caller, team_id, key_id)
    namespace = f"t:{team_id}" if team_id else f"k:{key_id}" if key_id else None
    removed = await cache.purge(model, namespace)
    async with db.transaction() as session:
        record(session, Change(caller, request_id), "cache.purge", "cache", namespace or model or "*",
               team_id or caller.team_id,
               None, {"model": model, "team_id": team_id, "key_id": key_id, "removed": removed})
    return {"removed": removed}


async def _check_purge_scope(db: Database, caller: Principal, team_id: str | None, key_id: str | None) -> None:
    if caller.role != scope.TEAM_ADMIN or not caller.team_id:
        raise scope.forbidden("only admins and team admins can purge the cache")
    if key_id:
        async with db.session() as session:
            key = (await session.execute(select(ApiKey).where(ApiKey.id == key_id))).scalar_one_or_none()
        if key is None or key.team_id != caller.team_id:
            raise GatewayError("not_found", f"No key '{key_id}'.")
    elif team_id != caller.team_id:
        raise scope.forbidden("a team admin can purge only their own team's entries")


__all__ = ["cache_report", "purge_cache"]
