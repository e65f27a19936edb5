"""The provider emulator, driven by the official SDKs and by raw HTTP where the wire matters."""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from sluice.mock import MockOptions, count_input_tokens, expected_text_reply, parse_model, sample_from_schema, start_mock
from sluice.mock.faults import DirectiveError, Fault, should_fail

OPENAI_AUTH = {"Authorization": "Bearer sk-test-secret"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-secret", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "gem-secret"}

WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "optional": {"type": "boolean"},
    },
    "required": ["city", "days", "unit", "tags"],
}
WEATHER_ARGS = {"city": "sample_city", "days": 1, "unit": "celsius", "tags": ["sample_tags"]}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL_SCHEMA}]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mock():
    server = await start_mock()
    yield server
    await server.close()


@pytest.fixture(autouse=True)
def _clean(mock):
    mock.state.reset_requests()
    mock.state.rules.clear()


@pytest_asyncio.fixture(loop_scope="session")
async def http(mock):
    async with httpx.AsyncClient(base_url=mock.url, timeout=10) as client:
        yield client


@pytest.fixture
def oai(mock, sdk) -> openai.AsyncOpenAI:
    return sdk.openai(mock.url + "/v1", "sk-test-secret")


@pytest.fixture
def claude(mock, sdk) -> anthropic.AsyncAnthropic:
    return sdk.anthropic(mock.url, "sk-ant-secret")


@pytest_asyncio.fixture
async def gem(mock):
    client = genai.Client(api_key="gem-secret", http_options=gtypes.HttpOptions(base_url=mock.url, api_version="v1beta"))
    yield client
    await client.aio.aclose()  # see tests/conftest.py::SDKClients: never leave closing to the collector
    client.close()


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = None, ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data:"):
                data = line[5:].strip()
        events.append((name, data))
    return events


# --- replies and directives (pure) ------------------------------------------------------------


def test_sample_from_schema_covers_refs_unions_and_formats():
    schema = {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
        "type": "object",
        "properties": {
            "p": {"$ref": "#/$defs/Point"},
            "when": {"type": "string", "format": "date-time"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 5}]},
            "kind": {"const": "fixed"},
            "n": {"type": ["integer", "null"], "maximum": 0},
        },
    }
    assert sample_from_schema(schema) == {
        "p": {"x": 1.5},
        "when": "2024-01-01T00:00:00Z",
        "maybe": 5,
        "kind": "fixed",
        "n": 0,
    }


def test_parse_model_grammar():
    base, fault = parse_model("gpt+fail=429+retry_after=2+latency=5")
    assert base == "gpt"
    assert (fault.fail, fault.retry_after, fault.latency) == (429, 2.0, 5.0)
    with pytest.raises(DirectiveError):
        parse_model("gpt+explode=1")
    with pytest.raises(DirectiveError):
        parse_model("gpt+fail=200")


def test_fail_rate_is_deterministic():
    fault = Fault(fail_rate=0.5)
    assert [should_fail(fault, k) for k in range(1, 7)] == [False, True, False, True, False, True]
    assert [should_fail(Fault(fail_first=2), k) for k in range(1, 5)] == [True, True, False, False]


# --- OpenAI ---------------------------------------------------------------------------------


async def test_openai_chat_text_and_usage(oai):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello mock world"}]
    r = await oai.chat.completions.create(model="mock-model", messages=msgs)
    assert r.object == "chat.completion"
    assert r.model == "mock-model"
    assert r.choices[0].message.content == "Echo: hello mock world"
    assert r.choices[0].finish_reason == "stop"
    chars = len("Be brief.") + len("hello mock world")
    assert r.usage.prompt_tokens == count_input_tokens(chars) == math.ceil(chars / 4)
    assert r.usage.completion_tokens == 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + 4


async def test_openai_stream_with_usage(oai):
    stream = await oai.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


