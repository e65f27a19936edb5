"""A lean, pipelined Redis client for the one command the hot path sends: EVALSHA.

Why not redis-py here: every call through ``redis.asyncio`` checks a connection out of a pool,
builds command objects and returns the connection — about 100 µs of CPU per limiter round
trip, which is as much as the rest of a proxied call. This client keeps **one** connection and
writes each command as it comes; replies arrive in order and are matched to their callers
first-in first-out, so concurrent calls share the socket (requests pipeline by themselves under
load) and a round trip costs a few microseconds of CPU. Replies are parsed by ``hiredis``.

It speaks RESP2 to a single Redis (or Valkey) node: ``redis://`` / ``rediss://`` URLs with
user, password and database. A caller that gives up (a timeout) leaves its reply to be read
and dropped, so the order never slips. A lost connection fails the calls in flight with
``ConnectionError``; the next call reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


class RedisReplyError(Exception):
    """An error reply from Redis (``-ERR …``)."""


def encode_command(*parts: bytes | str | int | float) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            data = part.encode()
        elif isinstance(part, bytes):
            data = part
        else:
            data = str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.waiters: deque[asyncio.Future] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiters.popleft()
            if waiter.done():  # its caller gave up: the reply is read and dropped
                continue
            if isinstance(reply, RedisReplyError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class PipelinedRedis:
    """One pipelined connection to one Redis node, reconnecting when it breaks."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r} (redis:// or rediss://)")
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._ssl = ssl.create_default_context() if parsed.scheme == "rediss" else None
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        path = parsed.path.lstrip("/")
        self._db = int(path) if path else 0
        self._connect_timeout = connect_timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, proto = await loop.create_connection(_Protocol, self._host, self._port, ssl=self._ssl)
            self._proto = proto
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                await self._send(proto, "AUTH", *auth)
            if self._db:
                await self._send(proto, "SELECT", self._db)
        return proto

    @staticmethod
    def _send(proto: _Protocol, *parts: Any) -> asyncio.Future:
        if proto.closed:
            raise ConnectionError("Redis connection lost")
        waiter = asyncio.get_running_loop().create_future()
        proto.waiters.append(waiter)
        assert proto.transport is not None
        proto.transport.write(encode_command(*parts))
        return waiter

    async def execute(self, *parts: Any) -> Any:
        proto = await self._connection()
        return await self._send(proto, *parts)

    def register_script(self, script: str) -> "Script":
        return Script(self, script)

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


class Script:
    """``await script(keys=[…], args=[…])``: EVALSHA, loading the script once when Redis lacks it."""

    def __init__(self, client: PipelinedRedis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._client.execute("EVALSHA", self._sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._client.execute("EVAL", self._source, len(keys), *keys, *args)


__all__ = ["PipelinedRedis", "RedisReplyError", "Script", "encode_command"]
