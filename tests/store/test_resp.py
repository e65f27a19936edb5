"""PipelinedRedis against the machine's real Redis: replies matched in order under concurrency,
errors, scripts loaded on demand, a caller that gives up, and reconnecting after a lost link."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import pytest
import redis

from sluice.store.resp import PipelinedRedis, RedisReplyError, encode_command


def test_encodes_resp_arrays():
    assert encode_command("SET", b"k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"


@pytest.fixture
async def client(redis_url):
    c = PipelinedRedis(redis_url)
    yield c
    await c.aclose()


async def test_concurrent_commands_get_their_own_replies(client, redis_prefix):
    keys = [f"{redis_prefix}:resp:{secrets.token_hex(4)}:{i}" for i in range(200)]
    await asyncio.gather(*(client.execute("SET", k, i, "EX", 60) for i, k in enumerate(keys)))
    values = await asyncio.gather(*(client.execute("GET", k) for k in keys))
    assert values == [str(i).encode() for i in range(200)]


async def test_error_replies_raise_and_the_connection_goes_on(client):
    with pytest.raises(RedisReplyError):
        await client.execute("NOSUCHCOMMAND")
    assert await client.execute("PING") == b"PONG"


async def test_scripts_are_loaded_when_redis_does_not_know_them(client, redis_prefix):
    source = f"return {{KEYS[1], ARGV[1], {secrets.randbelow(10**9)}}}"  # a script Redis has never seen
    script = client.register_script(source)
    reply = await script(keys=[f"{redis_prefix}:k"], args=["v"])
    assert reply[:2] == [f"{redis_prefix}:k".encode(), b"v"]
    assert await script(keys=["a"], args=["b"]) == [b"a", b"b", reply[2]]  # now by SHA


async def test_a_caller_that_gives_up_does_not_shift_the_replies(client):
    slow = asyncio.ensure_future(client.execute("EVAL", "local t = redis.call('TIME') "
                                                "while tonumber(redis.call('TIME')[1]) * 1e6 + "
                                                "tonumber(redis.call('TIME')[2]) < tonumber(t[1]) * 1e6 + "
                                                "tonumber(t[2]) + 50000 do end return 'slow'", 0))
    await asyncio.sleep(0.01)
    slow.cancel()
    assert await client.execute("ECHO", "after") == b"after"


async def test_reconnects_after_the_connection_is_lost(client):
    own = await client.execute("CLIENT", "ID")
    try:  # the server drops this very connection (replying first or not)
        await client.execute("CLIENT", "KILL", "ID", own, "SKIPME", "no")
    except ConnectionError:
        pass
    await asyncio.sleep(0.05)
    assert client._proto is None or client._proto.closed
    assert await client.execute("PING") == b"PONG"


async def test_an_unreachable_redis_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = PipelinedRedis(f"redis://127.0.0.1:{port}/0", connect_timeout=1)
    with pytest.raises(OSError):
        await c.execute("PING")


async def test_a_reply_past_its_deadline_fails_the_caller_and_the_next_reply_is_still_its_own(client):
    busy = ("local t = redis.call('TIME') while tonumber(redis.call('TIME')[1]) * 1e6 + "
            "tonumber(redis.call('TIME')[2]) < tonumber(t[1]) * 1e6 + tonumber(t[2]) + 100000 do end return 'slow'")
    with pytest.raises(TimeoutError):
        await client.execute("EVAL", busy, 0, timeout=0.02)
    assert await client.execute("ECHO", "after", timeout=1.0) == b"after"


class _Silent(asyncio.Protocol):
    """A server that reads everything and never answers; ``reads`` holds what each read got."""

    reads: list[bytes]

    def data_received(self, data: bytes) -> None:
        self.reads.append(data)


async def _silent_server():
    reads: list[bytes] = []

    def protocol() -> _Silent:
        p = _Silent()
        p.reads = reads
        return p

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], reads


async def test_deadlines_fail_in_time_and_an_untimed_call_waits():
    server, port, _ = await _silent_server()
    c = PipelinedRedis(f"redis://127.0.0.1:{port}/0")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        long = asyncio.ensure_future(c.execute("PING", timeout=0.2))  # first, so the shorter one must re-arm
        short = asyncio.ensure_future(c.execute("PING", timeout=0.05))
        untimed = asyncio.ensure_future(c.execute("PING"))
        with pytest.raises(TimeoutError):
            await short
        assert 0.04 <= loop.time() - started < 0.15
        with pytest.raises(TimeoutError):
            await long
        assert 0.19 <= loop.time() - started < 0.35
        await asyncio.sleep(0.05)
        assert not untimed.done()
        untimed.cancel()
    finally:
        server.close()
        await c.aclose()


class _CountingTransport:
    """The connection's transport, recording each write (the system call boundary)."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner, self.writes = inner, []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.inner.write(data)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def test_commands_given_in_one_turn_of_the_loop_leave_in_one_write(client):
    assert await client.execute("PING") == b"PONG"  # connected
    spy = client._proto.transport = _CountingTransport(client._proto.transport)
    replies = await asyncio.gather(*(client.execute("ECHO", str(i), timeout=1.0) for i in range(10)))
    assert replies == [str(i).encode() for i in range(10)]
    assert spy.writes == [b"".join(encode_command("ECHO", str(i)) for i in range(10))]



async def test_a_command_sent_with_flush_leaves_at_once_when_nothing_else_is_on_its_way(client, redis_url,
                                                                                      redis_prefix):
    # The admission sent ahead (flush) must reach Redis while this turn of the loop goes on with
    # other work, with what this turn queued before it; one sent plainly, or while a written
    # command still awaits its reply, leaves at the turn's end.
    assert await client.execute("PING") == b"PONG"  # connected
    watcher = redis.Redis.from_url(redis_url)  # a blocking client: it reads while this loop is busy
    key = f"{redis_prefix}:flush:{secrets.token_hex(4)}"
    try:
        for flush, before, written_at_once in ((True, None, True), (False, None, False), (True, "queued", True),
                                               (True, "in flight", False)):
            watcher.delete(key)
            earlier = None
            if before == "in flight":  # written, and its reply a second away
                earlier = client.send_now(encode_command("BLPOP", f"{key}:empty", "1"), 3.0)
                await asyncio.sleep(0.02)
            elif before == "queued":
                earlier = client.send_now(encode_command("PING"), 1.0)
            reply = client.send_now(encode_command("SET", key, 1, "EX", 60), 3.0, flush)
            time.sleep(0.05)  # this turn of the loop does other work meanwhile
            assert (watcher.get(key) == b"1") is written_at_once, (flush, before)
            assert await reply == b"OK"
            if earlier is not None:
                await earlier
    finally:
        watcher.delete(key)
        watcher.close()
