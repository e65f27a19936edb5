"""The upstream HTTP pool: the direct send path behaves as ``session.request`` does.

Each case runs on both paths (``direct_send`` on and off) against the emulator or a small
aiohttp server of the test's own: answers, headers sent, total/connect/idle timeouts, refused
connections, redirects, and connection reuse.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from yarl import URL

from sluice.mock import start_mock
from sluice.providers import direct
from sluice.providers.base import WireRequest
from sluice.providers.http import HttpPool, Timeouts, read_sse
from sluice.schema import GatewayError

PATHS = [pytest.param(True, id="direct"), pytest.param(False, id="session")]


def test_this_aiohttp_is_served_by_the_direct_path():
    # The suite runs the gateway on the direct path; an aiohttp upgrade outside the checked
    # releases must be checked (and SUPPORTED widened) rather than silently lose it.
    assert direct.SUPPORTED, aiohttp.__version__


@pytest_asyncio.fixture
async def mock():
    server = await start_mock()
    yield server.url
    await server.runner.cleanup()


@pytest_asyncio.fixture
async def pool_of():
    pools: list[HttpPool] = []

    def make(direct_send: bool) -> HttpPool:
        pools.append(HttpPool(direct_send=direct_send))
        return pools[-1]

    yield make
    for p in pools:
        await p.close()


def chat(base: str, model: str = "gpt-4o-mini", stream: bool = False) -> WireRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    if stream:
        body["stream"] = True
    return WireRequest(url=f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-test"}, body=body)


async def mock_requests(base: str) -> list[dict]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/_mock/requests") as r:
        return (await r.json())["requests"]


@pytest.mark.parametrize("direct_send", PATHS)
async def test_answer_and_request_headers(mock, pool_of, direct_send):
    resp = await pool_of(direct_send).send("oai", chat(mock), Timeouts())
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert orjson.loads(resp.body)["choices"][0]["message"]["content"] == "Echo: hello there"
    [seen] = await mock_requests(mock)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["user-agent"] == "sluice"
    assert headers["content-type"] == "application/json"
    assert "authorization" in headers and "cookie" not in headers
    assert seen["body"]["messages"][0]["content"] == "hello there"


@pytest.mark.parametrize("direct_send", PATHS)
async def test_error_answer_keeps_status_and_body(mock, pool_of, direct_send):
    resp = await pool_of(direct_send).send("oai", chat(mock, "gpt-4o-mini+fail=429+retry_after=3"), Timeouts())
    assert resp.status == 429
    assert resp.headers["retry-after"] == "3"
    assert "error" in orjson.loads(resp.body)


@pytest.mark.parametrize("direct_send", PATHS)
async def test_total_timeout_is_504_and_the_pool_recovers(mock, pool_of, direct_send):
    pool = pool_of(direct_send)
    with pytest.raises(GatewayError) as exc:
        await pool.send("oai", chat(mock, "gpt-4o-mini+latency=1500"), Timeouts(total=0.2))
    assert exc.value.status == 504
    assert (await pool.send("oai", chat(mock), Timeouts())).status == 200


@pytest.mark.parametrize("direct_send", PATHS)
async def test_refused_connection_is_502_without_the_url(pool_of, direct_send):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    wire = chat(f"http://127.0.0.1:{port}")
    wire.url += "?key=secret"
    with pytest.raises(GatewayError) as exc:
        await pool_of(direct_send).send("gem", wire, Timeouts(connect=1))
    assert exc.value.status == 502
    assert "secret" not in str(exc.value)


@pytest.mark.parametrize("direct_send", PATHS)
async def test_stream_reads_to_the_end(mock, pool_of, direct_send):
    pool = pool_of(direct_send)
    resp, error = await pool.open_stream("oai", chat(mock, stream=True), Timeouts())
    assert error is None
    try:
        events = [e for batch in [b async for b in read_sse(resp, "oai")] for e in batch]
    finally:
        resp.release()
    assert events[-1].data == "[DONE]"
    text = "".join(orjson.loads(e.data)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if orjson.loads(e.data)["choices"])
    assert text == "Echo: hello there"


@pytest.mark.parametrize("direct_send", PATHS)
async def test_stream_error_answer_is_read_whole(mock, pool_of, direct_send):
    resp, error = await pool_of(direct_send).open_stream(
        "oai", chat(mock, "gpt-4o-mini+fail=503", stream=True), Timeouts())
    assert error is not None and error.status == 503 and b"error" in error.body


async def read_to_the_end(pool: HttpPool, wire: WireRequest, timeouts: Timeouts) -> None:
    resp, _ = await pool.open_stream("oai", wire, timeouts)
    try:
        async for _batch in read_sse(resp, "oai"):
            pass
    finally:
        resp.release()


@pytest.mark.parametrize("direct_send", PATHS)
async def test_stalled_stream_breaks_on_the_idle_timeout(mock, pool_of, direct_send):
    with pytest.raises(GatewayError) as exc:
        await read_to_the_end(pool_of(direct_send), chat(mock, "gpt-4o-mini+stall=2000", stream=True),
                              Timeouts(idle=0.2))
    assert exc.value.status == 504


@pytest.mark.parametrize("direct_send", PATHS)
async def test_total_timeout_also_bounds_a_stream(mock, pool_of, direct_send):
    with pytest.raises(GatewayError) as exc:
        await read_to_the_end(pool_of(direct_send), chat(mock, "gpt-4o-mini+chunk_delay=100", stream=True),
                              Timeouts(total=0.35, idle=5))
    assert exc.value.status == 504


@pytest_asyncio.fixture
async def peers():
    """A server that answers every POST with the JSON it got and notes each caller's port."""
    ports: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.json_response({"got": await request.json()})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/echo")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", ports
    await runner.cleanup()


