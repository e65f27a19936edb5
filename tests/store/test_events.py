"""Change events: in process, and over real Redis pub/sub, including Redis going away and coming back.

"Redis goes away" is a real TCP proxy in front of the machine's Redis that the test stops and
restarts, so only this test's connections are cut.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from urllib.parse import urlparse

import pytest

from sluice.store.events import (
    RESYNC,
    LocalEvents,
    RedisEvents,
    decode_message,
    encode_message,
)
from sluice.store.redis import redis_client


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, topic: str, value: str) -> None:
        self.seen.append((topic, value))
        self.changed.set()

    async def wait_for(self, message: tuple[str, str], timeout: float = 1.0) -> float:
        """Seconds until ``message`` arrived; fails after ``timeout``."""
        started = time.monotonic()
        while message not in self.seen:
            self.changed.clear()
            remaining = timeout - (time.monotonic() - started)
            assert remaining > 0, f"{message} not received within {timeout} s; got {self.seen}"
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass
        return time.monotonic() - started


class TcpProxy:
    """Forwards 127.0.0.1:<port> to Redis; ``stop()`` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


def test_message_format():
    assert encode_message("key", "abc\tdef") == b"key\tabc\tdef"
    assert decode_message(b"key\tabc\tdef") == ("key", "abc\tdef")
    assert decode_message(b"team\tteam_1") == ("team", "team_1")
    assert decode_message(b"no-separator") is None
    assert decode_message(b"\tvalue") is None
    with pytest.raises(ValueError):
        encode_message("bad\ttopic", "x")


async def test_local_events():
    events = LocalEvents()
    rec = Recorder()
    events.subscribe(rec)
    await events.publish("key", "h1")
    assert rec.seen == [("key", "h1")]
    await events.close()
    await events.publish("key", "h2")
    assert rec.seen == [("key", "h1")]


@pytest.fixture
def prefix(redis_prefix) -> str:
    return f"{redis_prefix}:ev-{secrets.token_hex(3)}"


async def test_publish_reaches_other_instance_and_self(redis_url, prefix):
    a, b = RedisEvents(redis_url, prefix), RedisEvents(redis_url, prefix)
    other_prefix = RedisEvents(redis_url, prefix + "-other")
    rec_a, rec_b, rec_other = Recorder(), Recorder(), Recorder()
    a.subscribe(rec_a)
    b.subscribe(rec_b)
    other_prefix.subscribe(rec_other)
    for e in (a, b, other_prefix):
        await e.start()
    try:
        assert a.channel == f"{prefix}:events" and a.subscribed and b.subscribed
        await a.publish("key", "hash-1")
        assert rec_a.seen[0] == ("key", "hash-1")  # delivered locally before the Redis round trip
        elapsed = await rec_b.wait_for(("key", "hash-1"))
        assert elapsed < 1.0
        await rec_a.wait_for(("key", "hash-1"))
        assert rec_a.seen.count(("key", "hash-1")) == 2  # then echoed by Redis
        await b.publish("team", "team_9")
        await rec_a.wait_for(("team", "team_9"))
        await asyncio.sleep(0.1)
        assert rec_other.seen == []  # another prefix is another deployment
    finally:
        for e in (a, b, other_prefix):
            await e.close()


async def test_broken_listener_does_not_stop_delivery(redis_url, prefix):
    a, b = RedisEvents(redis_url, prefix), RedisEvents(redis_url, prefix)
    rec = Recorder()

    def broken(topic: str, value: str) -> None:
        raise RuntimeError("boom")

    b.subscribe(broken)
    b.subscribe(rec)
    await a.start()
    await b.start()
    try:
        await a.publish("key", "1")
        await a.publish("key", "2")
        await rec.wait_for(("key", "2"))
        assert rec.seen == [("key", "1"), ("key", "2")]
    finally:
        await a.close()
        await b.close()


async def test_reconnects_after_outage_logs_once_and_resyncs(redis_url, prefix, caplog):
    target = urlparse(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    via_proxy = f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}"
    direct = RedisEvents(redis_url, prefix)
    cut = RedisEvents(via_proxy, prefix, backoff_max=0.1)
    rec = Recorder()
    cut.subscribe(rec)
    await direct.start()
    await cut.start()
    try:
        await direct.publish("key", "before")
        await rec.wait_for(("key", "before"))

        caplog.set_level(logging.WARNING, logger="sluice.events")
        await proxy.stop()
        await asyncio.sleep(0.8)  # several reconnect attempts at backoff_max = 0.1 s
        assert not cut.subscribed
        lost = [r for r in caplog.records if "subscription lost" in r.getMessage()]
        assert len(lost) == 1 and cut.outages == 1

        await proxy.start()  # same port: Redis is back
        await rec.wait_for(RESYNC, timeout=2.0)  # "you may have missed messages"
        assert cut.subscribed
        await direct.publish("key", "after")
        await rec.wait_for(("key", "after"))
        assert rec.seen.index(RESYNC) < rec.seen.index(("key", "after"))
    finally:
        await cut.close()
        await direct.close()
        await proxy.stop()


async def test_unreachable_redis_does_not_break_publish_or_start():
    events = RedisEvents("redis://127.0.0.1:1/0", "nowhere", start_timeout=0.3)
    rec = Recorder()
    events.subscribe(rec)
    started = time.monotonic()
    await events.start()
    assert time.monotonic() - started < 2.0 and not events.subscribed
    await events.publish("key", "h")  # the change still reaches this instance's caches
    assert rec.seen == [("key", "h")]
    await events.close()


async def test_redis_client_is_bytes(redis_url, prefix):
    client = redis_client(redis_url)
    try:
        await client.set(f"{prefix}:probe", b"\x00\xff")
        assert await client.get(f"{prefix}:probe") == b"\x00\xff"
    finally:
        await client.delete(f"{prefix}:probe")
        await client.aclose()
