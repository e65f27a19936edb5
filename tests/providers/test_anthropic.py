"""Anthropic adapter: wire examples written from the Messages API reference; no network."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.anthropic import ADAPTER, AnthropicAdapter
from sluice.providers.base import SSEEvent, Upstream
from sluice.schema import (
    ChatChunk,
    ChatRequest,
    EmbeddingRequest,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)


def up(**kw) -> Upstream:
    base = {"provider": "anthropic", "kind": "anthropic", "base_url": "https://api.anthropic.com",
            "model": "claude-sonnet-4-5", "api_key": "sk-ant-secret"}
    base.update(kw)
    return Upstream(**base)


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text=text)])


def assistant(text: str = "", calls: list[ToolCall] | None = None) -> Message:
    return Message(role="assistant", content=[TextPart(text=text)] if text else [], tool_calls=calls)


def body_for(req: ChatRequest, upstream: Upstream | None = None) -> dict:
    return ADAPTER.chat_request(req, upstream or up()).body


# --------------------------------------------------------------------------- request


def test_adapter_identity():
    assert isinstance(ADAPTER, AnthropicAdapter)
    assert ADAPTER.kind == "anthropic"


def test_url_headers_and_minimal_body():
    wire = ADAPTER.chat_request(ChatRequest(model="alias", messages=[user("Hello")]), up(headers={"x-extra": "1"}))
    assert wire.method == "POST"
    assert wire.url == "https://api.anthropic.com/v1/messages"
    assert wire.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-secret", "x-extra": "1"}
    assert wire.body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 16384,
    }
    orjson.dumps(wire.body)  # JSON-serialisable


@pytest.mark.parametrize(
    "base_url, expected",
    [
        ("https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"),
        ("https://proxy.example/anthropic/v1/", "https://proxy.example/anthropic/v1/messages"),
        ("http://localhost:9000/", "http://localhost:9000/v1/messages"),
        ("", "https://api.anthropic.com/v1/messages"),
    ],
)
def test_base_url_forms(base_url, expected):
    assert ADAPTER.chat_request(ChatRequest(model="m", messages=[user("x")]), up(base_url=base_url)).url == expected


def test_api_version_override():
    wire = ADAPTER.chat_request(ChatRequest(model="m", messages=[user("x")]), up(api_version="2024-01-01"))
    assert wire.headers["anthropic-version"] == "2024-01-01"


def test_system_single_is_string_and_many_are_blocks():
    one = body_for(ChatRequest(model="m", messages=[Message(role="system", content=[TextPart(text="Be brief.")]),
                                                    user("Hi")]))
    assert one["system"] == "Be brief."
    many = body_for(ChatRequest(model="m", messages=[
        Message(role="system", content=[TextPart(text="A")]),
        user("Hi"),
        Message(role="system", content=[TextPart(text="B")]),
    ]))
    assert many["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert all(m["role"] != "system" for m in many["messages"])


def test_multi_turn_merges_consecutive_roles():
    body = body_for(ChatRequest(model="m", messages=[
        user("one"), user("two"), assistant("three"), assistant("four"), user("five"),
    ]))
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_assistant_first_gets_opening_user_turn():
    body = body_for(ChatRequest(model="m", messages=[assistant("Hi! How can I help?"), user("Weather?")]))
    assert body["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "."}]}
    assert body["messages"][1]["role"] == "assistant"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_system_only_request_still_has_a_user_turn():
    body = body_for(ChatRequest(model="m", messages=[Message(role="system", content=[TextPart(text="S")])]))
    assert body["system"] == "S"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "."}]}]


def test_empty_text_parts_and_empty_turns_dropped_and_prefill_trimmed():
    body = body_for(ChatRequest(model="m", messages=[
        user("q"), assistant(""), Message(role="user", content=[TextPart(text=""), TextPart(text="again")]),
        assistant("The answer is "),
    ]))
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "q"}, {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]},
    ]


def test_images_base64_and_url():
    msg = Message(role="user", content=[
        TextPart(text="Compare"),
        ImagePart.from_url("data:image/jpeg;base64,/9j/4AAQ"),
        ImagePart(url="https://example.com/cat.png"),
    ])
    content = body_for(ChatRequest(model="m", messages=[msg]))["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


WEATHER = Tool(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_tools_definitions():
    body = body_for(ChatRequest(model="m", messages=[user("x")], tools=[
        WEATHER,
        Tool(name="now"),
        Tool(name="loose", parameters={"properties": {"a": {"type": "integer"}}}, strict=True),
    ]))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Current weather", "input_schema": WEATHER.parameters},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "loose", "input_schema": {"properties": {"a": {"type": "integer"}}, "type": "object"},
         "strict": True},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    "choice, parallel, expected",
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"name": "get_weather"}, None, {"type": "tool", "name": "get_weather"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice_variants(choice, parallel, expected):
    req = ChatRequest(model="m", messages=[user("x")], tools=[WEATHER], tool_choice=choice,
                      parallel_tool_calls=parallel)
    assert body_for(req)["tool_choice"] == expected


def test_bad_tool_choice_is_invalid_request():
    with pytest.raises(GatewayError) as exc:
        body_for(ChatRequest(model="m", messages=[user("x")], tools=[WEATHER], tool_choice={"oops": 1}))
    assert exc.value.kind == "invalid_request" and exc.value.status == 400


def test_tool_calls_and_results_including_error():
    calls = [ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
             ToolCall(id="toolu_2", name="now", arguments="")]
    body = body_for(ChatRequest(model="m", messages=[
        user("Weather in Paris and the time?"),
        assistant("Checking.", calls),
        Message(role="tool", tool_call_id="toolu_1", content=[TextPart(text="18C, sunny")]),
        Message(role="tool", tool_call_id="toolu_2", content=[TextPart(text="clock broken")], is_error=True),
        user("Thanks"),
    ]))
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "clock broken", "is_error": True},
        {"type": "text", "text": "Thanks"},
    ]}
    assert len(body["messages"]) == 3


def test_tool_result_moved_before_text_and_image_result():
    body = body_for(ChatRequest(model="m", messages=[
        user("q"),
        assistant("", [ToolCall(id="t1", name="shot", arguments="{}")]),
        user("note first"),
        Message(role="tool", tool_call_id="t1", content=[TextPart(text="here"), ImagePart(data="AAA", media_type="image/png")]),
    ]))
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "here"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
        ]},
        {"type": "text", "text": "note first"},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_invalid_tool_arguments_rejected(arguments):
    req = ChatRequest(model="m", messages=[user("q"), assistant("", [ToolCall(id="t", name="f", arguments=arguments)])])
    with pytest.raises(GatewayError) as exc:
        body_for(req)
    assert exc.value.kind == "invalid_request"
    assert exc.value.status == 400


@pytest.mark.parametrize(
    "model, expected",
    [
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-3-7-sonnet-20250219", 16384),
        ("claude-opus-4-1-20250805", 16384),
        ("claude-haiku-4-5", 16384),
        ("some-unknown-model", 4096),
    ],
)
def test_max_tokens_default_table(model, expected):
    assert body_for(ChatRequest(model="m", messages=[user("x")]), up(model=model))["max_tokens"] == expected


def test_max_tokens_precedence():
    req = ChatRequest(model="m", messages=[user("x")])
    assert body_for(req, up(params={"max_tokens": 1000}))["max_tokens"] == 1000
    req2 = ChatRequest(model="m", messages=[user("x")], max_tokens=55)
    assert body_for(req2, up(params={"max_tokens": 1000}))["max_tokens"] == 55


def test_max_tokens_default_leaves_room_for_thinking_budget():
    req = ChatRequest(model="m", messages=[user("x")], extra={"thinking": {"type": "enabled", "budget_tokens": 10000}})
    body = body_for(req, up(model="claude-3-7-sonnet-20250219"))
    assert body["max_tokens"] == 16384 + 10000
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 10000}


def test_sampling_stop_user_stream_and_dropped_params():
    req = ChatRequest(model="m", messages=[user("x")], temperature=0.2, top_p=0.9, top_k=40, stop=["END", "###"],
                      user="u-123", stream=True, seed=7, presence_penalty=0.5, frequency_penalty=0.1, n=1)
    body = body_for(req)
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["top_k"] == 40
    assert body["stop_sequences"] == ["END", "###"]
    assert body["metadata"] == {"user_id": "u-123"}
    assert body["stream"] is True
    for key in ("seed", "presence_penalty", "frequency_penalty", "n", "stop", "user"):
        assert key not in body


def test_non_streaming_has_no_stream_key():
    assert "stream" not in body_for(ChatRequest(model="m", messages=[user("x")]))


def test_n_greater_than_one_rejected():
    with pytest.raises(GatewayError) as exc:
        body_for(ChatRequest(model="m", messages=[user("x")], n=2))
    assert exc.value.kind == "invalid_request" and exc.value.param == "n"


def test_params_are_defaults_and_extra_wins_last():
    upstream = up(params={"temperature": 0.7, "top_k": 5, "stop": "STOP", "service_tier": "auto", "seed": 1})
    req = ChatRequest(model="m", messages=[user("x")], temperature=0.1,
                      extra={"top_k": 9, "metadata": {"user_id": "from-extra"}, "service_tier": "standard_only"},
                      user="u")
    body = body_for(req, upstream)
    assert body["temperature"] == 0.1  # set by the request: param ignored
    assert body["stop_sequences"] == ["STOP"]  # unset by the request: param applies, renamed
    assert body["top_k"] == 9  # extra merged last
    assert body["service_tier"] == "standard_only"
    assert body["metadata"] == {"user_id": "from-extra"}
    assert "seed" not in body


def test_extra_for_another_dialect_is_not_sent():
    req = ChatRequest(model="m", messages=[user("x")], extra={"logit_bias": {"50256": -100}}, extra_dialect="openai")
    assert "logit_bias" not in body_for(req)
    req.extra_dialect = "anthropic"
    assert body_for(req)["logit_bias"] == {"50256": -100}


def test_response_format_json_schema_uses_structured_outputs():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    req = ChatRequest(model="m", messages=[user("x")],
                      response_format=ResponseFormat(type="json_schema", name="out", schema=schema))
    body = body_for(req)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in body
    # extra adds effort without losing the format
    req.extra = {"output_config": {"effort": "low"}}
    assert body_for(req)["output_config"] == {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}


def test_response_format_emulated_when_structured_outputs_off_and_for_json_object():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = ChatRequest(model="m", messages=[Message(role="system", content=[TextPart(text="S")]), user("x")],
                      response_format=ResponseFormat(type="json_schema", schema=schema))
    body = body_for(req, up(options={"structured_outputs": False}))
    assert "output_config" not in body
    assert body["system"][0] == {"type": "text", "text": "S"}
    assert '{"type":"object","properties":{"a":{"type":"string"}}}' in body["system"][1]["text"]
    obj = body_for(ChatRequest(model="m", messages=[user("x")], response_format=ResponseFormat(type="json_object")))
    assert "JSON object" in obj["system"]
    assert "output_config" not in obj


# --------------------------------------------------------------------------- response

REQ = ChatRequest(model="alias", messages=[user("x")])


def test_response_text():
    payload = {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }
    resp = ADAPTER.chat_response(payload, REQ, up())
    assert resp.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert resp.model == "claude-sonnet-4-5-20250929"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.text() == "Hi! My name is Claude."
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert resp.usage == Usage(input_tokens=2095, output_tokens=503)


def test_response_tool_use_skips_thinking():
    payload = {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"city": "San Francisco", "unit": "celsius"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 30, "output_tokens_details": {"thinking_tokens": 12}},
    }
    resp = ADAPTER.chat_response(payload, REQ, up())
    msg = resp.choices[0].message
    assert msg.text() == "Let me check."
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "San Francisco", "unit": "celsius"}
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.usage.reasoning_tokens == 12


@pytest.mark.parametrize(
    "stop_reason, finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_stop_reasons(stop_reason, finish):
    payload = {"id": "m", "model": "c", "content": [], "stop_reason": stop_reason, "usage": {}}
    assert ADAPTER.chat_response(payload, REQ, up()).choices[0].finish_reason == finish


def test_stop_sequence_kept():
    payload = {"id": "m", "model": "c", "content": [{"type": "text", "text": "a"}],
               "stop_reason": "stop_sequence", "stop_sequence": "END", "usage": {}}
    choice = ADAPTER.chat_response(payload, REQ, up()).choices[0]
    assert choice.finish_reason == "stop" and choice.stop_sequence == "END"


def test_usage_with_cache():
    payload = {"id": "m", "model": "c", "content": [], "stop_reason": "end_turn",
               "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000,
                         "output_tokens": 70}}
    usage = ADAPTER.chat_response(payload, REQ, up()).usage
    assert usage == Usage(input_tokens=3050, output_tokens=70, cached_tokens=2000, cache_write_tokens=1000)
    assert usage.total_tokens == 3120


def test_response_not_an_object():
    with pytest.raises(GatewayError) as exc:
        ADAPTER.chat_response([1, 2], REQ, up())
    assert exc.value.status == 502


# --------------------------------------------------------------------------- stream


def sse(event: str, data: dict) -> SSEEvent:
    return SSEEvent(event=event, data=orjson.dumps(data).decode())


RECORDED_STREAM = [
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100,
                  "output_tokens": 2}}}),
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "thinking_delta", "thinking": "I should call the tool."}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse("content_block_start", {"type": "content_block_start", "index": 1,
                                "content_block": {"type": "text", "text": ""}}),
    sse("ping", {"type": "ping"}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                "delta": {"type": "text_delta", "text": "Okay, let's check"}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                "delta": {"type": "text_delta", "text": " the weather."}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                "delta": {"type": "input_json_delta", "partial_json": ""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                "delta": {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                "delta": {"type": "input_json_delta", "partial_json": ", \"unit\": \"fahrenheit\"}"}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    sse("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
        "type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 3}),
    sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"output_tokens": 89, "output_tokens_details": {"thinking_tokens": 9}}}),
    sse("message_stop", {"type": "message_stop"}),
]


def run(events: list[SSEEvent]) -> list[ChatChunk]:
    decoder = ADAPTER.stream_decoder(REQ, up())
    chunks: list[ChatChunk] = []
    for event in events:
        chunks.extend(decoder.feed(event))
    chunks.extend(decoder.finish())
    return chunks


def test_recorded_stream_text_tool_call_and_usage():
    chunks = run(RECORDED_STREAM)
    first = chunks[0]
    assert first.role == "assistant"
    assert first.id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert first.model == "claude-sonnet-4-5-20250929"
    assert "".join(c.text for c in chunks if c.text) == "Okay, let's check the weather."

    tool_deltas = [d for c in chunks if c.tool_calls for d in c.tool_calls]
    opening = [d for d in tool_deltas if d.id]
    assert [(d.index, d.id, d.name) for d in opening] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"), (1, "toolu_02", "get_time")]
    args0 = "".join(d.arguments for d in tool_deltas if d.index == 0)
    assert orjson.loads(args0) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    # three non-empty pieces, the empty partial_json is not forwarded
    assert len([d for d in tool_deltas if d.index == 0 and d.arguments]) == 3
    assert "".join(d.arguments for d in tool_deltas if d.index == 1) == "{}"

    finals = [c for c in chunks if c.finish_reason]
    assert len(finals) == 1 and finals[0].finish_reason == "tool_calls"
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    last = chunks[-1]
    assert last is usage_chunks[0]
    assert last.text is None and last.tool_calls is None and last.finish_reason is None
    assert last.usage == Usage(input_tokens=572, output_tokens=89, cached_tokens=100, reasoning_tokens=9)


def test_stream_stop_sequence_and_usage_on_truncated_stream():
    events = [
        sse("message_start", {"type": "message_start", "message": {
            "id": "msg_x", "model": "claude-3-5-haiku-20241022", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": "1, 2, 3"}}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "4"},
                              "usage": {"output_tokens": 7}}),
    ]
    chunks = run(events)  # no message_stop: finish() still owes usage
    final = [c for c in chunks if c.finish_reason][0]
    assert final.finish_reason == "stop" and final.stop_sequence == "4"
    assert chunks[-1].usage == Usage(input_tokens=12, output_tokens=7)


def test_stream_error_event_raises_overloaded():
    decoder = ADAPTER.stream_decoder(REQ, up())
    list(decoder.feed(RECORDED_STREAM[0]))
    with pytest.raises(GatewayError) as exc:
        list(decoder.feed(sse("error", {"type": "error",
                                        "error": {"type": "overloaded_error", "message": "Overloaded"}})))
    assert exc.value.kind == "overloaded"
    assert exc.value.status == 529
    assert exc.value.retryable
    assert exc.value.message == "Overloaded"


def test_stream_error_event_other_types():
    decoder = ADAPTER.stream_decoder(REQ, up())
    with pytest.raises(GatewayError) as exc:
        list(decoder.feed(sse("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})))
    assert (exc.value.kind, exc.value.status) == ("server_error", 500)


def test_stream_malformed_event():
    decoder = ADAPTER.stream_decoder(REQ, up())
    with pytest.raises(GatewayError) as exc:
        list(decoder.feed(SSEEvent(event="content_block_delta", data="{not json")))
    assert exc.value.status == 502


# --------------------------------------------------------------------------- errors


def err_body(err_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message},
                         "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


@pytest.mark.parametrize(
    "status, err_type, kind",
    [
        (400, "invalid_request_error", "invalid_request"),
        (401, "authentication_error", "authentication"),
        (402, "billing_error", "permission"),
        (403, "permission_error", "permission"),
        (404, "not_found_error", "not_found"),
        (413, "request_too_large", "payload_too_large"),
        (429, "rate_limit_error", "rate_limit"),
        (500, "api_error", "server_error"),
        (504, "timeout_error", "timeout"),
        (529, "overloaded_error", "overloaded"),
    ],
)
def test_error_mapping(status, err_type, kind):
    err = ADAPTER.error(status, err_body(err_type, "details here"), {})
    assert err.kind == kind
    assert err.status == status
    assert err.message == "details here"
    assert err.code == err_type
    assert err.retry_after is None


def test_rate_limit_keeps_retry_after():
    err = ADAPTER.error(429, err_body("rate_limit_error", "Number of request tokens has exceeded your limit"),
                        {"Retry-After": "17", "anthropic-ratelimit-requests-remaining": "0"})
    assert (err.kind, err.status, err.retry_after) == ("rate_limit", 429, 17.0)
    assert err.retryable


def test_overloaded_retry_after_lowercase_header():
    err = ADAPTER.error(529, err_body("overloaded_error", "Overloaded"), {"retry-after": "3"})
    assert err.retry_after == 3.0 and err.kind == "overloaded"


def test_spend_limit_code_from_details():
    body = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "spend limit",
                                                    "details": {"error_code": "enforced_spend_limit_reached"}}})
    err = ADAPTER.error(429, body, {})
    assert err.kind == "rate_limit" and err.code == "enforced_spend_limit_reached"


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length "
        "or `max_tokens` and try again",
    ],
)
def test_context_window_detected(message):
    err = ADAPTER.error(400, err_body("invalid_request_error", message), {})
    assert err.kind == "context_window_exceeded"
    assert err.status == 400
    assert not err.retryable


@pytest.mark.parametrize(
    "status, body, kind, message_part",
    [
        (502, b"<html><body>Bad gateway</body></html>", "server_error", "HTTP 502"),
        (413, b"", "payload_too_large", "HTTP 413"),
        (503, b"upstream connect error", "overloaded", "upstream connect error"),
        (418, b"{\"message\": \"teapot\"}", "invalid_request", "teapot"),
    ],
)
def test_non_json_and_odd_bodies(status, body, kind, message_part):
    err = ADAPTER.error(status, body, {})
    assert err.kind == kind
    assert err.status == status
    assert message_part in err.message
    assert "<html" not in err.message


def test_error_never_contains_api_key():
    err = ADAPTER.error(401, err_body("authentication_error", "invalid x-api-key"), {})
    assert err.kind == "authentication" and err.status == 401
    assert "sk-ant-secret" not in err.message


# --------------------------------------------------------------------------- embeddings


def test_embeddings_unsupported():
    req = EmbeddingRequest(model="m", input=["a"])
    for call in (lambda: ADAPTER.embeddings_request(req, up()), lambda: ADAPTER.embeddings_response({}, req, up())):
        with pytest.raises(GatewayError) as exc:
            call()
        assert exc.value.kind == "invalid_request"
        assert "embeddings" in exc.value.message