async def test_openai_stream_wire_ends_with_done(http):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    r = await http.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == (None, "[DONE]")
    assert all("usage" not in json.loads(d) for _, d in events[:-1])  # no include_usage: no usage key


async def test_openai_tool_call_and_follow_up(oai):
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    r = await oai.chat.completions.create(model="mock-model", messages=msgs, tools=OPENAI_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    msgs += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"},
    ]
    r2 = await oai.chat.completions.create(model="mock-model", messages=msgs, tools=OPENAI_TOOLS)
    assert r2.choices[0].message.content == "Tool get_weather returned: 21C and sunny"


async def test_openai_tool_call_streamed_in_pieces(oai):
    stream = await oai.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "go"}], tools=OPENAI_TOOLS, stream=True
    )
    deltas = [c.choices[0].delta.tool_calls[0] async for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_weather"
    assert all(d.id is None and d.index == 0 for d in deltas[1:])
    assert len(deltas) >= 3
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == WEATHER_ARGS


async def test_openai_tool_choice_variants(oai):
    tools = OPENAI_TOOLS + [{"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}]
    msgs = [{"role": "user", "content": "hi"}]
    none = await oai.chat.completions.create(model="m", messages=msgs, tools=tools, tool_choice="none")
    assert none.choices[0].message.content == "Echo: hi"
    forced = await oai.chat.completions.create(
        model="m", messages=msgs, tools=tools, tool_choice={"type": "function", "function": {"name": "other"}}
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "other"
    assert forced.choices[0].message.tool_calls[0].function.arguments == "{}"


async def test_openai_n_max_tokens_stop(oai):
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b c d"}], n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == 3 * 5
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("Echo: a", "length")
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b STOP c"}], stop=["STOP"])
    assert r.choices[0].message.content == "Echo: a b "


async def test_openai_json_modes(oai):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": False}
    r = await oai.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert json.loads(r.choices[0].message.content) == {"name": "sample_name", "age": 1}
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"echo": "x"}


async def test_openai_embeddings_float_and_base64(oai, http):
    a = await oai.embeddings.create(model="emb", input=["alpha", "beta"], dimensions=16, encoding_format="float")
    assert [d.index for d in a.data] == [0, 1] and len(a.data[0].embedding) == 16
    assert math.isclose(sum(v * v for v in a.data[0].embedding), 1.0, rel_tol=1e-6)
    again = await oai.embeddings.create(model="emb", input="alpha", dimensions=16, encoding_format="float")
    assert again.data[0].embedding == a.data[0].embedding  # deterministic
    assert a.data[0].embedding != a.data[1].embedding
    assert a.usage.prompt_tokens == count_input_tokens(len("alpha")) + count_input_tokens(len("beta")) == 3
    raw = await http.post("/v1/embeddings", json={"model": "emb", "input": "alpha", "dimensions": 16, "encoding_format": "base64"}, headers=OPENAI_AUTH)
    decoded = struct.unpack("<16f", base64.b64decode(raw.json()["data"][0]["embedding"]))
    assert all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(decoded, a.data[0].embedding))
    sdk_default = await oai.embeddings.create(model="emb", input="alpha", dimensions=16)  # SDK asks for base64
    assert len(sdk_default.data[0].embedding) == 16


async def test_openai_models_and_auth(oai, http):
    models = await oai.models.list()
    assert "mock-model" in [m.id for m in models.data]
    r = await http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "API key" in err["message"] and err["code"] is None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "bogus": 1}, "Unrecognized request argument supplied: bogus"),
        ({"model": "m", "messages": []}, "empty array"),
        ({"model": "m", "messages": [{"role": "tool", "tool_call_id": "c1", "content": "r"}]}, "must be a response to a preceeding message with 'tool_calls'"),
        (
            {"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": "y"},
            ]},
            "did not have response messages: c1",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}, "only allowed when 'tools' are specified"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}, "only allowed when 'stream' is enabled"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "role"),
    ],
)
async def test_openai_strict_validation(http, body, needle):
    r = await http.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert needle in err["message"]


