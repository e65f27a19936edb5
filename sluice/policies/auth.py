"""Who is calling: the auth stage — master key, virtual keys (``sk-slc-…``) and bearer JWTs.

Virtual keys are looked up once in the database and then served from an in-process cache, so
the hot path is a dict lookup. The cache is invalidated by change events (``sluice.store.events``;
over Redis pub/sub when several instances run) and bounded in time by ``cache_ttl``. Expiry and
revocation are checked on every call against the cached record, so a key that expires while
cached is refused on time without asking the database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from sluice.schema import GatewayError
from sluice.store.db import Database
from sluice.store.events import Events, LocalEvents
from sluice.store.models import ApiKey, Team, User
from sluice.store.secrets import hash_key, looks_like_virtual_key

if TYPE_CHECKING:
    from sluice.policies.jwt import JWTVerifier

log = logging.getLogger("sluice.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as every later stage and the admin API see it.

    ``models`` is the allow-list in force (the key's narrowed by its team's); None = all.
    """

    kind: str  # "master" | "anonymous" | "key" | "jwt"
    id: str  # "master", "anonymous", the key id, or the user id for a JWT
    role: str = "admin"  # admin | team_admin | member | viewer
    key_id: str | None = None
    # The first key of the key's rotation chain (the key itself if never rotated): its own limits
    # and budgets count there, so rotating is no way out of them.
    key_lineage: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    metadata: dict | None = None
    # Limits from the database, most specific first: (("key", id, {...}), ("user", …), ("team", …)).
    limits: tuple[tuple[str, str, dict], ...] = ()
    priority: str | None = None  # the key's class in a model's queue; None = the configured default

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.kind in ("master", "anonymous"):
            return self.kind
        return f"{self.kind}:{self.id}"


ANONYMOUS = Principal("anonymous", "anonymous", role="anonymous")  # the admin API refuses it
MASTER = Principal("master", "master")


NEGATIVE_TTL = 2.0  # seconds an unknown key is remembered as unknown
NEGATIVE_MAX = 10_000  # bounded: a flood of random keys must not grow memory without limit
POSITIVE_MAX = 100_000

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _missing() -> GatewayError:
    return GatewayError(
        "authentication",
        "Missing API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' on /v1/messages).",
        code="missing_api_key",
    )


def _invalid() -> GatewayError:
    return GatewayError("authentication", "Invalid API key.", code="invalid_api_key")


def narrow_models(key_models: Sequence[str] | None, team_models: Sequence[str] | None) -> tuple[str, ...] | None:
    """The key's allow-list narrowed by its team's; None at a level means "no restriction there"."""
    if key_models is None:
        return None if team_models is None else tuple(team_models)
    if team_models is None:
        return tuple(key_models)
    allowed = set(team_models)
    return tuple(m for m in key_models if m in allowed)


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(slots=True)
class KeyRecord:
    """What the cache keeps per key: the principal plus what must be checked on every call."""

    principal: Principal
    expires_at: float | None  # epoch seconds
    revoked: bool
    fresh_until: float = 0.0  # monotonic; after it the database is asked again

    def admit(self) -> Principal:
        if self.revoked:
            raise GatewayError("authentication", "This API key has been revoked.", code="key_revoked")
        if self.expires_at is not None and time.time() >= self.expires_at:
            raise GatewayError("authentication", "This API key has expired.", code="key_expired")
        return self.principal


def key_record(key: ApiKey, user: User | None, team: Team | None) -> KeyRecord:
    principal = Principal(
        kind="key", id=key.id, role=user.role if user is not None else "member",
        key_id=key.id, key_lineage=key.limits_id, user_id=key.user_id, team_id=team.id if team is not None else key.team_id,
        models=narrow_models(key.models, team.models if team is not None else None),
        tags=tuple(key.tags or ()), metadata=dict(key.metadata_ or {}),
        limits=tuple((scope, subject_id, limits) for scope, subject_id, limits in (
            ("key", key.limits_id, key.limits), ("user", user.id if user else None, user.limits if user else None),
            ("team", team.id if team else None, team.limits if team else None)) if subject_id and limits),
        priority=key.priority,
    )
    return KeyRecord(principal, _epoch(key.expires_at), key.revoked_at is not None)


