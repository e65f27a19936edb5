"""Anthropic Messages API inbound dialect: request parsing, response/stream/error rendering.

Wire examples follow the Messages API reference and the official SDK's types; the last
group drives the official ``anthropic`` SDK against the rendered bytes (no network).
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
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from sluice.schema.errors import DEFAULT_STATUS

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "gpt-4o",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, world"}],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def invalid(payload: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_request(payload)
    err = info.value
    assert err.kind == "invalid_request" and err.status == 400
    return err


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("payload", "param", "fragment"),
    [
        ([1, 2], None, "JSON object"),
        ("text", None, "JSON object"),
        (body(model=None), "model", "Field required"),
        (body(model=""), "model", "at least 1 character"),
        (body(model=7), "model", "valid string"),
        (body(max_tokens=None), "max_tokens", "Field required"),
        (body(max_tokens="100"), "max_tokens", "valid integer"),
        (body(max_tokens=True), "max_tokens", "valid integer"),
        (body(max_tokens=10.5), "max_tokens", "valid integer"),
        (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        (body(max_tokens=-5), "max_tokens", "greater than or equal to 1"),
        (body(messages=None), "messages", "Field required"),
        (body(messages={"role": "user"}), "messages", "valid list"),
        (body(messages=[]), "messages", "at least one message"),
        (body(messages=["hi"]), "messages.0", "valid dictionary"),
        (body(messages=[{"role": "bot", "content": "x"}]), "messages.0.role", "'user' or 'assistant'"),
        (body(messages=[{"role": "system", "content": "x"}]), "messages.0.role", "top-level `system`"),
        (body(messages=[{"role": "user"}]), "messages.0.content", "Field required"),
        (body(messages=[{"role": "user", "content": ""}]), "messages.0.content", "non-empty content"),
        (body(messages=[{"role": "user", "content": []}]), "messages.0.content", "non-empty content"),
        (
            body(messages=[{"role": "assistant", "content": ""}, {"role": "user", "content": "x"}]),
            "messages.0.content",
            "non-empty content",
        ),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content", "valid list"),
        (body(messages=[{"role": "user", "content": [{"text": "no type"}]}]), "messages.0.content.0.type", "Field required"),
        (
            body(messages=[{"role": "user", "content": [{"type": "audio", "data": "x"}]}]),
            "messages.0.content.0.type",
            "'audio' is not supported",
        ),
        (body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages.0.content.0.text", "Field required"),
        (
            body(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
            "messages.0.content.0.text",
            "valid string",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]),
            "messages.0.content.0.type",
            "only allowed in assistant",
        ),
        (
            body(messages=[{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]),
            "messages.0.content.0.type",
            "only allowed in user",
        ),
        (
            body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]),
            "messages.0.content.0.input",
            "valid dictionary",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
            "messages.0.content.0.tool_use_id",
            "Field required",
        ),
        (
            body(
                messages=[
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]}
                ]
            ),
            "messages.0.content.0.is_error",
            "valid boolean",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
            "messages.0.content.0.source.type",
            "file image sources",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]),
            "messages.0.content.0.source.media_type",
            "Field required",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "x"}}
                        ],
                    }
                ]
            ),
            "messages.0.content.0.source.type",
            "'base64' is not supported",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]),
            "messages.0.content.0.type",
            "'search_result' is not supported",
        ),
        (body(system=5), "system", "valid list"),
        (body(system=[{"type": "image", "text": "x"}]), "system.0.type", "'text'"),
        (body(temperature=1.5), "temperature", "between 0 and 1"),
        (body(temperature=-0.1), "temperature", "between 0 and 1"),
        (body(temperature="hot"), "temperature", "valid number"),
        (body(top_p=2), "top_p", "between 0 and 1"),
        (body(top_k=-1), "top_k", "greater than or equal to 0"),
        (body(stop_sequences="END"), "stop_sequences", "valid list"),
        (body(stop_sequences=["END", 3]), "stop_sequences.1", "valid string"),
        (body(stream="yes"), "stream", "valid boolean"),
        (body(metadata="u"), "metadata", "valid dictionary"),
        (body(metadata={"user_id": 42}), "metadata.user_id", "valid string"),
        (body(tools={"name": "x"}), "tools", "valid list"),
        (body(tools=[{"name": "get_weather"}]), "tools.0.input_schema", "Field required"),
        (body(tools=[{"input_schema": {"type": "object"}}]), "tools.0.name", "Field required"),
        (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type", "server tool 'web_search_20250305'"),
        (body(tools=[{"type": "bash_20250124", "name": "bash"}]), "tools.0.type", "not supported"),
        (body(tool_choice={"type": "sometimes"}), "tool_choice.type", "'auto', 'any', 'tool' or 'none'"),
        (body(tool_choice={"type": "tool"}), "tool_choice.name", "Field required"),
        (body(tool_choice="auto"), "tool_choice", "valid dictionary"),
        (body(mcp_servers=[{"type": "url", "url": "https://mcp.example.com", "name": "m"}]), "mcp_servers", "MCP"),
        (body(output_config={"format": {"type": "xml"}}), "output_config.format.type", "'json_schema'"),
    ],
)
def test_invalid_requests(payload: Any, param: str | None, fragment: str) -> None:
    err = invalid(payload)
    assert err.param == param
    assert fragment in err.message
    if param is not None:
        assert err.message.startswith(f"{param}: ") or param.endswith("role")


def test_minimal_request() -> None:
    req = parse_request(body())
    assert req.model == "gpt-4o"
    assert req.max_tokens == 1024
    assert req.messages == [Message(role="user", content=[TextPart(text="Hello, world")])]
    assert req.stream is False and req.include_usage is False
    assert req.tools is None and req.tool_choice is None and req.parallel_tool_calls is None
    assert req.extra is None and req.metadata is None and req.user is None


def test_sampling_and_stream_fields() -> None:
    req = parse_request(
        body(temperature=0, top_p=0.9, top_k=40, stop_sequences=["\n\nHuman:", "END"], stream=True, max_tokens=2048.0)
    )
    assert req.temperature == 0.0 and req.top_p == 0.9 and req.top_k == 40
    assert req.stop == ["\n\nHuman:", "END"]
    assert req.max_tokens == 2048 and isinstance(req.max_tokens, int)
    # Anthropic streams always carry usage, so the upstream must be asked for it.
    assert req.stream is True and req.include_usage is True


def test_anthropic_only_fields_pass_through_as_extra_for_anthropic() -> None:
    req = parse_request(
        body(
            thinking={"type": "enabled", "budget_tokens": 2048},
            service_tier="auto",
            container="c_1",
            context_management={"edits": []},
            output_config={"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            some_future_field=True,
            mcp_servers=[],
            workspace_id="wrkspc_1",
            anthropic_version="bedrock-2023-05-31",
            temperature=0.5,
        )
    )
    assert req.extra == {
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
        "container": "c_1",
        "context_management": {"edits": []},
        "output_config": {"effort": "low"},
        "some_future_field": True,
    }
    assert req.extra_dialect == "anthropic"
    assert req.temperature == 0.5
    assert req.response_format == ResponseFormat(type="json_schema", name="response", schema={"type": "object"})
    plain = parse_request(body(output_config={"format": {"type": "json_schema", "schema": {}}}))
    assert plain.extra is None and plain.extra_dialect is None


def test_system_string_and_blocks() -> None:
    req = parse_request(body(system="You are terse."))
    assert req.messages[0] == Message(role="system", content=[TextPart(text="You are terse.")])
    assert req.messages[1].role == "user"

    req = parse_request(
        body(
            system=[
                {"type": "text", "text": "Rule one.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Rule two."},
            ]
        )
    )
    assert req.messages[0] == Message(role="system", content=[TextPart(text="Rule one."), TextPart(text="Rule two.")])
    assert [m.role for m in req.messages] == ["system", "user"]

    assert [m.role for m in parse_request(body(system="")).messages] == ["user"]
    assert [m.role for m in parse_request(body(system=[])).messages] == ["user"]


def test_metadata_user_id() -> None:
    req = parse_request(body(metadata={"user_id": "u-123"}))
    assert req.user == "u-123"
    assert req.metadata == {"user_id": "u-123"}
    assert parse_request(body(metadata={})).metadata is None


def test_text_and_image_blocks() -> None:
    req = parse_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                        {"type": "text", "text": "What is in these images?", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        )
    )
    assert req.messages == [
        Message(
            role="user",
            content=[
                ImagePart(data=PNG_B64, media_type="image/png"),
                ImagePart(url="https://example.com/cat.jpg"),
                TextPart(text="What is in these images?"),
            ],
        )
    ]


def test_document_text_sources_become_text() -> None:
    req = parse_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}},
                        {
                            "type": "document",
                            "source": {"type": "content", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
                        },
                        {"type": "document", "source": {"type": "content", "content": "C"}},
                        {"type": "text", "text": "Summarise."},
                    ],
                }
            ]
        )
    )
    assert req.messages[0].content == [
        TextPart(text="The grass is green."),
        TextPart(text="A\n\nB"),
        TextPart(text="C"),
        TextPart(text="Summarise."),
    ]


def test_thinking_blocks_are_dropped() -> None:
    req = parse_request(
        body(
            messages=[
                {"role": "user", "content": "2+2?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Simple sum.", "signature": "sig=="},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "4"},
                    ],
                },
                {"role": "user", "content": "Thanks"},
            ]
        )
    )
    assert req.messages == [
        Message(role="user", content=[TextPart(text="2+2?")]),
        Message(role="assistant", content=[TextPart(text="4")]),
        Message(role="user", content=[TextPart(text="Thanks")]),
    ]


def test_tool_round_trip_conversation() -> None:
    req = parse_request(
        body(
            tools=[
                {
                    "name": "get_weather",
                    "description": "Get the current weather in a given location",
                    "input_schema": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                        "required": ["location"],
                    },
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "custom", "name": "get_time", "input_schema": {"type": "object"}, "strict": True},
            ],
            tool_choice={"type": "auto"},
            messages=[
                {"role": "user", "content": "Weather and time in Paris and Tokyo?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
                        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "15 degrees"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_01B",
                            "content": [
                                {"type": "text", "text": "clock unavailable"},
                                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                            ],
                            "is_error": True,
                        },
                        {"type": "text", "text": "Also, is it raining?"},
                    ],
                },
            ],
        )
    )
    assert req.tools == [
        Tool(
            name="get_weather",
            description="Get the current weather in a given location",
            parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        ),
        Tool(name="get_time", parameters={"type": "object"}, strict=True),
    ]
    assert req.tool_choice == "auto" and req.parallel_tool_calls is None
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "tool", "user"]
    assistant = req.messages[1]
    assert assistant.content == [TextPart(text="Let me check.")]
    assert assistant.tool_calls == [
        ToolCall(id="toolu_01A", name="get_weather", arguments='{"location":"Paris"}'),
        ToolCall(id="toolu_01B", name="get_time", arguments="{}"),
    ]
    assert req.messages[2] == Message(role="tool", tool_call_id="toolu_01A", content=[TextPart(text="15 degrees")])
    assert req.messages[3] == Message(
        role="tool",
        tool_call_id="toolu_01B",
        content=[TextPart(text="clock unavailable"), ImagePart(data=PNG_B64, media_type="image/png")],
        is_error=True,
    )
    assert req.messages[4] == Message(role="user", content=[TextPart(text="Also, is it raining?")])


def test_tool_results_go_before_other_user_content() -> None:
    req = parse_request(
        body(
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "note first"},
                        {"type": "tool_result", "tool_use_id": "t1"},
                    ],
                },
            ]
        )
    )
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    assert req.messages[1].content == [] and req.messages[1].tool_calls[0].arguments == '{"a":[1,2]}'
    assert req.messages[2] == Message(role="tool", tool_call_id="t1", content=[])
    assert req.messages[3].text() == "note first"


def test_final_assistant_prefill_kept_and_empty_one_dropped() -> None:
    req = parse_request(body(messages=[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The answer is ("}]))
    assert req.messages[-1] == Message(role="assistant", content=[TextPart(text="The answer is (")])
    req = parse_request(body(messages=[{"role": "user", "content": "Q"}, {"role": "assistant", "content": ""}]))
    assert [m.role for m in req.messages] == ["user"]


@pytest.mark.parametrize(
    ("choice", "canonical", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather"}, {"name": "get_weather"}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", None),
        ({"type": "tool", "name": "f", "disable_parallel_tool_use": True}, {"name": "f"}, False),
    ],
)
def test_tool_choice(choice: dict[str, Any], canonical: Any, parallel: bool | None) -> None:
    req = parse_request(body(tools=[{"name": "get_weather", "input_schema": {"type": "object"}}], tool_choice=choice))
    assert req.tool_choice == canonical
    assert req.parallel_tool_calls is parallel


def test_structured_output_format() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    req = parse_request(body(output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"}))
    assert req.response_format == ResponseFormat(type="json_schema", name="response", schema=schema)
    req = parse_request(body(output_format={"type": "json_schema", "schema": schema}))
    assert req.response_format is not None and req.response_format.schema == schema
    assert parse_request(body(output_config={"effort": "high"})).response_format is None


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
