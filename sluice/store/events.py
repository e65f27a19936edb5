"""Change announcements between gateway instances (e.g. "key X was revoked").

``LocalEvents`` serves one process. With Redis configured, ``RedisEvents`` (Redis pub/sub on
``<prefix>:events``) carries the same messages to every instance. Subscribers are plain
callbacks run in the event loop; a message is ``(topic, value)``, e.g. ``("key", <key hash>)``.

Listeners must be idempotent and cheap: with Redis, a publisher's own listeners run twice
(at once, then again when Redis echoes the message), and they run on the event loop.

Pub/sub is fire-and-forget, so messages published while an instance was cut off from Redis
are lost to it. After such an outage ``RedisEvents`` delivers ``("*", "*")`` — "you may have
missed something, drop whatever you cached" — before any new message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Protocol

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sluice.store.redis import redis_client

Listener = Callable[[str, str], None]

log = logging.getLogger("sluice.events")

RESYNC = ("*", "*")  # delivered after a gap in the subscription


class Events(Protocol):
    async def publish(self, topic: str, value: str) -> None: ...

    def subscribe(self, listener: Listener) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalEvents:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    async def publish(self, topic: str, value: str) -> None:
        for listener in list(self._listeners):
            listener(topic, value)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()


def encode_message(topic: str, value: str) -> bytes:
    if "\t" in topic:
        raise ValueError("an event topic cannot contain a tab")
    return f"{topic}\t{value}".encode()


def decode_message(data: bytes | str) -> tuple[str, str] | None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    topic, sep, value = text.partition("\t")
    return (topic, value) if sep and topic else None


class RedisEvents:
    """Pub/sub over Redis: ``publish`` reaches every instance subscribed to ``<prefix>:events``.

    ``start()`` launches the subscriber task and waits (briefly) until it is subscribed, so a
    message published right after start-up is not missed. If Redis goes away the task
    reconnects with exponential backoff, logging once per outage.
    """

    def __init__(self, url: str, prefix: str, *, backoff_max: float = 5.0, start_timeout: float = 5.0) -> None:
        self.channel = f"{prefix}:events"
        name = "sluice-events-" + re.sub(r"[^A-Za-z0-9_.:-]", "_", prefix)
        self._pub = redis_client(url, name=name)
        # The subscriber must see every disconnect (to announce a resync), so redis-py's own
        # silent reconnect-and-resubscribe is turned off on its connection.
        self._sub = redis_client(url, name=name, retry=Retry(NoBackoff(), 0))
        self._listeners: list[Listener] = []
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._backoff_max = backoff_max
        self._start_timeout = start_timeout
        self.outages = 0  # how many times the subscription was lost (observability, tests)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, topic: str, value: str) -> None:
        """Deliver locally at once, then to the other instances.

        A Redis failure is logged, not raised: the change is already committed, and the
        other instances' caches expire on their own TTL.
        """
        message = encode_message(topic, value)
        self._deliver(topic, value)
        try:
            await self._pub.publish(self.channel, message)
        except Exception as exc:  # noqa: BLE001 — any Redis/socket failure means "not announced"
            log.warning("could not announce %s change over Redis (%s); other instances rely on their cache TTL",
                        topic, type(exc).__name__)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="sluice-redis-events")
        try:
            await asyncio.wait_for(self._subscribed.wait(), self._start_timeout)
        except TimeoutError:
            log.warning("Redis events: not subscribed after %.0f s; continuing and retrying in the background",
                        self._start_timeout)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._listeners.clear()
        await self._sub.aclose()
        await self._pub.aclose()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def _deliver(self, topic: str, value: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(topic, value)
            except Exception:  # one broken listener must not stop the others or the subscriber
                log.exception("event listener failed on %s", topic)

    async def _run(self) -> None:
        backoff = 0.05
        in_outage = False
        while True:
            pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                if in_outage:
                    log.info("Redis events: subscription restored; dropping cached state")
                    self._deliver(*RESYNC)
                in_outage, backoff = False, 0.05
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — connection refused, reset, timeout, …
                self._subscribed.clear()
                if not in_outage:
                    in_outage = True
                    self.outages += 1
                    log.warning("Redis events: subscription lost (%s: %s); reconnecting with backoff",
                                type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            finally:
                await _quietly_close(pubsub)

    async def _listen(self, pubsub) -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            decoded = decode_message(message["data"])
            if decoded is not None:
                self._deliver(*decoded)


async def _quietly_close(pubsub) -> None:
    try:
        await asyncio.shield(pubsub.aclose())
    except Exception as exc:  # noqa: BLE001 — the connection is already gone
        log.debug("closing a dead pub/sub connection: %s", exc)


__all__ = ["RESYNC", "Events", "Listener", "LocalEvents", "RedisEvents", "decode_message", "encode_message"]
