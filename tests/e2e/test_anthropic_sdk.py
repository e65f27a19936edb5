"""The official anthropic SDK, through Sluice's Anthropic surface, to every provider kind."""

from __future__ import annotations

import anthropic
import pytest

from sluice.mock import expected_text_reply

from .conftest import CHAT_MODELS, TOOL_MODELS

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize("model", list(CHAT_MODELS))
async def test_messages(claude, model):
    msg = await claude.messages.create(
        model=model, max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "Tell me something"}],
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.model == model
    text = msg.content[0].text
    assert text == expected_text_reply("Tell me something")
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", list(CHAT_MODELS))
async def test_messages_stream(claude, model):
    async with claude.messages.stream(model=model, max_tokens=64,
                                      messages=[{"role": "user", "content": "Count to three"}]) as stream:
        events = [e.type async for e in stream]
        final = await stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "message_delta" in events
    assert "Count to three" in final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_tool_use_round_trip(claude, model):
    messages = [{"role": "user", "content": "Weather in Rome?"}]
    first = await claude.messages.create(model=model, max_tokens=100, messages=messages, tools=[WEATHER_TOOL])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str)
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 25C"}]},
    ]
    second = await claude.messages.create(model=model, max_tokens=100, messages=messages, tools=[WEATHER_TOOL])
    assert second.stop_reason == "end_turn"
    assert "sunny, 25C" in second.content[0].text


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_streamed_tool_use(claude, model):
    async with claude.messages.stream(model=model, max_tokens=100, tools=[WEATHER_TOOL],
                                      tool_choice={"type": "tool", "name": "get_weather"},
                                      messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = await stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather" and set(use.input) == {"city"}
    assert final.stop_reason == "tool_use"


async def test_image_block_to_openai_provider(claude, upstream_log):
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    await claude.messages.create(model="gpt-mock", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
        {"type": "text", "text": "What is this?"},
    ]}])
    body = (await upstream_log())[-1]["body"]
    parts = body["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}} in parts


async def test_x_api_key_header_authenticates(gateway):
    import aiohttp

    from .conftest import MASTER_KEY

    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.url}/v1/messages", headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
                          json={"model": "gpt-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}) as r:
            assert r.status == 200
            assert (await r.json())["type"] == "message"


async def test_missing_max_tokens_is_anthropic_400(claude):
    # The SDK itself insists on max_tokens, so send the request as JSON the way other clients may.
    with pytest.raises(anthropic.BadRequestError) as exc:
        await claude.post("/v1/messages", cast_to=object,
                          body={"model": "gpt-mock", "messages": [{"role": "user", "content": "a"}]})
    assert exc.value.status_code == 400
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in exc.value.body["error"]["message"]


async def test_count_tokens(claude):
    result = await claude.messages.count_tokens(model="gpt-mock", messages=[{"role": "user", "content": "hello " * 40}])
    assert 40 <= result.input_tokens <= 200
