"""Anthropic Messages API inbound dialect: request parsing and validation (wire examples from the reference)."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api.anthropic_dialect import (
    parse_request,
)
from sluice.schema import (
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

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


@pytest.mark.parametrize("fields", [{}, {"stream": True}, {"system": "Be brief."},
                                    {"system": [{"type": "text", "text": "Be brief."}], "stream": False}])
def test_a_minimal_request_parses_as_the_full_path_does(fields: dict) -> None:
    """Bodies of only model, max_tokens, messages, system and stream take a short path; an
    optional field sent as null takes the full one. Both must give the same request."""
    minimal = {**body(), **fields}
    assert parse_request(minimal) == parse_request({**minimal, "temperature": None, "tools": None})


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


