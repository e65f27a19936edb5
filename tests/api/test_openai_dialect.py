"""OpenAI Chat Completions / Embeddings inbound dialect: request validation, response, chunk,
embeddings and error rendering.

Wire examples follow the OpenAI API reference (chat completion object, chunk object, error
object, embeddings). The last group drives the official ``openai`` SDK against the bytes Sluice
produces (no network): the SDK's own request goes through ``parse_*``, Sluice's rendering
comes back through the SDK's parsers.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx2 as httpx  # the installed openai SDK is built on httpx2
import openai
import orjson
import pytest

from sluice.api.openai_dialect import (
    ChunkEncoder,
    parse_chat_request,
    parse_embeddings_request,
    render_chat_response,
    render_embeddings,
    render_error,
    stream_error,
)
from sluice.schema import (
    ChatChunk,
    ChatResponse,
    Choice,
    EmbeddingResponse,
    EmbeddingUsage,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    "strict": True}}


def chat(**kw) -> dict:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}
    body.update(kw)
    return body


def bad(body: Any, parse=parse_chat_request) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        parse(body)
    assert e.value.status == 400 and e.value.kind == "invalid_request"
    return e.value


# --------------------------------------------------------------------------- chat requests


def test_minimal_request():
    r = parse_chat_request(chat())
    assert r.model == "gpt-4o-mini"
    assert r.messages == [Message(role="user", content=[TextPart(text="Hello!")])]
    assert r.stream is False and r.include_usage is False and r.extra is None


@pytest.mark.parametrize("fields", [{}, {"stream": False}, {"stream": True},
                                    {"stream": True, "stream_options": {"include_usage": True}}])
def test_a_minimal_request_parses_as_the_full_path_does(fields):
    """Bodies of only model, messages and the stream fields take a short path; an optional field
    sent as null takes the full one. Both must give the same request."""
    body = chat(**fields)
    assert parse_chat_request(body) == parse_chat_request({**body, "temperature": None, "tools": None})


def test_every_parameter():
    r = parse_chat_request(chat(
        temperature=0.5, top_p=0.9, max_completion_tokens=100, max_tokens=50, stop="END", n=2, seed=-5,
        presence_penalty=1.5, frequency_penalty=-1, tools=[WEATHER_TOOL], tool_choice="required",
        parallel_tool_calls=False, user="user-1", metadata={"k": "v"}, stream=True,
        stream_options={"include_usage": True}, logprobs=True, top_logprobs=2, store=True,
        response_format={"type": "json_object"},
    ))
    assert (r.temperature, r.top_p, r.max_tokens, r.stop, r.n, r.seed) == (0.5, 0.9, 100, ["END"], 2, -5)
    assert (r.presence_penalty, r.frequency_penalty) == (1.5, -1)
    assert r.tools == [Tool(name="get_weather", description="Get the weather",
                            parameters=WEATHER_TOOL["function"]["parameters"], strict=True)]
    assert r.tool_choice == "required" and r.parallel_tool_calls is False
    assert r.user == "user-1" and r.metadata == {"k": "v"}
    assert r.stream is True and r.include_usage is True
    assert r.response_format == ResponseFormat(type="json_object")
    assert r.extra == {"logprobs": True, "top_logprobs": 2, "store": True}
    assert r.extra_dialect == "openai"
    assert parse_chat_request(chat(max_tokens=7)).max_tokens == 7
    assert parse_chat_request(chat(stop=["a", "b"])).stop == ["a", "b"]


def test_stream_without_include_usage():
    r = parse_chat_request(chat(stream=True, stream_options={"include_usage": False}))
    assert r.stream and not r.include_usage
    assert not parse_chat_request(chat(stream=True)).include_usage


def test_roles_developer_content_parts_and_tool_messages():
    r = parse_chat_request(chat(messages=[
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": [{"type": "text", "text": "Part A"}, {"type": "text", "text": "Part B"}]},
        {"role": "user", "name": "ann", "content": [
            {"type": "text", "text": "What's this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": "{\"location\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ]))
    m = r.messages
    assert m[0] == Message(role="system", content=[TextPart(text="Be terse.")])
    assert m[1].role == "system" and m[1].text() == "Part APart B"
    assert m[2].name == "ann"
    assert m[2].content == [TextPart(text="What's this?"), ImagePart(url="https://example.com/a.png", detail="high"),
                            ImagePart(data="iVBORw0KGgo=", media_type="image/png")]
    assert m[3] == Message(role="assistant", tool_calls=[
        ToolCall(id="call_1", name="get_weather", arguments="{\"location\":\"Paris\"}")])
    assert m[4] == Message(role="tool", content=[TextPart(text="18C")], tool_call_id="call_1")
    assert m[5].text() == "No."


def test_legacy_functions_and_function_call():
    r = parse_chat_request(chat(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None,
             "function_call": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\"}"}},
            {"role": "function", "name": "get_weather", "content": "-3C"},
        ],
        functions=[{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
        function_call={"name": "get_weather"},
    ))
    assert r.tools == [Tool(name="get_weather", parameters={"type": "object", "properties": {}})]
    assert r.tool_choice == {"name": "get_weather"}
    call = r.messages[1].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("get_weather", "get_weather", "{\"location\":\"Oslo\"}")
    assert r.messages[2] == Message(role="tool", content=[TextPart(text="-3C")], tool_call_id="get_weather",
                                    name="get_weather")
    assert parse_chat_request(chat(functions=[{"name": "f"}], function_call="auto")).tool_choice == "auto"


def test_named_tool_choice_and_json_schema():
    r = parse_chat_request(chat(
        tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {
            "name": "answer", "strict": True, "schema": {"type": "object", "properties": {}}}},
    ))
    assert r.tool_choice == {"name": "get_weather"}
    assert r.response_format == ResponseFormat(type="json_schema", name="answer",
                                               schema={"type": "object", "properties": {}}, strict=True)
    assert parse_chat_request(chat(response_format={"type": "text"})).response_format is None


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    (chat(messages=[]), "messages"),
    (chat(messages="hi"), "messages"),
    (chat(messages=["hi"]), "messages[0]"),
    (chat(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (chat(messages=[{"role": "user"}]), "messages[0].content"),
    (chat(messages=[{"role": "assistant"}]), "messages[0].content"),
    (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
    (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages[0].content[0].type"),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
     "messages[0].content[0].image_url.url"),
    (chat(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]),
     "messages[0].content[0].type"),
    (chat(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
     "messages[0].content[0].type"),
    (chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]),
     "messages[0].tool_calls[0].function"),
    (chat(messages=[{"role": "assistant", "tool_calls": "x"}]), "messages[0].tool_calls"),
    (chat(temperature=3), "temperature"),
    (chat(temperature="hot"), "temperature"),
    (chat(top_p=1.5), "top_p"),
    (chat(presence_penalty=-2.5), "presence_penalty"),
    (chat(frequency_penalty=True), "frequency_penalty"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_completion_tokens=1.5), "max_completion_tokens"),
    (chat(n=0), "n"),
    (chat(n=129), "n"),
    (chat(seed="1"), "seed"),
    (chat(stop=[1]), "stop"),
    (chat(stream="yes"), "stream"),
    (chat(stream_options={"include_usage": True}), "stream_options"),
    (chat(metadata=["x"]), "metadata"),
    (chat(user=5), "user"),
    (chat(tools={"a": 1}), "tools"),
    (chat(tools=[{"type": "code_interpreter"}]), "tools[0]"),
    (chat(tools=[{"type": "function", "function": {"description": "x"}}]), "tools[0].function.name"),
    (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
     "tools[0].function.parameters"),
    (chat(tools=[WEATHER_TOOL], tool_choice="maybe"), "tool_choice"),
    (chat(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "other"}}), "tool_choice"),
    (chat(tool_choice="required"), "tool_choice"),
    (chat(function_call="auto"), "function_call"),
    (chat(response_format={"type": "xml"}), "response_format.type"),
    (chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
     "response_format.json_schema.name"),
])
def test_validation_errors(body, param):
    e = bad(body)
    assert e.param == param
    assert e.message


def test_non_object_body():
    assert bad([1, 2]).param is None


# --------------------------------------------------------------------------- embeddings requests


def test_parse_embeddings():
    r = parse_embeddings_request({"model": "text-embedding-3-small", "input": "hi", "dimensions": 8, "user": "u"})
    assert (r.model, r.input, r.dimensions, r.user, r.encoding_format) == (
        "text-embedding-3-small", ["hi"], 8, "u", "float")
    r = parse_embeddings_request({"model": "e", "input": ["a", "b"], "encoding_format": "base64"})
    assert r.input == ["a", "b"] and r.encoding_format == "base64"


@pytest.mark.parametrize("body, param", [
    ({"input": "x"}, "model"),
    ({"model": "e"}, "input"),
    ({"model": "e", "input": []}, "input"),
    ({"model": "e", "input": [1, 2, 3]}, "input"),
    ({"model": "e", "input": [[1, 2]]}, "input"),
    ({"model": "e", "input": ["a", ""]}, "input"),
    ({"model": "e", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "e", "input": "a", "dimensions": 0}, "dimensions"),
])
def test_embeddings_validation_errors(body, param):
    assert bad(body, parse_embeddings_request).param == param


# --------------------------------------------------------------------------- rendering

RESPONSE = ChatResponse(
    id="chatcmpl-abc",
    model="gpt-4o-mini-2024-07-18",
    created=1741569952,
    system_fingerprint="fp_1",
    choices=[Choice(index=0, message=Message(role="assistant", content=[TextPart(text="Hi there")]),
                    finish_reason="stop")],
    usage=Usage(input_tokens=19, output_tokens=10, cached_tokens=4, reasoning_tokens=2),
)

TOOL_RESPONSE = ChatResponse(
    id="upstream-id-1",
    model="m",
    created=1,
    choices=[Choice(index=0, message=Message(role="assistant", tool_calls=[
        ToolCall(id="call_1", name="get_weather", arguments="{\"location\":\"Paris\"}")]),
        finish_reason="tool_calls")],
    usage=Usage(input_tokens=5, output_tokens=3),
)


def test_render_chat_response_shape():
    assert render_chat_response(RESPONSE, "my-alias") == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "my-alias",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 2}},
        "system_fingerprint": "fp_1",
    }


def test_render_tool_call_response_and_error_finish():
    out = render_chat_response(TOOL_RESPONSE, "alias")
    assert out["id"] == "chatcmpl-upstream-id-1"
    assert out["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
        "logprobs": None, "finish_reason": "tool_calls"}
    errored = ChatResponse(id="x", model="m", choices=[Choice(message=Message(role="assistant"),
                                                              finish_reason="error")])
    assert render_chat_response(errored, "a")["choices"][0]["finish_reason"] == "stop"  # no "error" in OpenAI


def test_render_embeddings_float_and_base64():
    resp = EmbeddingResponse(model="up", vectors=[[0.5, -0.25], [1.0, 0.0]], usage=EmbeddingUsage(input_tokens=4))
    assert render_embeddings(resp, "alias", "float") == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                 {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
        "model": "alias",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    b64 = render_embeddings(resp, "alias", "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (0.5, -0.25)  # little-endian float32


@pytest.mark.parametrize("err, status, type_, code", [
    (GatewayError("invalid_request", "bad", param="temperature", code="invalid_value"), 400,
     "invalid_request_error", "invalid_value"),
    (GatewayError("authentication", "no key"), 401, "authentication_error", None),
    (GatewayError("permission", "no"), 403, "permission_error", None),
    (GatewayError("not_found", "no model"), 404, "invalid_request_error", None),
    (GatewayError("rate_limit", "slow down", retry_after=2), 429, "rate_limit_error", None),
    (GatewayError("context_window_exceeded", "too long"), 400, "invalid_request_error", "context_length_exceeded"),
    (GatewayError("content_policy", "filtered"), 400, "invalid_request_error", "content_policy_violation"),
    (GatewayError("server_error", "oops"), 500, "server_error", None),
    (GatewayError("upstream_unavailable", "down"), 502, "server_error", None),
    (GatewayError("overloaded", "busy"), 503, "server_error", None),  # 529 is Anthropic's own
    (GatewayError("timeout", "slow"), 408, "timeout_error", None),
])
def test_render_error(err, status, type_, code):
    got_status, body = render_error(err)
    assert got_status == status
    assert body == {"error": {"message": err.message, "type": type_, "param": err.param, "code": code}}


# --------------------------------------------------------------------------- SSE chunks


def parse_sse(raw: bytes) -> list[Any]:
    events = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ") and "\n" not in block
        data = block[6:]
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


STREAM = [
    ChatChunk(role="assistant", id="up-1", model="up-model"),
    ChatChunk(text="Let me"),
    ChatChunk(text=" check."),
    ChatChunk(tool_calls=[ToolCallDelta(index=0, id="call_1", name="get_weather")]),
    ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments="{\"location\":")]),
    ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments="\"Paris\"}")]),
    ChatChunk(tool_calls=[ToolCallDelta(index=1, id="call_2", name="get_time", arguments="{}")]),
    ChatChunk(finish_reason="tool_calls"),
    ChatChunk(usage=Usage(input_tokens=82, output_tokens=18, cached_tokens=64)),
]


def encode(chunks, include_usage: bool) -> bytes:
    enc = ChunkEncoder("chatcmpl-xyz", "my-alias", include_usage)
    return b"".join(enc.encode(c) for c in chunks) + enc.close()


def test_chunks_with_usage():
    events = parse_sse(encode(STREAM, include_usage=True))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for c in chunks:
        assert c["id"] == "chatcmpl-xyz" and c["object"] == "chat.completion.chunk" and c["model"] == "my-alias"
        assert isinstance(c["created"], int)
        assert "usage" in c
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Let me"} and deltas[2] == {"content": " check."}
    assert deltas[3] == {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"arguments": "", "name": "get_weather"}}]}
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}
    assert deltas[6]["tool_calls"][0]["index"] == 1
    assert deltas[7] == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 7 + ["tool_calls"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert all(c["choices"][0]["logprobs"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 82, "completion_tokens": 18, "total_tokens": 100,
                             "prompt_tokens_details": {"cached_tokens": 64},
                             "completion_tokens_details": {"reasoning_tokens": 0}}


def test_chunks_without_usage():
    events = parse_sse(encode(STREAM, include_usage=False))
    assert events[-1] == "[DONE]"
    assert len(events) == 9  # 8 choice chunks, no usage chunk
    assert all("usage" not in c and c["choices"] for c in events[:-1])


def test_first_chunk_carries_role_even_without_role_chunk_and_usage_latest_wins():
    enc = ChunkEncoder("chatcmpl-1", "m", True)
    first = parse_sse(enc.encode(ChatChunk(text="Hi")))[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert enc.encode(ChatChunk(usage=Usage(input_tokens=1, output_tokens=1))) == b""
    # usage on the finish chunk itself, as some upstreams send it: the later report wins
    fin = parse_sse(enc.encode(ChatChunk(finish_reason="length", usage=Usage(input_tokens=3, output_tokens=4))))
    assert fin[0]["choices"][0]["finish_reason"] == "length"
    tail = parse_sse(enc.close())
    assert tail[0]["usage"]["total_tokens"] == 7 and tail[1] == "[DONE]"


def test_stream_error_line():
    raw = stream_error(GatewayError("rate_limit", "Too many requests"))
    assert parse_sse(raw) == [{"error": {"message": "Too many requests", "type": "rate_limit_error",
                                         "param": None, "code": None}}]


# --------------------------------------------------------------------------- the official SDK


def sdk(handler) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://test/v1", api_key="x", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def chat_handler(response: ChatResponse | None = None, stream: list[ChatChunk] | None = None,
                 seen: list | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        parsed = parse_chat_request(orjson.loads(request.content))  # the SDK's request passes validation
        if seen is not None:
            seen.append(parsed)
        if parsed.stream:
            enc = ChunkEncoder("chatcmpl-sdk", parsed.model, parsed.include_usage)
            raw = b"".join(enc.encode(c) for c in stream or []) + enc.close()
            return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=render_chat_response(response, parsed.model))
    return handler


def test_sdk_non_streaming_typed_fields():
    seen: list = []
    client = sdk(chat_handler(RESPONSE, seen=seen))
    out = client.chat.completions.create(
        model="my-alias", messages=[{"role": "developer", "content": "Be nice"}, {"role": "user", "content": "Hi"}],
        temperature=0.3, max_completion_tokens=20)
    assert seen[0].max_tokens == 20 and seen[0].messages[0].role == "system"
    assert isinstance(out, openai.types.chat.ChatCompletion)
    assert out.id == "chatcmpl-abc" and out.model == "my-alias" and out.created == 1741569952
    assert out.choices[0].message.content == "Hi there"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == 19 and out.usage.completion_tokens == 10 and out.usage.total_tokens == 29
    assert out.usage.prompt_tokens_details.cached_tokens == 4
    assert out.usage.completion_tokens_details.reasoning_tokens == 2
    assert out.system_fingerprint == "fp_1"


def test_sdk_non_streaming_tool_calls():
    client = sdk(chat_handler(TOOL_RESPONSE))
    out = client.chat.completions.create(model="a", messages=[{"role": "user", "content": "Weather?"}],
                                         tools=[WEATHER_TOOL], tool_choice="auto")
    call = out.choices[0].message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert orjson.loads(call.function.arguments) == {"location": "Paris"}
    assert out.choices[0].finish_reason == "tool_calls"


def test_sdk_streaming_accumulates_content_tool_calls_and_usage():
    client = sdk(chat_handler(stream=STREAM))
    text, calls, finish, usage, n_usage = "", {}, None, None, 0
    for chunk in client.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}],
                                                stream=True, stream_options={"include_usage": True}):
        assert isinstance(chunk, openai.types.chat.ChatCompletionChunk)
        if chunk.usage is not None:
            usage, n_usage = chunk.usage, n_usage + 1
            assert chunk.choices == []
        for c in chunk.choices:
            text += c.delta.content or ""
            for t in c.delta.tool_calls or ():
                slot = calls.setdefault(t.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = t.id or slot["id"]
                slot["name"] = (t.function and t.function.name) or slot["name"]
                slot["arguments"] += (t.function and t.function.arguments) or ""
            finish = c.finish_reason or finish
    assert text == "Let me check."
    assert calls == {0: {"id": "call_1", "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
                     1: {"id": "call_2", "name": "get_time", "arguments": "{}"}}
    assert finish == "tool_calls"
    assert n_usage == 1 and usage.prompt_tokens == 82 and usage.completion_tokens == 18
    assert usage.prompt_tokens_details.cached_tokens == 64


def test_sdk_stream_helper_final_completion():
    # The SDK's stream helper rebuilds a ChatCompletion from the chunks and checks their order.
    client = sdk(chat_handler(stream=STREAM))
    with client.chat.completions.stream(model="a", messages=[{"role": "user", "content": "x"}],
                                        stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check."
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("call_1", "get_weather", "{\"location\":\"Paris\"}"), ("call_2", "get_time", "{}")]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.total_tokens == 100


def test_sdk_stream_without_usage_has_no_usage_chunk():
    client = sdk(chat_handler(stream=[ChatChunk(text="a"), ChatChunk(finish_reason="stop"),
                                      ChatChunk(usage=Usage(input_tokens=1, output_tokens=1))]))
    chunks = list(client.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}],
                                                 stream=True))
    assert len(chunks) == 2 and all(c.usage is None and c.choices for c in chunks)
    assert chunks[0].choices[0].delta.content == "a" and chunks[1].choices[0].finish_reason == "stop"


def test_sdk_raises_on_in_stream_error():
    def handler(request: httpx.Request) -> httpx.Response:
        enc = ChunkEncoder("chatcmpl-e", "a", False)
        raw = enc.encode(ChatChunk(text="par")) + stream_error(GatewayError("server_error", "upstream broke"))
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})
    stream = sdk(handler).chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}],
                                                  stream=True)
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["par"]
    assert "upstream broke" in str(e.value)


@pytest.mark.parametrize("err, exc", [
    (GatewayError("invalid_request", "Invalid 'temperature'", param="temperature"), openai.BadRequestError),
    (GatewayError("authentication", "bad key"), openai.AuthenticationError),
    (GatewayError("not_found", "no such model"), openai.NotFoundError),
    (GatewayError("rate_limit", "slow down"), openai.RateLimitError),
    (GatewayError("context_window_exceeded", "too long"), openai.BadRequestError),
    (GatewayError("overloaded", "busy"), openai.InternalServerError),
])
def test_sdk_maps_rendered_errors(err, exc):
    def handler(request: httpx.Request) -> httpx.Response:
        status, body = render_error(err)
        return httpx.Response(status, json=body)
    with pytest.raises(exc) as e:
        sdk(handler).chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["message"] == err.message
    assert e.value.code == (render_error(err)[1]["error"]["code"])
    assert e.value.param == err.param


def embeddings_handler(vectors: list[list[float]], seen: list):
    def handler(request: httpx.Request) -> httpx.Response:
        parsed = parse_embeddings_request(orjson.loads(request.content))
        seen.append(parsed)
        resp = EmbeddingResponse(model="upstream", vectors=vectors[:len(parsed.input)],
                                 usage=EmbeddingUsage(input_tokens=3))
        return httpx.Response(200, json=render_embeddings(resp, parsed.model, parsed.encoding_format))
    return handler


VECTORS = [[0.5, -0.25, 1.0], [0.0, 2.0, -1.5]]


def test_sdk_embeddings_default_requests_base64_and_decodes():
    seen: list = []
    out = sdk(embeddings_handler(VECTORS, seen)).embeddings.create(model="emb", input=["a", "b"])
    assert seen[0].encoding_format == "base64"  # the SDK asks for base64 when not told otherwise
    assert [d.embedding for d in out.data] == VECTORS  # ...and decodes Sluice's float32 base64 itself
    assert [d.index for d in out.data] == [0, 1]
    assert out.model == "emb" and out.usage.prompt_tokens == 3 and out.usage.total_tokens == 3


def test_sdk_embeddings_explicit_float_and_base64():
    seen: list = []
    client = sdk(embeddings_handler(VECTORS, seen))
    out = client.embeddings.create(model="emb", input="a", encoding_format="float")
    assert seen[-1].encoding_format == "float" and out.data[0].embedding == VECTORS[0]
    out = client.embeddings.create(model="emb", input="a", encoding_format="base64")
    # Asked for explicitly, base64 is handed back as the raw string.
    assert seen[-1].encoding_format == "base64"
    assert struct.unpack("<3f", base64.b64decode(out.data[0].embedding)) == tuple(VECTORS[0])


# ---- same-dialect relay ---------------------------------------------------------------------

_UP = (b'data: {"id":"c","model":"up-model","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}\n\n')
_UP_USAGE = (b'data: {"id":"c","model":"up-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,'
             b'"total_tokens":2}}\n\ndata: [DONE]\n\n')


def _relayed(include_usage: bool) -> bytes:
    """An upstream stream through the provider's relay and the encoder, as an OpenAI client gets it."""
    from sluice.providers.openai import OpenAIStreamDecoder, _wire_finish
    from sluice.providers.relay import OpenAIRelay

    relay = OpenAIRelay(OpenAIStreamDecoder("up"), _wire_finish, keep_usage=include_usage)
    enc = ChunkEncoder("id", "my-alias", include_usage)
    chunks = relay.feed(_UP) + relay.feed(_UP) + relay.feed(_UP_USAGE) + relay.finish()
    return b"".join(enc.encode(c) for c in chunks) + enc.close()