@pytest.mark.parametrize("direct_send", PATHS)
async def test_connections_are_kept_alive_and_reused(peers, pool_of, direct_send):
    base, ports = peers
    pool = pool_of(direct_send)
    for i in range(12):
        resp = await pool.send("p", WireRequest(url=f"{base}/echo", headers={}, body={"n": i}), Timeouts())
        assert orjson.loads(resp.body) == {"got": {"n": i}}
    assert len(set(ports)) == 1


@pytest.mark.parametrize("direct_send", PATHS)
async def test_nothing_leaves_before_ready_and_a_refusal_sends_nothing(peers, pool_of, direct_send):
    # ``ready`` is the call's admission, sent ahead: the request waits for it, and when it is
    # refused the request is not sent, the refusal is raised as it is, and the connection serves on.
    base, ports = peers
    pool = pool_of(direct_send)
    gate = asyncio.get_running_loop().create_future()
    sending = asyncio.ensure_future(pool.send("p", WireRequest(url=f"{base}/echo", headers={}, body={"n": 1}),
                                              Timeouts(), gate))
    await asyncio.sleep(0.05)
    assert not sending.done() and len(ports) == 0  # built, not sent
    gate.set_result(None)
    assert orjson.loads((await sending).body) == {"got": {"n": 1}}

    async def refused() -> None:
        raise GatewayError("rate_limited", "over the key's limits", status=429)

    for stream in (False, True):
        with pytest.raises(GatewayError) as caught:
            wire = WireRequest(url=f"{base}/echo", headers={}, body={"n": 2})
            if stream:
                await pool.open_stream("p", wire, Timeouts(), refused())
            else:
                await pool.send("p", wire, Timeouts(), refused())
        assert caught.value.status == 429
    assert len(ports) == 1
    resp = await pool.send("p", WireRequest(url=f"{base}/echo", headers={}, body={"n": 3}), Timeouts())
    assert orjson.loads(resp.body) == {"got": {"n": 3}} and len(set(ports)) == 1


@pytest.mark.parametrize("direct_send", PATHS)
async def test_a_307_is_followed_with_the_same_body(peers, pool_of, direct_send):
    base, _ = peers
    resp = await pool_of(direct_send).send("p", WireRequest(url=f"{base}/moved", headers={}, body={"n": 7}), Timeouts())
    assert resp.status == 200
    assert orjson.loads(resp.body) == {"got": {"n": 7}}


def test_urls_with_credentials_or_other_schemes_take_the_session_path():
    assert direct.usable(URL("https://api.openai.com/v1/chat/completions"))
    assert direct.usable(URL("http://127.0.0.1:8000/generate?key=abc"))
    assert not direct.usable(URL("http://user:pw@127.0.0.1:8000/generate"))
    assert not direct.usable(URL("ws://127.0.0.1:8000/"))
