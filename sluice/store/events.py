"""Change announcements between gateway instances (e.g. "key X was revoked").

``LocalEvents`` serves one process. With Redis configured, ``RedisEvents`` (Redis pub/sub on
``<prefix>:events``) carries the same messages to every instance. Subscribers are plain
callbacks run in the event loop; a message is ``(topic, value)``, e.g. ``("key", <key hash>)``.
"""

from __future__ import annotations

from typing import Callable, Protocol

Listener = Callable[[str, str], None]


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
