"""The stateful parts of a gateway process, built from the config and closed in reverse order.

    database (migrated) → events (Redis pub/sub, else in-process) → authenticator → ledger
    → limits (Redis limiter, else in-process) with budgets

``Runtime.open`` is what ``sluice serve`` and the end-to-end tests run at start-up;
``close`` flushes the ledger before the database goes, so SIGTERM loses no usage row.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from sluice.config import Config
from sluice.observability.ledger import Ledger
from sluice.observability.pricing import make_pricer
from sluice.policies.auth import Authenticator
from sluice.policies.budgets import BudgetBook
from sluice.policies.cache import CacheSettings, ResponseCache
from sluice.policies.deployment_limits import deployment_capacity
from sluice.policies.limits import Limits
from sluice.policies.ratelimit import LocalLimiter, RedisLimiter
from sluice.policies.jwt import JWTVerifier
from sluice.store.db import Database
from sluice.store.circuit_redis import RedisCircuitStore
from sluice.store.events import Events, LocalEvents, RedisEvents
from sluice.store.redis import redis_client
from sluice.store.resp import PipelinedRedis
from sluice.store.response_cache import LocalResponseStore, RedisResponseStore
from sluice.store.migrate import upgrade

log = logging.getLogger("sluice.runtime")


@dataclass
class Runtime:
    db: Database
    events: Events
    auth: Authenticator
    ledger: Ledger | None
    circuit_store: object | None = None  # shared circuit state (Redis); None = in-process
    limits: Limits | None = None
    price: object | None = None  # the ledger's pricing function, for budgets
    cache: ResponseCache | None = None
    semantic_index: object | None = None  # the semantic cache's vectors (local or Redis-shared)

    @classmethod
    async def open(cls, config: Config) -> "Runtime":
        db = Database(config.database.url)
        await upgrade(db.url)
        redis_url = config.redis.url or os.environ.get("SLUICE_REDIS_URL")
        events: Events = RedisEvents(redis_url, config.redis.prefix) if redis_url else LocalEvents()
        await events.start()
        jwt = JWTVerifier(config.auth.jwt) if config.auth.jwt else None
        # Virtual keys are issued through the admin API, which needs a master key; without one
        # (and without JWT) the gateway stays open, which start-up allows only on loopback.
        keyed = bool(config.server.master_key or jwt)
        auth = Authenticator(config.server.master_key, db if keyed else None, events, config.auth.cache_ttl, jwt)
        ledger = None
        price = make_pricer(price_overrides(config))
        if config.ledger.enabled:
            ledger = Ledger(db, config.ledger, price)
            await ledger.start()
        circuit_store = None
        if redis_url:
            circuit_store = RedisCircuitStore(redis_client(redis_url, name="sluice-circuit"), config.redis.prefix)
        limits = await build_limits(config, db, events, redis_url)
        cache = build_cache(config, redis_url)
        semantic_index = await build_semantic_index(config, redis_url) if cache is not None else None
        log.info("state ready", extra={"database": db.url.split("@")[-1], "redis": bool(redis_url)})
        return cls(db, events, auth, ledger, circuit_store, limits, price, cache, semantic_index)

    async def close(self) -> None:
        """Close everything, in reverse order; one part failing must not leave the rest open."""
        steps = []
        if self.limits is not None:
            steps.append(("limits", self.limits.close))
            client = getattr(self.limits.limiter, "client", None)
            if client is not None:
                steps.append(("limiter client", client.aclose))
        if self.ledger is not None:
            steps.append(("ledger", self.ledger.close))
        steps += [("auth", self.auth.close), ("events", self.events.close)]
        if self.semantic_index is not None:
            close = self.semantic_index.close
            steps.append(("semantic index", close if asyncio.iscoroutinefunction(close) else _async(close)))
        cache_client = getattr(self.cache.store, "client", None) if self.cache is not None else None
        if cache_client is not None:
            steps.append(("cache client", cache_client.aclose))
        if self.circuit_store is not None:
            steps.append(("circuit store", self.circuit_store.client.aclose))
        steps.append(("database", self.db.close))
        for name, close in steps:
            try:
                await close()
            except Exception:  # noqa: BLE001 - report and go on closing the others
                log.exception("could not close the %s", name)


async def build_limits(config: Config, db: Database, events: Events, redis_url: str | None) -> Limits | None:
    """The limits stage: shared through Redis when configured (or forced), else in this process."""
    settings = config.limits
    if not settings.enabled:
        return None
    shared = settings.backend == "redis" or (settings.backend == "auto" and bool(redis_url))
    if shared and not redis_url:
        raise ValueError("limits.backend is 'redis' but no redis.url (or SLUICE_REDIS_URL) is set")
    if shared:
        # One pipelined connection: a limiter round trip costs microseconds of CPU, not a pool checkout.
        limiter = RedisLimiter(PipelinedRedis(redis_url), config.redis.prefix, timeout=settings.redis_timeout)
    else:
        limiter = LocalLimiter()
    budgets = BudgetBook(db, refresh=settings.budget_refresh)
    await budgets.start(events)
    capacity = {alias: cap for alias, m in config.models.items() if (cap := deployment_capacity(m.deployments))}
    return Limits(limiter, settings, budgets, capacity, shared=shared)


def build_cache(config: Config, redis_url: str | None) -> ResponseCache | None:
    """The response cache, when enabled: in Redis (shared) when configured, else in this process."""
    c = config.cache
    if not c.enabled:
        return None
    shared = c.backend == "redis" or (c.backend == "auto" and bool(redis_url))
    if shared and not redis_url:
        raise ValueError("cache.backend is 'redis' but no redis.url (or SLUICE_REDIS_URL) is set")
    store = RedisResponseStore(PipelinedRedis(redis_url), config.redis.prefix) if shared else \
        LocalResponseStore(c.max_entries, c.max_bytes)
    settings = CacheSettings(
        namespace=c.namespace, ttl=c.ttl, max_temperature=c.max_temperature, tools=c.tools,
        model_ttl={alias: m.ttl for alias, m in c.models.items() if m.ttl is not None},
        disabled_models=frozenset(alias for alias, m in c.models.items() if not m.enabled))
    return ResponseCache(store, settings, shared=shared)


async def build_semantic_index(config: Config, redis_url: str | None) -> object | None:
    """The semantic cache's vectors: shared through Redis when the exact cache is, else in-process."""
    sem = config.cache.semantic
    if not sem.enabled:
        return None
    from sluice.policies.semantic_cache import RedisSemanticIndex, SemanticIndex

    shared = config.cache.backend == "redis" or (config.cache.backend == "auto" and bool(redis_url))
    if not shared:
        return SemanticIndex(threshold=sem.threshold, max_entries=sem.max_entries)
    index = RedisSemanticIndex(redis_url, config.redis.prefix, threshold=sem.threshold, max_entries=sem.max_entries)
    await index.start()
    return index


def _async(fn):
    async def call() -> None:
        fn()

    return call


def price_overrides(config: Config) -> dict:
    """Deployment name → its price override. Wildcard deployments ("*") are priced from the table."""
    overrides = {}
    for m in config.models.values():
        for d in m.deployments:
            if d.pricing is not None and d.model != "*":
                overrides[d.name or f"{d.provider}/{d.model}"] = d.pricing
    return overrides
