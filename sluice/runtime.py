"""The stateful parts of a gateway process, built from the config and closed in reverse order.

    database (migrated) → events (Redis pub/sub, else in-process) → authenticator → ledger

``Runtime.open`` is what ``sluice serve`` and the end-to-end tests run at start-up;
``close`` flushes the ledger before the database goes, so SIGTERM loses no usage row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sluice.config import Config
from sluice.observability.ledger import Ledger
from sluice.observability.pricing import make_pricer
from sluice.policies.auth import Authenticator
from sluice.policies.jwt import JWTVerifier
from sluice.store.db import Database
from sluice.store.circuit_redis import RedisCircuitStore
from sluice.store.events import Events, LocalEvents, RedisEvents
from sluice.store.redis import redis_client
from sluice.store.migrate import upgrade

log = logging.getLogger("sluice.runtime")


@dataclass
class Runtime:
    db: Database
    events: Events
    auth: Authenticator
    ledger: Ledger | None
    circuit_store: object | None = None  # shared circuit state (Redis); None = in-process

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
        if config.ledger.enabled:
            ledger = Ledger(db, config.ledger, make_pricer(price_overrides(config)))
            await ledger.start()
        circuit_store = None
        if redis_url:
            circuit_store = RedisCircuitStore(redis_client(redis_url, name="sluice-circuit"), config.redis.prefix)
        log.info("state ready", extra={"database": db.url.split("@")[-1], "redis": bool(redis_url)})
        return cls(db, events, auth, ledger, circuit_store)

    async def close(self) -> None:
        if self.ledger is not None:
            await self.ledger.close()
        await self.auth.close()
        await self.events.close()
        if self.circuit_store is not None:
            await self.circuit_store.client.aclose()
        await self.db.close()


def price_overrides(config: Config) -> dict:
    """Deployment name → its price override. Wildcard deployments ("*") are priced from the table."""
    overrides = {}
    for m in config.models.values():
        for d in m.deployments:
            if d.pricing is not None and d.model != "*":
                overrides[d.name or f"{d.provider}/{d.model}"] = d.pricing
    return overrides