async def test_azure_chat_and_embeddings(mock, http):
    client = openai.AsyncAzureOpenAI(azure_endpoint=mock.url, api_key="az-secret", api_version="2024-10-21", max_retries=0)
    r = await client.chat.completions.create(model="my-deploy", messages=[{"role": "user", "content": "hi az"}])
    assert r.choices[0].message.content == "Echo: hi az"
    e = await client.embeddings.create(model="my-embed", input="x", dimensions=4)
    assert len(e.data[0].embedding) == 4
    rec = (await http.get("/_mock/requests", params={"format": "azure"})).json()
    assert rec["requests"][0]["path"] == "/openai/deployments/my-deploy/chat/completions"
    assert rec["requests"][0]["headers"]["api-key"] == "[redacted]"
    assert rec["counters"]["my-deploy"] == 1


async def test_azure_requires_api_version_and_key(http):
    body = {"messages": [{"role": "user", "content": "x"}]}
    r = await http.post("/openai/deployments/d/chat/completions", json=body, headers={"api-key": "k"})
    assert (r.status_code, r.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    r = await http.post("/openai/deployments/d/chat/completions?api-version=2024-10-21", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "401"


# --- Anthropic ------------------------------------------------------------------------------


async def test_anthropic_text_and_usage(claude):
    r = await claude.messages.create(
        model="mock-claude", max_tokens=50, system="Be kind.", messages=[{"role": "user", "content": "hi claude"}]
    )
    assert r.content[0].type == "text" and r.content[0].text == expected_text_reply("hi claude")
    assert r.stop_reason == "end_turn" and r.model == "mock-claude"
    assert r.usage.input_tokens == count_input_tokens(len("Be kind.") + len("hi claude"))
    assert r.usage.output_tokens == 3


async def test_anthropic_stream_event_sequence(http):
    body = {"model": "c", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "one two"}]}
    r = await http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    events = sse_events(r.text)
    names = [n for n, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    for name, data in events:
        assert json.loads(data)["type"] == name  # the data's type repeats the event name
    start = json.loads(events[0][1])["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == count_input_tokens(7)
    delta = json.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None} and delta["usage"] == {"output_tokens": 3}
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Echo: one two"


async def test_anthropic_sdk_stream_and_tools(claude):
    async with claude.messages.stream(
        model="c", max_tokens=100, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_message()
    assert kinds.count("input_json") >= 2  # arguments arrive in pieces
    block = final.content[0]
    assert final.stop_reason == "tool_use" and block.type == "tool_use" and block.input == WEATHER_ARGS
    follow = await claude.messages.create(
        model="c",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [block.model_dump(exclude_none=True, include={"type", "id", "name", "input"})]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "rainy"}]},
        ],
    )
    assert follow.content[0].text == "Tool get_weather returned: rainy"


async def test_anthropic_forced_tool_and_stop_sequence(claude):
    r = await claude.messages.create(
        model="c", max_tokens=50, tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"}, messages=[{"role": "user", "content": "x"}]
    )
    assert r.content[0].type == "text"
    r = await claude.messages.create(model="c", max_tokens=50, stop_sequences=["END"], messages=[{"role": "user", "content": "a END b"}])
    assert (r.content[0].text, r.stop_reason, r.stop_sequence) == ("Echo: a ", "stop_sequence", "END")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "c", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 'Unexpected role "system"'),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 2}, "n: Extra inputs are not permitted"),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "text content blocks must be non-empty"),
        (
            {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]},
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            {"model": "c", "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                {"role": "user", "content": "no result"},
            ]},
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]}, "input_schema: Field required"),
        ({"model": "c", "max_tokens": 2000, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 4000}}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ],
)
async def test_anthropic_strict_validation(http, body, message):
    r = await http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 400
    payload = r.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]


async def test_anthropic_headers_required(http):
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    r = await http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "anthropic-version: header is required"


# --- Gemini ---------------------------------------------------------------------------------


