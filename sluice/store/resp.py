"""A lean, pipelined Redis client for the commands the hot path sends (EVALSHA, mostly).

Why not redis-py here: every call through ``redis.asyncio`` checks a connection out of a pool,
builds command objects and returns the connection — about 100 µs of CPU per limiter round
trip, which is as much as the rest of a proxied call. This client keeps **one** connection;
replies arrive in order and are matched to their callers first-in first-out, so concurrent
calls share the socket. Commands given in the same turn of the event loop leave in **one**
``write`` at the end of it (under load, a dozen calls' reservations and settlements share a
system call, and Redis answers them in one read). Replies are parsed by ``hiredis``.

A command may carry a deadline (``timeout``): one timer per connection, not one per command,
fails the callers whose deadline passed with ``TimeoutError``; their replies, when they come,
are read and dropped, so the order never slips. It speaks RESP2 to a single Redis (or Valkey)
node: ``redis://`` / ``rediss://`` URLs with user, password and database. A lost connection
fails the calls in flight with ``ConnectionError``; the next call reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


class RedisReplyError(Exception):
    """An error reply from Redis (``-ERR …``)."""


def bulk(data: bytes) -> bytes:
    """One RESP bulk string: a part of a command encoded ahead (see ``PipelinedRedis.send``)."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_parts(*parts: bytes | str | int | float) -> bytes:
    """Each part as a RESP bulk string, back to back (a command without its array header)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            data = part.encode()
        elif isinstance(part, bytes):
            data = part
        else:
            data = str(part).encode()
        out.append(bulk(data))
    return b"".join(out)


def encode_command(*parts: bytes | str | int | float) -> bytes:
    return b"*%d\r\n" % len(parts) + encode_parts(*parts)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.loop = asyncio.get_running_loop()
        # (caller's future, its deadline or None), in the order the commands were written
        self.waiters: deque[tuple[asyncio.Future, float | None]] = deque()
        self.outgoing: list[bytes] = []  # commands of this turn of the loop, written at its end
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def idle(self) -> bool:
        """No command written is awaiting its reply (the waiters are all of commands not yet written)."""
        return len(self.waiters) == len(self.outgoing)

    def send(self, command: bytes, timeout: float | None, flush: bool = False) -> asyncio.Future:
        if self.closed:
            raise ConnectionError("Redis connection lost")
        waiter = self.loop.create_future()
        deadline = None
        if timeout is not None:
            deadline = self.loop.time() + timeout
            if self._watchdog is None or deadline < self._watchdog.when():
                if self._watchdog is not None:  # a shorter deadline than any before: wake for it
                    self._watchdog.cancel()
                self._watchdog = self.loop.call_at(deadline, self._expire)
        if flush and self.transport is not None and self.idle:
            # Wanted now, on a connection with nothing on its way: no batch to wait for. What
            # this turn queued before it goes first, in the same write.
            self.waiters.append((waiter, deadline))
            self.outgoing.append(command)
            self._flush()
            return waiter
        self.waiters.append((waiter, deadline))
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(command)
        return waiter

    def _flush(self) -> None:
        data, self.outgoing = self.outgoing, []
        if data and not self.closed and self.transport is not None:
            self.transport.write(b"".join(data) if len(data) > 1 else data[0])

    def _expire(self) -> None:
        """Fail the callers whose deadline passed; wake again for the next deadline."""
        self._watchdog = None
        now = self.loop.time()
        upcoming = None
        for waiter, deadline in self.waiters:
            if deadline is None or waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError("Redis did not answer in time"))
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        if upcoming is not None and not self.closed:
            self._watchdog = self.loop.call_at(upcoming, self._expire)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiters.popleft()[0]
            if waiter.done():  # its caller gave up: the reply is read and dropped
                continue
            if isinstance(reply, RedisReplyError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.outgoing = []
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        error = ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}")
        while self.waiters:
            waiter = self.waiters.popleft()[0]
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

    async def _connection(self, timeout: float | None = None) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        if timeout is None:
            return await asyncio.shield(self._connecting)
        async with asyncio.timeout(timeout):  # the caller's deadline bounds its wait, not the connect
            return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, proto = await loop.create_connection(_Protocol, self._host, self._port, ssl=self._ssl)
            self._proto = proto
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                await proto.send(encode_command("AUTH", *auth), None)
            if self._db:
                await proto.send(encode_command("SELECT", self._db), None)
        return proto

    def send(self, command: bytes, timeout: float | None = None) -> Awaitable[Any]:
        """Send one RESP-encoded command (``encode_command``, or parts built with ``bulk``) and
        give its reply to await; ``timeout``: seconds before the reply is given up on."""
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto.send(command, timeout)  # the common case: no coroutine, just the reply's future
        return self._send_when_connected(command, timeout)

    @property
    def idle(self) -> bool:
        """Connected, and no command written is awaiting its reply (a ``flush`` would write at once)."""
        proto = self._proto
        return proto is not None and not proto.closed and proto.idle

    def send_now(self, command: bytes, timeout: float | None = None, flush: bool = False) -> asyncio.Future | None:
        """``send`` when connected (the reply's future), else None: nothing was sent. ``flush``: the
        caller has other work before it awaits the reply; when no other command is on its way,
        this one is written at once rather than with the others of this turn of the loop."""
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto.send(command, timeout, flush)
        return None

    async def _send_when_connected(self, command: bytes, timeout: float | None) -> Any:
        proto = await self._connection(timeout)
        return await proto.send(command, timeout)

    async def execute(self, *parts: Any, timeout: float | None = None) -> Any:
        return await self.send(encode_command(*parts), timeout)

    def register_script(self, script: str) -> "Script":
        return Script(self, script)

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


class Script:
    """``await script(keys=[…], args=[…])``: EVALSHA, loading the script once when Redis lacks it.

    ``script.call(count, encoded, timeout)`` takes the keys and arguments already encoded (the
    key count, then each part as a ``bulk``; ``count`` parts in all): a caller that sends the same
    keys and most of the same arguments on every call encodes them once."""

    def __init__(self, client: PipelinedRedis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._evalsha = bulk(b"EVALSHA") + bulk(self._sha.encode())
        self._eval = bulk(b"EVAL") + bulk(source.encode())

    async def __call__(self, keys: list[str], args: list[Any], timeout: float | None = None) -> Any:
        return await self.call(len(keys) + len(args) + 1, encode_parts(len(keys), *keys, *args), timeout)

    def command_head(self, count: int) -> bytes:
        """The start of an EVALSHA command whose ``count`` parts (as for ``call``) follow."""
        return b"*%d\r\n%s" % (count + 2, self._evalsha)

    def command(self, count: int, encoded: bytes) -> bytes:
        """The whole EVALSHA command for parts encoded as for ``call``."""
        return self.command_head(count) + encoded

    def send_now(self, count: int, encoded: bytes, timeout: float | None = None,
                 flush: bool = False) -> asyncio.Future | None:
        """EVALSHA sent in this turn of the loop (no task) when the client is connected: the reply's
        future, else None. A Redis that lacks the script answers NOSCRIPT: then ``call``."""
        return self._client.send_now(self.command(count, encoded), timeout, flush)

    async def call(self, count: int, encoded: bytes, timeout: float | None = None) -> Any:
        head = b"*%d\r\n" % (count + 2)
        try:
            return await self._client.send(b"".join((head, self._evalsha, encoded)), timeout)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._client.send(b"".join((head, self._eval, encoded)), timeout)


__all__ = ["PipelinedRedis", "RedisReplyError", "Script", "bulk", "encode_command", "encode_parts"]
