"""Upstream faults, client disconnects, auth and bad input, seen through the official SDKs."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest

from sluice.mock import expected_text_reply

from .conftest import MASTER_KEY

HI = [{"role": "user", "content": "hi"}]


async def test_429_reaches_client_with_retry_after(oai):
    with pytest.raises(openai.RateLimitError) as exc:
        await oai.chat.completions.create(model="rate-limited", messages=HI)
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body["type"] == "rate_limit_error"
    assert exc.value.response.headers["x-request-id"]


async def test_429_in_anthropic_dialect(claude):
    with pytest.raises(anthropic.RateLimitError) as exc:
        await claude.messages.create(model="rate-limited", max_tokens=10, messages=HI)
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    assert exc.value.response.headers["retry-after"] == "7"


async def test_overloaded_maps_per_dialect(oai, claude):
    with pytest.raises(anthropic.APIStatusError) as a_exc:
        await claude.messages.create(model="anthropic-overloaded", max_tokens=10, messages=HI)
    assert a_exc.value.status_code == 529
    assert a_exc.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.InternalServerError) as o_exc:
        await oai.chat.completions.create(model="anthropic-overloaded", messages=HI)
    assert o_exc.value.status_code == 503


async def test_provider_400_is_not_retried(oai, upstream_log):
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="gemini-bad-request", messages=HI)
    assert len(await upstream_log()) == 1


async def test_failover_within_one_request(oai, upstream_log):
    resp = await oai.chat.completions.with_raw_response.create(model="flaky", messages=HI)
    assert resp.headers["x-sluice-attempts"] == "2"
    assert resp.headers["x-sluice-deployment"] == "standby"
    assert resp.headers["x-sluice-fallback"] == "standby"
    assert resp.parse().choices[0].message.content == expected_text_reply("hi")
    paths = [r["path"] for r in await upstream_log()]
    assert paths == ["/v1/chat/completions", "/v1/messages"]


async def test_failover_for_streams_before_first_byte(oai):
    stream = await oai.chat.completions.create(model="flaky", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == expected_text_reply("hi")


async def test_cut_stream_ends_with_error_event_openai(oai):
    stream = await oai.chat.completions.create(
        model="cut-stream", messages=[{"role": "user", "content": "one two three four five six seven"}], stream=True
    )
    with pytest.raises(openai.APIError) as exc:
        async for _ in stream:
            pass
    assert "stream" in str(exc.value).lower() or "upstream" in str(exc.value).lower()


async def test_cut_stream_ends_with_error_event_anthropic(claude):
    with pytest.raises(anthropic.APIError):
        async with claude.messages.stream(model="cut-stream-claude", max_tokens=50,
                                          messages=[{"role": "user", "content": "one two three four five six"}]) as s:
            async for _ in s:
                pass


async def test_stalled_stream_times_out_with_error_not_hang(oai):
    # The stall comes before the first token, so the client gets a 504 instead of a stream.
    with pytest.raises(openai.APIError) as exc:
        async with asyncio.timeout(4):
            stream = await oai.chat.completions.create(model="stalled", messages=HI, stream=True)
            async for _ in stream:
                pass
    assert getattr(exc.value, "status_code", 504) == 504


async def test_client_disconnect_cancels_upstream(gateway, upstream_log):
    words = " ".join(f"w{i}" for i in range(40))
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"},
                          json={"model": "slow-stream", "stream": True,
                                "messages": [{"role": "user", "content": words}]}) as r:
            assert r.status == 200
            await r.content.readline()  # the first chunk arrived; now hang up
    for _ in range(40):
        entry = (await upstream_log())[-1]
        if "outcome" in entry:
            break
        await asyncio.sleep(0.1)
    assert entry["outcome"] == "client_gone"
    assert entry["chunks_sent"] < 10  # of ~45: generation stopped soon after the client left


async def test_disconnect_before_first_token_cancels_upstream(gateway, upstream_log):
    """The client leaves while the model is still thinking: the upstream call is dropped too."""
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await s.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"},
                             json={"model": "slow-start", "stream": True, "messages": HI})
    await asyncio.sleep(1.2)  # past the upstream's think time
    entry = (await upstream_log())[-1]
    assert entry["outcome"] == "client_gone" and entry["chunks_sent"] == 0


async def test_auth_required_on_both_surfaces(gateway, sdk):
    bad_openai = sdk.openai(f"{gateway.url}/v1", "wrong")
    with pytest.raises(openai.AuthenticationError) as exc:
        await bad_openai.chat.completions.create(model="gpt-mock", messages=HI)
    assert exc.value.body["code"] == "invalid_api_key"
    bad_claude = sdk.anthropic(gateway.url, "wrong")
    with pytest.raises(anthropic.AuthenticationError) as a_exc:
        await bad_claude.messages.create(model="gpt-mock", max_tokens=5, messages=HI)
    assert a_exc.value.body["error"]["type"] == "authentication_error"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gateway.url}/v1/models") as r:
            assert r.status == 401


async def test_request_id_generated_and_propagated(gateway):
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER_KEY}"}) as s:
        async with s.get(f"{gateway.url}/v1/models") as r:
            generated = r.headers["x-request-id"]
            assert len(generated) >= 16
        await asyncio.sleep(0.002)
        async with s.get(f"{gateway.url}/v1/models") as r:
            # Generated ids start with the time, so the ledger's request-id index grows at its end.
            later = r.headers["x-request-id"]
            assert len(later) == 32 and int(later, 16) and later > generated
        async with s.get(f"{gateway.url}/v1/models", headers={"x-request-id": "client-abc-123"}) as r:
            assert r.headers["x-request-id"] == "client-abc-123"
        async with s.get(f"{gateway.url}/v1/models", headers={"x-request-id": "bad id\twith junk"}) as r:
            assert r.headers["x-request-id"] != "bad id\twith junk"
        async with s.get(f"{gateway.url}/nowhere") as r:
            assert r.status == 404 and r.headers["x-request-id"]


@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b'{"model": "gpt-mock"}', 400, "messages"),
    (b'{"model": "gpt-mock", "messages": [{"role": "wizard", "content": "x"}]}', 400, "wizard"),
    (b'{"model": "gpt-mock", "messages": [{"role": "user", "content": "x"}], "temperature": 9}', 400, "temperature"),
])
async def test_bad_input_gets_openai_error(gateway, upstream_log, body, status, needle):
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER_KEY}",
                                              "content-type": "application/json"}) as s:
        async with s.post(f"{gateway.url}/v1/chat/completions", data=body) as r:
            assert r.status == status
            err = (await r.json())["error"]
            assert needle in err["message"] and err["type"] == "invalid_request_error"
            assert r.headers["x-request-id"]
    assert await upstream_log() == []  # nothing reached a provider


async def test_oversized_body_is_413(gateway):
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER_KEY}"}) as s:
        big = b'{"model":"gpt-mock","messages":[{"role":"user","content":"' + b"x" * (33 * 1024 * 1024) + b'"}]}'
        async with s.post(f"{gateway.url}/v1/chat/completions", data=big,
                          headers={"content-type": "application/json"}) as r:
            assert r.status == 413