def test_relayed_events_carry_the_alias_and_end_once():
    out = _relayed(include_usage=True)
    assert b"up-model" not in out and out.count(b'"model":"my-alias"') == 3
    assert out.count(b"[DONE]") == 1 and b'"usage":{"prompt_tokens":1' in out


def test_relayed_usage_report_is_dropped_unless_asked_for():
    out = _relayed(include_usage=False)
    assert b'"choices":[]' not in out and b"prompt_tokens" not in out and b'"usage"' not in out
    assert out.endswith(b"data: [DONE]\n\n") and out.count(b"[DONE]") == 1


def test_a_relay_without_done_gets_one():
    from sluice.schema import ChatChunk

    enc = ChunkEncoder("id", "m", False)
    assert enc.encode(ChatChunk(raw=_UP)) and enc.close() == b"data: [DONE]\n\n"


def test_relayed_model_is_replaced_literally():
    from sluice.schema import ChatChunk

    enc = ChunkEncoder("id", "team\\1/model", False)
    first = b'data: {"id":"c","model":"","choices":[]}\n\n' + _UP
    out = enc.encode(ChatChunk(raw=first)) + enc.encode(ChatChunk(raw=_UP))
    assert out.count(b'"model":"team\\\\1/model"') == 3


async def _sent(batches: list) -> list[dict]:
    """What an ASGI server is asked to write for a relayed stream of these batches."""
    from sluice.api.http import SSEResponse
    from sluice.api.openai_dialect import stream_error

    async def upstream():
        for batch in batches:
            yield batch

    enc = ChunkEncoder("id", "m", False)
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await SSEResponse(upstream(), enc.encode, enc.close, stream_error, "rid", enc.ended)({}, None, send)
    return sent


async def test_relayed_done_goes_out_with_the_end_of_the_body():
    from sluice.schema import ChatChunk, Usage

    sent = await _sent([[ChatChunk(raw=_UP)], [ChatChunk(raw=_UP_USAGE, usage=Usage(input_tokens=1))]])
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert [m["more_body"] for m in bodies] == [True, False]  # two writes, not three
    assert bodies[1]["body"].endswith(b"data: [DONE]\n\n") and bodies[1]["body"].count(b"[DONE]") == 1


async def test_events_after_a_relayed_done_keep_their_order():
    from sluice.schema import ChatChunk

    sent = await _sent([[ChatChunk(raw=_UP + b"data: [DONE]\n\n")], [ChatChunk(raw=_UP)]])
    body = b"".join(m.get("body", b"") for m in sent)
    assert body.index(b"[DONE]") < body.rindex(b'"content":"a"') and sent[-1]["more_body"] is False