async def test_gemini_generate_and_stream(gem):
    r = await gem.aio.models.generate_content(
        model="mock-gemini", contents="hello gemini", config=gtypes.GenerateContentConfig(system_instruction="Sys.")
    )
    assert r.text == "Echo: hello gemini"
    assert r.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count == count_input_tokens(len("Sys.") + len("hello gemini"))
    assert r.usage_metadata.candidates_token_count == 3
    chunks = [c async for c in await gem.aio.models.generate_content_stream(model="mock-gemini", contents="a b c")]
    assert "".join(c.text for c in chunks) == "Echo: a b c"
    assert len(chunks) == 4 and chunks[-1].usage_metadata.candidates_token_count == 4


async def test_gemini_function_call_and_response(gem):
    decl = gtypes.FunctionDeclaration(
        name="get_weather",
        parameters=gtypes.Schema(type="OBJECT", properties={"city": gtypes.Schema(type="STRING")}, required=["city"]),
    )
    config = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=[decl])])
    r = await gem.aio.models.generate_content(model="g", contents="weather?", config=config)
    call = r.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "sample_city"})
    contents = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="weather?")]),
        gtypes.Content(role="model", parts=[gtypes.Part(function_call=call)]),
        gtypes.Content(role="user", parts=[gtypes.Part.from_function_response(name="get_weather", response={"t": "21C"})]),
    ]
    r2 = await gem.aio.models.generate_content(model="g", contents=contents, config=config)
    assert r2.text == 'Tool get_weather returned: {"t":"21C"}'


async def test_gemini_rejects_json_schema_keys(http, gem):
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
            "type": "object", "$schema": "http://json-schema.org/draft-07/schema#", "additionalProperties": False,
            "properties": {"a": {"type": "string"}},
        }}]}],
    }  # fmt: skip
    r = await http.post("/v1beta/models/g:generateContent", json=body, headers=GEMINI_HEADERS)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "additionalProperties" at \'tools[0].function_declarations[0].parameters\': Cannot find field.' in err["message"]
    assert 'Unknown name "$schema"' in err["message"]
    with pytest.raises(genai_errors.ClientError) as info:
        await gem.aio.models.generate_content(model="g", contents=[gtypes.Content(role="assistant", parts=[gtypes.Part(text="x")])])
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"


async def test_gemini_validation_and_auth(http):
    ok = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    r = await http.post("/v1beta/models/g:generateContent", json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, headers=GEMINI_HEADERS)
    assert r.status_code == 400 and r.json()["error"]["message"] == "Please use a valid role: user, model."
    r = await http.post("/v1beta/models/g:generateContent", json={**ok, "generationConfig": {"maxTokens": 5}}, headers=GEMINI_HEADERS)
    assert r.status_code == 400 and "Unknown name \"maxTokens\" at 'generation_config'" in r.json()["error"]["message"]
    r = await http.post("/v1beta/models/g:generateContent", json=ok)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = await http.post("/v1beta/models/g:generateContent?key=abc", json=ok)
    assert r.status_code == 200
    assert (await http.get("/_mock/requests")).json()["requests"][-1]["query"] == {"key": "[redacted]"}


async def test_gemini_json_mode_and_sse_wire(http):
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}},
    }
    r = await http.post("/v1beta/models/g:generateContent", json=body, headers=GEMINI_HEADERS)
    assert json.loads(r.json()["candidates"][0]["content"]["parts"][0]["text"]) == {"n": 1}
    r = await http.post("/v1beta/models/g:streamGenerateContent?alt=sse", json={"contents": body["contents"]}, headers=GEMINI_HEADERS)
    chunks = [json.loads(d) for _, d in sse_events(r.text)]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])


