"""The usage ledger in SQL: idempotent batch writes with daily roll-ups, and grouped queries.

``write_usage`` inserts rows with ON CONFLICT (request_id) DO NOTHING ... RETURNING request_id and
adds only the rows that came back to the daily roll-ups, so writing a batch twice (a replay
after a partial success, a retry after a lost commit acknowledgement) never counts anything
twice. Rows and roll-ups change in the caller's transaction: both or neither.

``query_usage`` reads the raw ``usage`` table, not the roll-ups: the roll-ups are per UTC day,
and a range given to the second (or a filter the roll-ups do not carry, like tags) would be
answered wrongly from them. The (column, ts) indexes keep the grouped scans bounded by the range.
The roll-ups serve dashboards and budgets that want whole days cheaply.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from functools import lru_cache
from operator import gt, itemgetter
from typing import Any, Iterable, Sequence

import msgspec
import orjson
from sqlalchemy import Date, String, case, cast, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.store.models import ApiKey, AuditEntry, UsageDaily, UsageRecord

GROUPS = ("key", "team", "user", "model", "tag", "day")
_COLUMNS = tuple(c.key for c in UsageRecord.__table__.columns)
_COLUMN_SET = frozenset(_COLUMNS)
_LENGTHS = {c.key: c.type.length for c in UsageRecord.__table__.columns
            if isinstance(c.type, String) and c.type.length}
_ROLLUP_KEY = ("day", "key_id", "team_id", "user_id", "model")
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd")
# Stay well under both drivers' bind-parameter limits (asyncpg 32767, SQLite 32766).
_CHUNK = 500


def utc(ts: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones converted to it."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _struct_order(kind: type) -> Any:
    """For a msgspec Struct with every ledger column: a C-level picker from its field tuple to
    the columns' order; None for any other object (read attribute by attribute)."""
    picker = _PICKERS.get(kind, False)
    if picker is False:
        fields = getattr(kind, "__struct_fields__", None)
        picker = None
        if fields is not None and _COLUMN_SET <= set(fields):
            picker = itemgetter(*(fields.index(name) for name in _COLUMNS))
        _PICKERS[kind] = picker
    return picker


_PICKERS: dict[type, Any] = {}
_TS, _TAGS = _COLUMNS.index("ts"), _COLUMNS.index("tags")
_CLIPPED = tuple((_COLUMNS.index(name), length) for name, length in _LENGTHS.items())
_CLIPPED_AT = itemgetter(*(index for index, _ in _CLIPPED))
_CLIP_LENGTHS = tuple(length for _, length in _CLIPPED)


def _values(event: Any) -> list[Any]:
    """One ledger row as a list in column order: time in UTC, tags a list, over-long ids and
    names clipped (one bad value must not fail a whole batch on PostgreSQL)."""
    picker = _struct_order(type(event))
    values = list(picker(msgspec.structs.astuple(event))) if picker else [getattr(event, n) for n in _COLUMNS]
    ts = values[_TS]
    if ts.tzinfo is not timezone.utc:
        values[_TS] = utc(ts)
    values[_TAGS] = list(values[_TAGS] or ())
    # Every row passes this test and almost none fails it, so it runs in C: str(None) is "None",
    # shorter than any column's length.
    if not any(map(gt, map(len, map(str, _CLIPPED_AT(values))), _CLIP_LENGTHS)):
        return values
    for index, length in _CLIPPED:
        value = values[index]
        if value is not None and len(value) > length:
            values[index] = value[:length]
    return values


