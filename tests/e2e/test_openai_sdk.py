"""The official openai SDK, through Sluice's OpenAI surface, to every provider kind."""

from __future__ import annotations

import json

import openai
import pytest

from sluice.mock import expected_text_reply

from .conftest import CHAT_MODELS, TOOL_MODELS

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("model", list(CHAT_MODELS))
async def test_chat(oai, model):
    resp = await oai.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello gateway"}],
        max_tokens=50,
        temperature=0.5,
    )
    text = resp.choices[0].message.content
    assert text == expected_text_reply("Hello gateway")
    assert resp.model == model
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_openai_answer_is_relayed_with_the_upstreams_own_fields(oai):
    # OpenAI client, OpenAI upstream, no stage reading the answer: it goes out as the upstream
    # sent it, under the alias. Decoding it would drop service_tier and the usage details
    # Sluice does not model.
    resp = await oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "Hello relay"}])
    assert resp.model == "gpt-mock"
    assert resp.choices[0].message.content == expected_text_reply("Hello relay")
    assert resp.service_tier == "default"
    assert resp.usage.prompt_tokens_details.audio_tokens == 0


@pytest.mark.parametrize("model", list(CHAT_MODELS))
async def test_chat_stream_with_usage(oai, model):
    stream = await oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Stream these words please"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=50,
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert "Stream these words please" in text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0


async def test_stream_without_usage_request_sends_no_usage_chunk(oai):
    stream = await oai.chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected_text_reply("hi")


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_tool_call_round_trip(oai, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("c", "f")
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    second = await oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "21" in second.choices[0].message.content


@pytest.mark.parametrize("model", TOOL_MODELS)
async def test_streamed_tool_call_arguments(oai, model):
    stream = await oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for t in c.delta.tool_calls or ():
                entry = calls.setdefault(t.index, {"id": None, "name": None, "args": ""})
                entry["id"] = t.id or entry["id"]
                entry["name"] = (t.function.name if t.function else None) or entry["name"]
                entry["args"] += (t.function.arguments or "") if t.function else ""
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert set(json.loads(calls[0]["args"])) == {"city", "unit"}


@pytest.mark.parametrize("model", ["gpt-mock", "claude-mock", "gemini-mock"])
async def test_image_input_reaches_provider(oai, upstream_log, model):
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    resp = await oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
        ]}],
    )
    assert resp.choices[0].message.content
    sent = json.dumps((await upstream_log())[-1]["body"])
    assert pixel in sent  # the image travelled in the provider's own image format


async def test_json_schema_response_format(oai):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    for model in ("gpt-mock", "claude-mock", "gemini-mock"):
        resp = await oai.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "json please"}],
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )
        assert "answer" in json.loads(resp.choices[0].message.content), model


@pytest.mark.parametrize("model", ["emb-openai", "emb-gemini"])
async def test_embeddings(oai, model):
    resp = await oai.embeddings.create(model=model, input=["one", "two"], dimensions=8)
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in resp.data)
    assert resp.data[0].embedding != resp.data[1].embedding
    again = await oai.embeddings.create(model=model, input="one", dimensions=8)  # deterministic
    assert again.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


async def test_models_list_and_get(oai):
    listed = {m.id async for m in oai.models.list()}
    assert set(CHAT_MODELS) <= listed
    model = await oai.models.retrieve("claude-mock")
    assert model.id == "claude-mock"
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve("no-such-model")


async def test_passthrough_provider_slash_model(oai, upstream_log):
    resp = await oai.chat.completions.create(model="claude/claude-haiku-4-5", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == expected_text_reply("x")
    assert (await upstream_log())[-1]["body"]["model"] == "claude-haiku-4-5"


async def test_unknown_model_is_404_in_openai_schema(oai):
    with pytest.raises(openai.NotFoundError) as exc:
        await oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "model_not_found"