async def test_gemini_embeddings(gem, http):
    r = await gem.aio.models.embed_content(model="emb", contents=["a", "b"], config=gtypes.EmbedContentConfig(output_dimensionality=8))
    assert len(r.embeddings) == 2 and len(r.embeddings[0].values) == 8
    single = await http.post("/v1beta/models/emb:embedContent", json={"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8}, headers=GEMINI_HEADERS)
    assert single.json()["embedding"]["values"] == r.embeddings[0].values
    wrong = {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]}
    r = await http.post("/v1beta/models/emb:batchEmbedContents", json=wrong, headers=GEMINI_HEADERS)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- TGI ------------------------------------------------------------------------------------


async def test_tgi_generate_stream_info(http):
    r = await http.post("/generate", json={"inputs": "tell me", "parameters": {"details": True, "max_new_tokens": 2}})
    body = r.json()
    assert body["generated_text"] == "Echo: tell"
    assert body["details"]["finish_reason"] == "length" and body["details"]["generated_tokens"] == 2
    r = await http.post("/generate_stream", json={"inputs": "hi"})
    events = [json.loads(d) for _, d in sse_events(r.text)]
    assert [e["token"]["text"] for e in events] == ["Echo:", " hi"]
    assert events[0]["details"] is None and events[0]["generated_text"] is None
    assert events[-1]["generated_text"] == "Echo: hi" and events[-1]["details"]["finish_reason"] == "eos_token"
    assert (await http.get("/info")).json()["model_id"] == "mock-model"
    r = await http.post("/generate", json={"inputs": "", "parameters": {}})
    assert r.status_code == 422 and r.json() == {"error": "Input validation error: `inputs` cannot be empty", "error_type": "validation"}
    r = await http.post("/tgi/llama+fail=503/generate", json={"inputs": "x"})
    assert r.status_code == 503 and r.json()["error_type"] == "overloaded"


# --- faults and latency ---------------------------------------------------------------------


def _chat(model: str, stream: bool = False, text: str = "one two three four five") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def test_fail_429_with_retry_after(http, oai):
    r = await http.post("/v1/chat/completions", json=_chat("m+fail=429+retry_after=2"), headers=OPENAI_AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(model="m+fail=429", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("status", [500, 503])
async def test_fail_status_in_each_dialect(http, status):
    r = await http.post("/v1/chat/completions", json=_chat(f"m+fail={status}"), headers=OPENAI_AUTH)
    assert r.status_code == status and r.json()["error"]["type"] == "server_error"
    body = {"model": f"c+fail={status}", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    r = await http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == status and r.json()["error"]["type"] == {500: "api_error", 503: "overloaded_error"}[status]
    r = await http.post(f"/v1beta/models/g+fail={status}:generateContent", json={"contents": [{"parts": [{"text": "x"}]}]}, headers=GEMINI_HEADERS)
    assert r.json()["error"] == {"code": status, "message": r.json()["error"]["message"], "status": {500: "INTERNAL", 503: "UNAVAILABLE"}[status]}


async def test_fail_first_and_fail_rate(http):
    first = [(await http.post("/v1/chat/completions", json=_chat("m+fail_first=2"), headers=OPENAI_AUTH)).status_code for _ in range(3)]
    assert first == [500, 500, 200]
    rate = [(await http.post("/v1/chat/completions", json=_chat("m+fail=503+fail_rate=0.5"), headers=OPENAI_AUTH)).status_code for _ in range(4)]
    assert rate == [200, 503, 200, 503]


async def test_latency_and_chunk_delay(http):
    t0 = time.perf_counter()
    await http.post("/v1/chat/completions", json=_chat("m+latency=200"), headers=OPENAI_AUTH)
    assert time.perf_counter() - t0 >= 0.2
    t0 = time.perf_counter()
    r = await http.post("/v1/chat/completions", json=_chat("m+chunk_delay=50", stream=True), headers=OPENAI_AUTH)
    assert time.perf_counter() - t0 >= 0.05 * 7  # 9 events: role, 6 words, finish, [DONE]
    assert sse_events(r.text)[-1] == (None, "[DONE]")


async def test_stall_after_first_chunk(http):
    arrivals = []
    async with http.stream("POST", "/v1/chat/completions", json=_chat("m+stall=300", stream=True), headers=OPENAI_AUTH) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                arrivals.append(time.perf_counter())
    assert arrivals[1] - arrivals[0] >= 0.28
    assert arrivals[-1] - arrivals[1] < 0.25


async def test_cut_stream_mid_way(http):
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("POST", "/v1/chat/completions", json=_chat("m+cut=3", stream=True), headers=OPENAI_AUTH) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    received.append(line)
    assert len(received) == 3


async def test_cut_anthropic_stream_via_sdk(claude):
    seen = []
    with pytest.raises(Exception) as info:  # the SDK surfaces its HTTP library's protocol error
        async with claude.messages.stream(model="c+cut=2", max_tokens=50, messages=[{"role": "user", "content": "x y z"}]) as s:
            async for event in s:
                seen.append(event.type)
    assert "peer closed connection" in str(info.value) or isinstance(info.value, anthropic.APIConnectionError)
    assert seen[0] == "message_start" and "message_stop" not in seen


async def test_bad_directive_is_a_dialect_error(http):
    r = await http.post("/v1/chat/completions", json=_chat("m+nope=1"), headers=OPENAI_AUTH)
    assert r.status_code == 400 and "unknown mock directive" in r.json()["error"]["message"]


async def test_startup_latency_option():
    server = await start_mock(options=MockOptions(latency_ms=150, models=["only-one"]))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=_chat("m"), headers=OPENAI_AUTH)
            assert r.status_code == 200 and time.perf_counter() - t0 >= 0.15
            models = (await client.get("/v1/models", headers=OPENAI_AUTH)).json()["data"]
            assert [m["id"] for m in models] == ["only-one"]
    finally:
        await server.close()


# --- control API ----------------------------------------------------------------------------


async def test_control_fault_rules(http):
    r = await http.post("/_mock/faults", json={"model": "gpt-x", "format": "openai", "fault": "fail=429+retry_after=1", "count": 1})
    assert r.status_code == 201
    assert (await http.get("/_mock/faults")).json()["rules"][0]["fault"] == {"fail": 429, "retry_after": 1.0}
    body = {"model": "gpt-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert (await http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)).status_code == 200  # other format
    statuses = [(await http.post("/v1/chat/completions", json=_chat("gpt-x"), headers=OPENAI_AUTH)).status_code for _ in range(2)]
    assert statuses == [429, 200]
    assert (await http.get("/_mock/faults")).json()["rules"] == []  # used up
    await http.post("/_mock/faults", json={"fault": {"fail": 500}})
    assert (await http.post("/v1/chat/completions", json=_chat("any"), headers=OPENAI_AUTH)).status_code == 500
    assert (await http.delete("/_mock/faults")).status_code == 204
    assert (await http.post("/v1/chat/completions", json=_chat("any"), headers=OPENAI_AUTH)).status_code == 200
    assert (await http.post("/_mock/faults", json={"fault": {"explode": 1}})).status_code == 400


async def test_control_request_log(http, oai):
    await oai.chat.completions.create(model="logged", messages=[{"role": "user", "content": "remember me"}], temperature=0.5)
    await http.post("/v1/chat/completions", json=_chat("logged"), headers=OPENAI_AUTH)
    data = (await http.get("/_mock/requests", params={"model": "logged"})).json()
    assert data["counters"] == {"logged": 2}
    first = data["requests"][0]
    assert first["path"] == "/v1/chat/completions" and first["format"] == "openai"
    assert first["body"]["temperature"] == 0.5 and first["body"]["messages"][0]["content"] == "remember me"
    assert first["headers"]["Authorization"] == "[redacted]"
    assert "sk-test-secret" not in json.dumps(data)
    assert (await http.delete("/_mock/requests")).status_code == 204
    assert (await http.get("/_mock/requests")).json() == {"requests": [], "counters": {}}