class KeyCache:
    """Hash → KeyRecord with a TTL, plus a short, bounded memory of unknown hashes."""

    def __init__(self, ttl: float, negative_ttl: float = NEGATIVE_TTL, negative_max: int = NEGATIVE_MAX,
                 max_entries: int = POSITIVE_MAX) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.negative_max = negative_max
        self.max_entries = max_entries
        self.records: dict[str, KeyRecord] = {}
        self.unknown: dict[str, float] = {}  # hash → monotonic deadline, oldest first
        self.generation = 0  # bumped on every invalidation; a load that raced one is not cached

    def fresh(self, digest: str, now: float) -> KeyRecord | None:
        record = self.records.get(digest)
        return record if record is not None and record.fresh_until > now else None

    def known_unknown(self, digest: str, now: float) -> bool:
        deadline = self.unknown.get(digest)
        return deadline is not None and deadline > now

    def put(self, digest: str, record: KeyRecord, now: float) -> None:
        record.fresh_until = now + self.ttl
        self.records.pop(digest, None)  # re-insert at the end: the dict stays oldest-first
        if len(self.records) >= self.max_entries:
            del self.records[next(iter(self.records))]
        self.records[digest] = record
        self.unknown.pop(digest, None)

    def put_unknown(self, digest: str, now: float) -> None:
        unknown = self.unknown
        while unknown and (len(unknown) >= self.negative_max or next(iter(unknown.values())) <= now):
            del unknown[next(iter(unknown))]
        unknown.pop(digest, None)
        unknown[digest] = now + self.negative_ttl

    def invalidate(self, topic: str, value: str) -> None:
        """Apply a change event: ("key", hash | key id | "*"), ("team", id), ("user", id), ("*", "*")."""
        if topic == "*" or (topic == "key" and value == "*"):
            self.records.clear()
            self.unknown.clear()
        elif topic == "key":
            self.unknown.pop(value, None)
            if self.records.pop(value, None) is None:  # not a hash we hold: perhaps a key id
                self._drop(lambda p: p.key_id == value)
        elif topic == "team":
            self._drop(lambda p: p.team_id == value)
        elif topic == "user":
            self._drop(lambda p: p.user_id == value)
        else:
            return
        self.generation += 1

    def _drop(self, match) -> None:
        for digest in [d for d, r in self.records.items() if match(r.principal)]:
            del self.records[digest]


class Authenticator:
    """Master key, virtual keys and JWTs; with none of them configured the gateway is open.

    An open gateway is only allowed on loopback (enforced when the server starts), which is
    what a developer running ``sluice serve`` on a laptop expects. Subscribes to ``events``
    at construction; the owner starts and closes ``events`` and calls ``close()`` here.
    """

    def __init__(self, master_key: str | None, db: Database | None = None, events: Events | None = None,
                 cache_ttl: float = 30.0, jwt: JWTVerifier | None = None) -> None:
        if cache_ttl <= 0:
            raise ValueError("cache_ttl must be positive")
        self._master = master_key.encode() if master_key else None
        self._db = db
        self._jwt = jwt
        self.cache = KeyCache(cache_ttl)
        self._loading: dict[str, asyncio.Future] = {}
        self._db_down_logged = False
        (events or LocalEvents()).subscribe(self.cache.invalidate)

    @property
    def open(self) -> bool:
        return self._master is None and self._db is None and self._jwt is None

    async def authenticate(self, credential: str | None) -> Principal:
        if self.open:
            return ANONYMOUS
        if not credential:
            raise _missing()
        if self._master is not None and hmac.compare_digest(credential.encode(), self._master):
            return MASTER
        if self._db is not None and looks_like_virtual_key(credential):
            return await self._key(hash_key(credential))
        if self._jwt is not None and _JWT_SHAPE.match(credential):
            return await self._jwt.verify(credential)
        raise _invalid()

    async def close(self) -> None:
        if self._jwt is not None:
            await self._jwt.close()

    # ---- virtual keys ----------------------------------------------------------------------

    async def _key(self, digest: str) -> Principal:
        now = time.monotonic()
        record = self.cache.fresh(digest, now)
        if record is not None:
            return record.admit()
        if self.cache.known_unknown(digest, now):
            raise _invalid()
        record = await self._load_shared(digest)
        if record is None:
            raise _invalid()
        return record.admit()

    async def _load_shared(self, digest: str) -> KeyRecord | None:
        """One database query per hash however many requests are waiting for it."""
        task = self._loading.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._load(digest))
            self._loading[digest] = task
            task.add_done_callback(lambda t: self._loaded(digest, t))
        return await asyncio.shield(task)

    def _loaded(self, digest: str, task: asyncio.Future) -> None:
        self._loading.pop(digest, None)  # only one load per hash exists at a time
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    async def _load(self, digest: str) -> KeyRecord | None:
        generation = self.cache.generation
        try:
            record = await self._query(digest)
        except Exception as exc:  # noqa: BLE001 — driver errors vary; all mean "database unreachable"
            return self._database_down(digest, exc)
        self._db_down_logged = False
        if self.cache.generation == generation:  # no invalidation arrived while we were asking
            now = time.monotonic()
            if record is None:
                self.cache.put_unknown(digest, now)
            else:
                self.cache.put(digest, record, now)
        return record

    def _database_down(self, digest: str, exc: Exception) -> KeyRecord:
        """Serve a key we knew (its TTL ran out, it was not invalidated) rather than fail every call."""
        if not self._db_down_logged:
            self._db_down_logged = True
            log.warning("key lookup failed (%s); serving cached keys only until the database returns",
                        type(exc).__name__)
        stale = self.cache.records.get(digest)
        if stale is not None:
            # Ask again in a few seconds, not on every call: each attempt waits for a connect timeout.
            stale.fresh_until = time.monotonic() + min(self.cache.ttl, 5.0)
            return stale
        raise GatewayError("server_error", "Authentication is temporarily unavailable.", status=503,
                           code="auth_unavailable")

    async def _query(self, digest: str) -> KeyRecord | None:
        assert self._db is not None
        stmt = (
            select(ApiKey, User, Team)
            .outerjoin(User, User.id == ApiKey.user_id)
            # A key without its own team belongs to its owner's team (for models, usage, budgets).
            .outerjoin(Team, Team.id == func.coalesce(ApiKey.team_id, User.team_id))
            .where(ApiKey.key_hash == digest)
        )
        async with self._db.session() as session:
            row = (await session.execute(stmt)).first()
        return None if row is None else key_record(*row)