def _sqlite_text(ts: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format (isoformat is several times cheaper than strftime)
    return ts.replace(tzinfo=None).isoformat(" ", "microseconds")


# Ledger rows are written with each driver's own bulk path, not SQLAlchemy's multi-row INSERT:
# SQLAlchemy's per-row parameter processing cost ~45 µs of gateway CPU per call (measured with
# bench/), about 15% of a streamed call. Roll-ups (a few rows per batch) keep using SQLAlchemy.
_PG_CASTS = {"VARCHAR": "text", "TIMESTAMP WITH TIME ZONE": "timestamptz", "INTEGER": "int4", "FLOAT": "float8",
             "BOOLEAN": "bool", "JSON": "json", "BIGINT": "int8", "DOUBLE PRECISION": "float8"}


@lru_cache(maxsize=1)
def _pg_insert_sql() -> str:
    casts = []
    for i, column in enumerate(UsageRecord.__table__.columns, start=1):
        compiled = column.type.compile(dialect=postgresql.dialect()).split("(")[0]
        casts.append(f"${i}::{_PG_CASTS[compiled]}[]")
    names = ", ".join(_COLUMNS)
    return (f"INSERT INTO usage ({names}) SELECT * FROM unnest({', '.join(casts)}) "
            "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")


# SQLite: one multi-row INSERT per chunk, not executemany. The driver releases the GIL around
# every statement step, and executemany steps once per row: hundreds of GIL hand-offs between
# the writer thread and the event loop per batch, paid by the requests being served.
# RETURNING (SQLite 3.35+) names the rows that were new, as on PostgreSQL.
_SQLITE_CHUNK = 32766 // (2 * len(_COLUMNS))  # well under SQLite's bind-parameter limit


@lru_cache(maxsize=64)
def _sqlite_insert_sql(rows: int) -> str:
    one = f"({', '.join('?' * len(_COLUMNS))})"
    return (f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES {', '.join([one] * rows)} "
            "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")


def _sqlite_params(rows: list[list[Any]]) -> list[Any]:
    """The rows' values, flat, as SQLAlchemy's SQLite types store them: UTC text for times, JSON
    text for lists (booleans bind as 0/1 by themselves)."""
    params: list[Any] = []
    dumps = orjson.dumps
    for row in rows:
        values = row.copy()
        values[_TS] = _sqlite_text(values[_TS])
        values[_TAGS] = dumps(values[_TAGS]).decode()
        params += values
    return params


async def _insert_rows(session: AsyncSession, rows: list[list[Any]]) -> set[str]:
    """Inserts the rows that are not there yet; returns their request ids."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        columns = list(zip(*rows))
        columns[_TAGS] = [orjson.dumps(v).decode() for v in columns[_TAGS]]
        # Through SQLAlchemy's driver adapter, not the raw asyncpg connection: the adapter opens
        # the session's transaction, so these rows commit together with their roll-ups or not at
        # all (a raw call would autocommit them alone — found by the server-restart test).
        result = await connection.exec_driver_sql(_pg_insert_sql(), tuple(columns))
        return {r[0] for r in result.fetchall()}
    inserted: set[str] = set()
    for start in range(0, len(rows), _SQLITE_CHUNK):
        chunk = rows[start:start + _SQLITE_CHUNK]
        result = await connection.exec_driver_sql(_sqlite_insert_sql(len(chunk)), tuple(_sqlite_params(chunk)))
        inserted.update(r[0] for r in result.fetchall())
    return inserted


@lru_cache(maxsize=4)
def _upsert_rollups_stmt(dialect: str) -> Any:
    table = UsageDaily.__table__
    stmt = _insert(dialect)(table)
    return stmt.on_conflict_do_update(
        index_elements=list(_ROLLUP_KEY),
        set_={name: table.c[name] + stmt.excluded[name] for name in _SUMS},
    )


_ROLLUP_AT = itemgetter(*(_COLUMNS.index(n) for n in ("ts", "key_id", "team_id", "user_id", "model")))
_STATUS = itemgetter(_COLUMNS.index("status"))
_SUMMED_AT = tuple(itemgetter(_COLUMNS.index(n)) for n in ("input_tokens", "output_tokens", "cached_tokens", "cost_usd"))


def _rollups(rows: Iterable[list[Any]]) -> list[dict[str, Any]]:
    """The rows' sums per (day, key, team, user, model). A batch holds a few such groups and
    hundreds of rows, so rows are grouped in Python and summed in C."""
    groups: dict[tuple, list[list[Any]]] = defaultdict(list)
    for row in rows:
        ts, key_id, team_id, user_id, model = _ROLLUP_AT(row)
        groups[(ts.date(), key_id or "", team_id or "", user_id or "", model)].append(row)
    rollups = []
    # Sorted so concurrent writers on PostgreSQL lock roll-up rows in one order (no deadlocks).
    for key, group in sorted(groups.items()):
        sums = [len(group), sum(map((400).__le__, map(_STATUS, group)))]
        sums += [sum(map(pick, group)) for pick in _SUMMED_AT]
        rollups.append(dict(zip(_ROLLUP_KEY, key)) | dict(zip(_SUMS, sums)))
    return rollups


async def _upsert_rollups(session: AsyncSession, rollups: list[dict[str, Any]]) -> None:
    stmt = _upsert_rollups_stmt(session.get_bind().dialect.name)
    for start in range(0, len(rollups), _CHUNK):
        await session.execute(stmt, rollups[start:start + _CHUNK])


def unique_rows(events: Sequence[Any]) -> dict[str, list[Any]]:
    """Ledger rows by request id (the first occurrence wins within a batch)."""
    rows: dict[str, list[Any]] = {}
    for event in events:
        if event.request_id not in rows:
            rows[event.request_id] = _values(event)
    return rows


async def write_usage(session: AsyncSession, events: Sequence[Any]) -> int:
    """Write ledger rows (objects with UsageRecord's fields, e.g. UsageEvent) and their roll-ups.

    Returns how many rows were new. Runs in the caller's transaction; the caller commits.
    (An SQLite file's ledger is written by ``sluice.store.usage_sqlite`` instead, with the same
    rows, roll-ups and audit entries.)
    """
    rows = unique_rows(events)
    if not rows:
        return 0
    inserted = await _insert_rows(session, list(rows.values()))
    if inserted:
        fresh = [row for rid, row in rows.items() if rid in inserted]
        await _upsert_rollups(session, _rollups(fresh))
        for entry in guardrail_audits(fresh):
            session.add(AuditEntry(**entry))
    return len(inserted)


_GUARDRAILS = _COLUMNS.index("guardrails")
_STRONGEST = ("block", "redact", "flag")


def guardrail_audits(rows: Iterable[list[Any]]) -> list[dict[str, Any]]:
    """Audit-log entries (AuditEntry's columns) for the calls a guardrail acted on (block, redact,
    flag): written in the same transaction as their ledger rows, so once however often a batch is
    replayed."""
    entries = []
    for values in rows:
        verdicts = values[_GUARDRAILS]
        if not verdicts:
            continue
        action = next((a for a in _STRONGEST if f"={a}" in verdicts), None)
        if action is None:
            continue
        row = dict(zip(_COLUMNS, values))
        actor = f"key:{row['key_id']}" if row["key_id"] else f"user:{row['user_id']}" if row["user_id"] else "anonymous"
        entries.append({
            "ts": row["ts"], "actor": actor[:80], "action": f"guardrail.{action}", "object_type": "call",
            "object_id": row["request_id"][:60], "team_id": row["team_id"], "before": None,
            "after": {"model": row["model"], "verdicts": verdicts, "status": row["status"],
                      "end_user": row["end_user"]},
            "request_id": row["request_id"]})
    return entries


def _aggregates() -> list[Any]:
    u = UsageRecord
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(case((u.status >= 400, 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(u.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(u.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(u.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(u.cost_usd), 0.0).label("cost_usd"),
    ]


def _day_expr(dialect: str) -> Any:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", UsageRecord.ts), Date)
    return func.date(UsageRecord.ts)  # stored as UTC text; date() takes its first 10 characters


def _group_expr(group_by: str, dialect: str) -> Any:
    columns = {"key": UsageRecord.key_id, "team": UsageRecord.team_id, "user": UsageRecord.user_id,
               "model": UsageRecord.model}
    return _day_expr(dialect) if group_by == "day" else columns[group_by]


def _filters(start: datetime, end: datetime, key_id: str | None, team_id: str | None,
             user_id: str | None) -> list[Any]:
    u = UsageRecord
    clauses = [u.ts >= utc(start), u.ts < utc(end)]
    for column, value in ((u.key_id, key_id), (u.team_id, team_id), (u.user_id, user_id)):
        if value is not None:
            clauses.append(column == value)
    return clauses


def _as_dict(group: Any, row: Any) -> dict[str, Any]:
    if isinstance(group, (date, datetime)):
        group = group.isoformat()[:10]
    return {"group": group, "requests": int(row.requests), "errors": int(row.errors),
            "input_tokens": int(row.input_tokens), "output_tokens": int(row.output_tokens),
            "cached_tokens": int(row.cached_tokens), "cost_usd": float(row.cost_usd)}


async def _by_tag(session: AsyncSession, where: list[Any]) -> list[dict[str, Any]]:
    # JSON array functions differ between SQLite and PostgreSQL; aggregate here instead, over a
    # range the caller bounded. A call with two tags counts under both; untagged calls under None.
    u = UsageRecord
    stmt = select(u.tags, u.status, u.input_tokens, u.output_tokens, u.cached_tokens, u.cost_usd).where(*where)
    sums: dict[Any, dict[str, Any]] = {}
    for tags, status, tokens_in, tokens_out, cached, cost in (await session.execute(stmt)).all():
        for tag in (tags or [None]):
            acc = sums.setdefault(tag, {"group": tag} | dict.fromkeys(_SUMS, 0))
            acc["requests"] += 1
            acc["errors"] += 1 if status >= 400 else 0
            acc["input_tokens"] += tokens_in
            acc["output_tokens"] += tokens_out
            acc["cached_tokens"] += cached
            acc["cost_usd"] += cost
    return list(sums.values())


async def query_usage(session: AsyncSession, *, group_by: str, start: datetime, end: datetime,
                      key_id: str | None = None, team_id: str | None = None,
                      user_id: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Usage in [start, end) grouped by key, team, user, model, tag or UTC day, and the totals.

    Rows: ``{"group", "requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
    "cost_usd"}``, highest cost first (days in date order). ``errors`` counts status >= 400.
    Totals count each call once, also when grouping by tag. Tenant scoping is the caller's job:
    pass team_id for a team admin, user_id for a member.
    """
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    where = _filters(start, end, key_id, team_id, user_id)
    total_row = (await session.execute(select(*_aggregates()).where(*where))).one()
    totals = _as_dict(None, total_row)
    del totals["group"]
    if group_by == "tag":
        rows = await _by_tag(session, where)
    else:
        group = _group_expr(group_by, session.get_bind().dialect.name).label("group")
        stmt = select(group, *_aggregates()).where(*where).group_by(group)
        rows = [_as_dict(r.group, r) for r in (await session.execute(stmt)).all()]
    if group_by == "day":
        rows.sort(key=lambda r: r["group"] or "")
    else:
        rows.sort(key=lambda r: (-r["cost_usd"], -r["requests"], str(r["group"])))
    return rows, totals


async def cache_stats(session: AsyncSession, *, start: datetime, end: datetime, key_id: str | None = None,
                      team_id: str | None = None, user_id: str | None = None) -> list[dict[str, Any]]:
    """Per model alias over [start, end): chat calls, cache hits, what hits saved and what misses cost."""
    u = UsageRecord
    where = [*_filters(start, end, key_id, team_id, user_id), u.endpoint == "chat"]
    hits = func.sum(case((u.cache_hit.is_(True), 1), else_=0))
    stmt = (select(u.model, func.count().label("requests"), hits.label("hits"),
                   func.coalesce(func.sum(u.cost_saved_usd), 0.0).label("saved"),
                   func.coalesce(func.sum(u.cost_usd), 0.0).label("spent"))
            .where(*where).group_by(u.model).order_by(u.model))
    return [{"model": r.model, "requests": int(r.requests), "hits": int(r.hits or 0),
             "hit_rate": round((r.hits or 0) / r.requests, 4) if r.requests else 0.0,
             "cost_saved_usd": float(r.saved), "cost_usd": float(r.spent)}
            for r in (await session.execute(stmt)).all()]


_SPEND_COLUMN = {"key": "key_id", "team": "team_id", "user": "user_id", "end_user": "end_user", "model": "model"}


async def spent_usd(session: AsyncSession, scope: str, subject: str, since: datetime | None) -> float:
    """What one subject spent since ``since`` (None: ever): the starting value of a budget counter.

    ``scope`` is a budget scope: key, team, user, end_user, model (the alias asked for) or tag.
    """
    u = UsageRecord
    where: list[Any] = [] if since is None else [u.ts >= utc(since)]
    if scope == "tag":
        if session.get_bind().dialect.name == "postgresql":
            where.append(cast(u.tags, postgresql.JSONB).contains([subject]))
        else:
            where.append(text("EXISTS (SELECT 1 FROM json_each(usage.tags) WHERE json_each.value = :tag)")
                         .bindparams(tag=subject))
    elif scope == "key":  # a key budget is filed under the key's lineage: every key of the chain spends from it
        where.append((u.key_id == subject) | u.key_id.in_(select(ApiKey.id).where(ApiKey.lineage == subject)))
    elif scope in _SPEND_COLUMN:
        where.append(getattr(u, _SPEND_COLUMN[scope]) == subject)
    else:
        raise ValueError(f"unknown budget scope {scope!r}")
    total = (await session.execute(select(func.coalesce(func.sum(u.cost_usd), 0.0)).where(*where))).scalar_one()
    return float(total)


__all__ = ["GROUPS", "cache_stats", "guardrail_audits", "query_usage", "spent_usd", "unique_rows", "utc",
           "write_usage"]
