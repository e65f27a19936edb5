"""Where cached responses live: in this process (LRU, bounded) or in Redis (shared by instances).

Entries are opaque bytes under string keys ``<alias> SEP <namespace> SEP <digest>``; the
alias and namespace are in clear so a purge can select them ("every entry of gpt-4o", "every
entry of team X") without an index. Both stores expire entries by TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol

SEP = "\x1f"  # between alias, namespace and digest: a character no alias or id contains


class ResponseStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def purge(self, alias: str | None, namespace: str | None) -> int: ...

    async def size(self) -> int: ...


class LocalResponseStore:
    """An in-process LRU bounded by entry count and total bytes."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self.max_entries, self.max_bytes = max_entries, max_bytes

    async def get(self, key: str) -> bytes | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + ttl, value)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))  # least recently used first

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)

    async def purge(self, alias: str | None, namespace: str | None) -> int:
        doomed = [k for k in self._entries if _matches(k, alias, namespace)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def size(self) -> int:
        return len(self._entries)


class RedisResponseStore:
    """Entries as Redis strings under ``<prefix>:cache:<key>`` with a TTL (``PX``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client  # sluice.store.resp.PipelinedRedis
        self._prefix = f"{prefix}:cache:"

    @property
    def client(self) -> Any:
        return self._client

    async def get(self, key: str) -> bytes | None:
        return await self._client.execute("GET", self._prefix + key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._client.execute("SET", self._prefix + key, value, "PX", max(int(ttl * 1000), 1))

    async def purge(self, alias: str | None, namespace: str | None) -> int:
        removed, cursor = 0, b"0"
        match = self._prefix + (_redis_glob(alias) if alias else "*") + SEP + \
            (_redis_glob(namespace) if namespace else "*") + SEP + "*"
        while True:
            cursor, keys = await self._client.execute("SCAN", cursor, "MATCH", match, "COUNT", 1000)
            if keys:
                removed += await self._client.execute("DEL", *keys)
            if cursor in (b"0", 0, "0"):
                return removed

    async def size(self) -> int:
        count, cursor = 0, b"0"
        while True:
            cursor, keys = await self._client.execute("SCAN", cursor, "MATCH", self._prefix + "*", "COUNT", 1000)
            count += len(keys)
            if cursor in (b"0", 0, "0"):
                return count


def entry_key(alias: str, namespace: str, digest: str) -> str:
    return f"{alias}{SEP}{namespace}{SEP}{digest}"


def _matches(key: str, alias: str | None, namespace: str | None) -> bool:
    entry_alias, entry_ns, _ = key.split(SEP, 2)
    return (alias is None or entry_alias == alias) and (namespace is None or entry_ns == namespace)


def _redis_glob(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


__all__ = ["SEP", "LocalResponseStore", "RedisResponseStore", "ResponseStore", "entry_key"]
