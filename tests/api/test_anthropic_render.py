"""Anthropic Messages API inbound dialect: response, error and stream rendering.

The last group drives the official ``anthropic`` SDK against the rendered bytes (no network).
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest

from sluice.api.anthropic_dialect import (
    ERROR_TYPE_BY_KIND,
    StreamEncoder,
    parse_request,
    render_error,
    render_response,
    stop_reason,
)
from sluice.schema import (
    ChatChunk,
    ChatResponse,
    Choice,
    GatewayError,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from sluice.schema.errors import DEFAULT_STATUS

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


# --------------------------------------------------------------------------- response


def response(**over: Any) -> ChatResponse:
    base: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "model": "gpt-4o-2024-08-06",
        "choices": [Choice(message=Message(role="assistant", content=[TextPart(text="Hi there!")]), finish_reason="stop")],
        "usage": Usage(input_tokens=100, output_tokens=20, cached_tokens=30, cache_write_tokens=10),
    }
    base.update(over)
    return ChatResponse(**base)


def test_render_text_response_with_cache_usage_split() -> None:
    out = render_response(response(), "claude-via-sluice")
    assert out == {
        "id": "msg_chatcmpl-abc123",
        "type": "message",
        "role": "assistant",
        "model": "claude-via-sluice",
        "content": [{"type": "text", "text": "Hi there!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 60,
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": 30,
            "output_tokens": 20,
        },
    }


def test_render_keeps_msg_prefix_and_handles_missing_usage() -> None:
    out = render_response(response(id="msg_01XFDUDYJgAACzvnptvVoYEL", usage=None), "m")
    assert out["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert out["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }


def test_render_tool_use_response() -> None:
    msg = Message(
        role="assistant",
        content=[TextPart(text="Checking."), TextPart(text="")],
        tool_calls=[
            ToolCall(id="call_1", name="get_weather", arguments='{"location": "Paris", "unit": "c"}'),
            ToolCall(id="call_2", name="get_time", arguments=""),
            ToolCall(id="call_3", name="broken", arguments='{"location": "Par'),
            ToolCall(id="call_4", name="listy", arguments="[1, 2]"),
        ],
    )
    out = render_response(response(choices=[Choice(message=msg, finish_reason="tool_calls")]), "m")
    assert out["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "broken", "input": {}},
        {"type": "tool_use", "id": "call_4", "name": "listy", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_render_uses_first_choice_only() -> None:
    choices = [
        Choice(index=0, message=Message(role="assistant", content=[TextPart(text="first")]), finish_reason="length"),
        Choice(index=1, message=Message(role="assistant", content=[TextPart(text="second")]), finish_reason="stop"),
    ]
    out = render_response(response(choices=choices), "m")
    assert out["content"] == [{"type": "text", "text": "first"}]
    assert out["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("finish", "seq", "tools", "expected"),
    [
        ("stop", None, False, "end_turn"),
        (None, None, False, "end_turn"),
        ("length", None, False, "max_tokens"),
        ("stop", "END", False, "stop_sequence"),
        ("tool_calls", None, True, "tool_use"),
        ("stop", None, True, "tool_use"),  # Gemini reports STOP for function calls
        ("content_filter", None, False, "refusal"),
        ("error", None, False, "end_turn"),
    ],
)
def test_stop_reason(finish: Any, seq: str | None, tools: bool, expected: str) -> None:
    assert stop_reason(finish, seq, tools) == expected


def test_render_stop_sequence() -> None:
    choice = Choice(message=Message(role="assistant", content=[TextPart(text="a")]), finish_reason="stop", stop_sequence="END")
    out = render_response(response(choices=[choice]), "m")
    assert out["stop_reason"] == "stop_sequence" and out["stop_sequence"] == "END"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "status", "etype"),
    [
        ("invalid_request", 400, "invalid_request_error"),
        ("authentication", 401, "authentication_error"),
        ("permission", 403, "permission_error"),
        ("not_found", 404, "not_found_error"),
        ("timeout", 408, "timeout_error"),
        ("payload_too_large", 413, "request_too_large"),
        ("unprocessable", 422, "invalid_request_error"),
        ("rate_limit", 429, "rate_limit_error"),
        ("server_error", 500, "api_error"),
        ("overloaded", 529, "overloaded_error"),
        ("upstream_unavailable", 502, "api_error"),
        ("context_window_exceeded", 400, "invalid_request_error"),
        ("content_policy", 400, "invalid_request_error"),
    ],
)
def test_render_error_every_kind(kind: str, status: int, etype: str) -> None:
    code, out = render_error(GatewayError(kind, "something went wrong"))
    assert code == status
    assert out == {"type": "error", "error": {"type": etype, "message": "something went wrong"}}


def test_every_error_kind_is_mapped() -> None:
    assert set(ERROR_TYPE_BY_KIND) == set(DEFAULT_STATUS)


def test_render_error_unknown_kind_and_request_id() -> None:
    assert render_error(GatewayError("weird", "x", status=418))[1]["error"]["type"] == "invalid_request_error"
    assert render_error(GatewayError("weird", "x", status=503))[1]["error"]["type"] == "api_error"
    code, out = render_error(GatewayError("rate_limit", "slow down", retry_after=3), request_id="req_123")
    assert code == 429 and out["request_id"] == "req_123"


# --------------------------------------------------------------------------- stream


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    assert raw.endswith(b"\n\n")
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        lines = frame.split(b"\n")
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: ") and len(lines) == 2
        name = lines[0][len(b"event: ") :].decode()
        data = orjson.loads(lines[1][len(b"data: ") :])
        assert data["type"] == name  # Anthropic repeats the event name as the data's type
        events.append((name, data))
    return events


def realistic_chunks() -> list[ChatChunk]:
    """What an OpenAI-style upstream yields: role, text, two tool calls in pieces, finish, usage."""
    return [
        ChatChunk(role="assistant", id="chatcmpl-1", model="gpt-4o"),
        ChatChunk(text="Let me "),
        ChatChunk(text="check."),
        ChatChunk(tool_calls=[ToolCallDelta(index=0, id="call_A", name="get_weather")]),
        ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"loca')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments='tion": "Paris"}')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=1, id="call_B", name="get_time", arguments='{"tz":')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=1, arguments=' "CET"}')]),
        ChatChunk(index=1, text="ignored: not choice 0"),
        ChatChunk(finish_reason="tool_calls"),
        ChatChunk(usage=Usage(input_tokens=500, output_tokens=42, cached_tokens=100, cache_write_tokens=0)),
    ]


def encode_all(chunks: list[ChatChunk], enc: StreamEncoder | None = None) -> bytes:
    enc = enc or StreamEncoder("msg_test", "claude-sonnet-4")
    return b"".join(enc.encode(c) for c in chunks) + enc.close()


def test_stream_event_sequence() -> None:
    events = parse_sse(encode_all(realistic_chunks()))
    summary = [(name, data.get("index")) for name, data in events]
    assert summary == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    data = [d for _, d in events]
    assert data[0] == {
        "type": "message_start",
        "message": {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
        },
    }
    assert data[1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert data[2] == {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}
    assert data[3]["delta"]["text"] == "check."
    assert data[5] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}},
    }
    assert data[6] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"loca'},
    }
    assert data[9]["content_block"] == {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}
    assert [d["delta"]["partial_json"] for d in data[10:12]] == ['{"tz":', ' "CET"}']
    assert data[12] == {"type": "content_block_stop", "index": 2}
    assert data[13] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 400, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 42},
    }
    assert data[14] == {"type": "message_stop"}


def test_stream_message_delta_sent_as_soon_as_finish_and_usage_known() -> None:
    enc = StreamEncoder("msg_1", "m")
    assert [n for n, _ in parse_sse(enc.encode(ChatChunk(role="assistant")))] == ["message_start"]
    assert [n for n, _ in parse_sse(enc.encode(ChatChunk(text="hi")))] == ["content_block_start", "content_block_delta"]
    # Finish without usage: the block closes, message_delta waits for usage.
    assert [n for n, _ in parse_sse(enc.encode(ChatChunk(finish_reason="stop")))] == ["content_block_stop"]
    out = parse_sse(enc.encode(ChatChunk(usage=Usage(input_tokens=5, output_tokens=2))))
    assert [n for n, _ in out] == ["message_delta"]
    assert out[0][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert out[0][1]["usage"]["output_tokens"] == 2
    assert [n for n, _ in parse_sse(enc.close())] == ["message_stop"]
    assert enc.close() == b"" and enc.encode(ChatChunk(text="late")) == b""


def test_stream_finish_with_usage_in_same_chunk_and_stop_sequence() -> None:
    enc = StreamEncoder("chatcmpl-9", "m")
    raw = enc.encode(ChatChunk(role="assistant", usage=Usage(input_tokens=12)))
    start = parse_sse(raw)[0][1]
    assert start["message"]["id"] == "msg_chatcmpl-9"
    assert start["message"]["usage"]["input_tokens"] == 12
    enc.encode(ChatChunk(text="a b"))
    out = parse_sse(enc.encode(ChatChunk(finish_reason="stop", stop_sequence="END", usage=Usage(input_tokens=12, output_tokens=3))))
    assert [n for n, _ in out] == ["content_block_stop", "message_delta"]
    assert out[1][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert [n for n, _ in parse_sse(enc.close())] == ["message_stop"]


def test_stream_late_usage_sends_another_message_delta() -> None:
    enc = StreamEncoder("msg_2", "m")
    enc.encode(ChatChunk(text="x", usage=Usage(input_tokens=7)))
    out = parse_sse(enc.encode(ChatChunk(finish_reason="length", usage=Usage(input_tokens=7, output_tokens=1))))
    assert out[-1][1]["delta"]["stop_reason"] == "max_tokens"
    again = parse_sse(enc.encode(ChatChunk(usage=Usage(input_tokens=7, output_tokens=9))))
    assert [n for n, _ in again] == ["message_delta"] and again[0][1]["usage"]["output_tokens"] == 9


def test_stream_close_without_chunks() -> None:
    events = parse_sse(StreamEncoder("msg_3", "m").close())
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 0},
    }


def test_stream_text_after_tool_opens_new_block_and_gemini_whole_calls() -> None:
    chunks = [
        ChatChunk(tool_calls=[ToolCallDelta(index=0, id="c0", name="f", arguments='{"a": 1}')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=1, id="c1", name="g", arguments="")]),
        ChatChunk(text="done"),
        ChatChunk(finish_reason="stop"),  # Gemini: STOP even with function calls
    ]
    events = parse_sse(encode_all(chunks))
    assert [(n, d.get("index")) for n, d in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stream_error_event_ends_stream() -> None:
    enc = StreamEncoder("msg_4", "m")
    enc.encode(ChatChunk(text="partial"))
    raw = enc.error(GatewayError("overloaded", "Overloaded"))
    assert raw == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    assert enc.close() == b""


def test_ping_event() -> None:
    assert StreamEncoder.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


# --------------------------------------------------------------------------- official SDK


def sdk_client(handler: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-test",
        base_url="http://sluice.test",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_sdk_stream_accumulates_our_events() -> None:
    sent: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent["body"] = orjson.loads(request.content)
        req = parse_request(sent["body"])
        assert req.stream and req.include_usage
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=encode_all(realistic_chunks()))

    client = sdk_client(handler)
    with client.messages.stream(
        model="gpt-4o",
        max_tokens=256,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Let me check."
    assert final.id == "msg_test" and final.model == "claude-sonnet-4"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me check."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == ("call_A", "get_weather", {"location": "Paris"})
    assert (final.content[2].id, final.content[2].name, final.content[2].input) == ("call_B", "get_time", {"tz": "CET"})
    assert final.stop_reason == "tool_use" and final.stop_sequence is None
    assert final.usage.input_tokens == 400
    assert final.usage.cache_read_input_tokens == 100
    assert final.usage.cache_creation_input_tokens == 0
    assert final.usage.output_tokens == 42


def test_sdk_parses_non_streaming_response_and_request_round_trips() -> None:
    captured: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        req = parse_request(orjson.loads(request.content))
        captured.append(req)
        msg = Message(
            role="assistant",
            content=[TextPart(text="Sunny.")],
            tool_calls=[ToolCall(id="toolu_9", name="get_weather", arguments='{"location":"Paris"}')],
        )
        resp = ChatResponse(
            id="chatcmpl-x",
            model="gpt-4o",
            choices=[Choice(message=msg, finish_reason="tool_calls")],
            usage=Usage(input_tokens=50, output_tokens=5, cached_tokens=20),
        )
        return httpx.Response(200, content=orjson.dumps(render_response(resp, req.model)))

    client = sdk_client(handler)
    result = client.messages.create(
        model="gpt-4o",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "u-1"},
        stop_sequences=["END"],
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        # Recent SDKs dropped the sampling parameters; older clients still send them.
        extra_body={"temperature": 0.2, "top_k": 5},
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}, {"type": "text", "text": "Where?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    )
    req = captured[0]
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.user == "u-1" and req.temperature == 0.2 and req.top_k == 5 and req.stop == ["END"]
    assert req.response_format == ResponseFormat(type="json_schema", name="response", schema={"type": "object"})
    assert req.tool_choice == "required" and req.parallel_tool_calls is False
    assert req.messages[2].tool_calls == [ToolCall(id="toolu_1", name="get_weather", arguments='{"location":"Paris"}')]

    assert result.id == "msg_chatcmpl-x" and result.type == "message" and result.role == "assistant"
    assert result.content[0].type == "text" and result.content[0].text == "Sunny."
    assert result.content[1].type == "tool_use" and result.content[1].input == {"location": "Paris"}
    assert result.stop_reason == "tool_use"
    assert (result.usage.input_tokens, result.usage.cache_read_input_tokens, result.usage.output_tokens) == (30, 20, 5)


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("invalid_request", anthropic.BadRequestError),
        ("authentication", anthropic.AuthenticationError),
        ("permission", anthropic.PermissionDeniedError),
        ("not_found", anthropic.NotFoundError),
        ("rate_limit", anthropic.RateLimitError),
        ("overloaded", anthropic.InternalServerError),
        ("server_error", anthropic.InternalServerError),
    ],
)
def test_sdk_maps_our_error_responses(kind: str, exc: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        status, payload = render_error(GatewayError(kind, "nope"), request_id="req_1")
        return httpx.Response(status, content=orjson.dumps(payload))

    with pytest.raises(exc) as info:
        sdk_client(handler).messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"] == {"type": ERROR_TYPE_BY_KIND[kind], "message": "nope"}


def test_sdk_raises_on_mid_stream_error_event() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        enc = StreamEncoder("msg_e", "m")
        raw = enc.encode(ChatChunk(text="partial")) + enc.error(GatewayError("overloaded", "Overloaded"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk_client(handler).messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            s.get_final_message()
    assert "Overloaded" in str(info.value)
