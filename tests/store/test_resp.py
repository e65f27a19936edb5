"""PipelinedRedis against the machine's real Redis: replies matched in order under concurrency,
errors, scripts loaded on demand, a caller that gives up, and reconnecting after a lost link."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest

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
