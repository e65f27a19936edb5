"""Gemini adapter: wire examples written from the v1beta REST reference and python-genai types."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.base import SSEEvent, Upstream
from sluice.providers.gemini import (
    ADAPTER,
    convert_schema,
    guess_image_type,
    id_with_signature,
    signature_from_id,
)
from sluice.schema import (
    ChatRequest,
    EmbeddingRequest,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

KEY = "AIzaSyTestKey0000000000000000000000000"


def up(**kw) -> Upstream:
    base = dict(provider="google", kind="gemini", base_url="", model="gemini-2.5-flash", api_key=KEY)
    base.update(kw)
    return Upstream(**base)


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text=text)])


def chat(messages: list[Message], **kw) -> ChatRequest:
    return ChatRequest(model="my-gemini", messages=messages, **kw)


def body_of(req: ChatRequest, upstream: Upstream | None = None) -> dict:
    return ADAPTER.chat_request(req, upstream or up()).body


# --------------------------------------------------------------------------- addressing


def test_urls_and_auth_header():
    wire = ADAPTER.chat_request(chat([user("hi")]), up())
    assert wire.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert wire.headers == {"x-goog-api-key": KEY}
    assert KEY not in wire.url

    stream = ADAPTER.chat_request(chat([user("hi")], stream=True), up(base_url="https://proxy.example/v1beta/"))
    assert stream.url == "https://proxy.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "stream" not in stream.body


def test_model_name_with_prefix_and_extra_headers():
    wire = ADAPTER.chat_request(chat([user("hi")]), up(model="models/gemini-2.0-flash", headers={"x-a": "1"}))
    assert wire.url.endswith("/v1beta/models/gemini-2.0-flash:generateContent")
    assert wire.headers["x-a"] == "1"


# --------------------------------------------------------------------------- contents


def test_system_roles_and_merging():
    body = body_of(chat([
        Message(role="system", content=[TextPart(text="Be brief.")]),
        Message(role="system", content=[TextPart(text="Answer in French.")]),
        user("Hello"),
        user("Are you there?"),
        Message(role="assistant", content=[TextPart(text="Oui.")]),
        user("Merci"),
    ]))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hello"}, {"text": "Are you there?"}]},
        {"role": "model", "parts": [{"text": "Oui."}]},
        {"role": "user", "parts": [{"text": "Merci"}]},
    ]
    assert "generationConfig" not in body and "tools" not in body


def test_images_inline_and_by_uri():
    msg = Message(role="user", content=[
        TextPart(text="What is this?"),
        ImagePart.from_url("data:image/png;base64,iVBORw0KGgo="),
        ImagePart(url="https://example.com/cat.webp?size=large"),
        ImagePart(url="https://generativelanguage.googleapis.com/v1beta/files/abc123"),
    ])
    parts = body_of(chat([msg]))["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"}}
    assert parts[3]["fileData"]["mimeType"] == "image/jpeg"
    assert guess_image_type("https://x/y/photo.JPG#frag") == "image/jpeg"
    assert guess_image_type("https://x/a.png") == "image/png"


def test_tool_call_and_result_round_trip():
    body = body_of(chat([
        user("Weather in Paris and Rome?"),
        Message(role="assistant", content=[TextPart(text="Checking.")], tool_calls=[
            ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="call_2", name="get_weather", arguments='{"city": "Rome"}'),
        ]),
        Message(role="tool", tool_call_id="call_1", content=[TextPart(text='{"temp_c": 21}')]),
        Message(role="tool", tool_call_id="call_2", content=[TextPart(text="sunny, 25C")]),
        Message(role="tool", tool_call_id="call_2", is_error=True, content=[TextPart(text="timeout")]),
    ]))
    assert body["contents"][1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny, 25C"}}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "timeout"}}},
    ]}
    assert len(body["contents"]) == 3


def test_invalid_tool_arguments_rejected():
    with pytest.raises(GatewayError) as e:
        body_of(chat([
            user("x"),
            Message(role="assistant", tool_calls=[ToolCall(id="c", name="f", arguments="{not json")]),
        ]))
    assert e.value.kind == "invalid_request" and e.value.status == 400


def test_unknown_tool_result_rejected():
    with pytest.raises(GatewayError) as e:
        body_of(chat([user("x"), Message(role="tool", tool_call_id="nope", content=[TextPart(text="1")])]))
    assert e.value.kind == "invalid_request"


def test_thought_signature_travels_in_the_tool_call_id():
    sig = "CiQB0e2Kb+/x9w=="
    call_id = id_with_signature("call_abc", sig)
    assert call_id.startswith("call_abc__ts__") and "+" not in call_id and "/" not in call_id
    assert signature_from_id(call_id) == sig
    assert signature_from_id("call_abc") is None

    body = body_of(chat([
        user("x"),
        Message(role="assistant", tool_calls=[ToolCall(id=call_id, name="f", arguments="{}")]),
        Message(role="tool", tool_call_id=call_id, content=[TextPart(text="ok")]),
    ]))
    assert body["contents"][1]["parts"][0] == {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": sig}
    assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "f"


def test_missing_signature_placeholder_is_opt_in():
    msgs = [user("x"), Message(role="assistant", tool_calls=[
        ToolCall(id="toolu_1", name="f", arguments="{}"), ToolCall(id="toolu_2", name="f", arguments="{}"),
    ])]
    plain = body_of(chat(msgs))["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in plain)
    opted = body_of(chat(msgs), up(options={"missing_thought_signature": "skip_thought_signature_validator"}))
    parts = opted["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]


# --------------------------------------------------------------------------- tools and schemas


def test_tools_and_tool_choice():
    tools = [
        Tool(name="get_weather", description="Weather for a city", parameters={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "title": "Args",
            "properties": {"city": {"type": "string", "description": "City name", "default": "Paris"}},
            "required": ["city", "ghost"],
            "additionalProperties": False,
        }, strict=True),
        Tool(name="now", parameters={"type": "object", "properties": {}}),
    ]
    body = body_of(chat([user("x")], tools=tools, tool_choice="required"))
    assert body["tools"] == [{"functionDeclarations": [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "OBJECT",
                "properties": {"city": {"type": "STRING", "description": "City name"}},
                "required": ["city"],
            },
        },
        {"name": "now"},
    ]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body_of(chat([user("x")], tools=tools, tool_choice="auto"))["toolConfig"] == {
        "functionCallingConfig": {"mode": "AUTO"}}
    assert body_of(chat([user("x")], tools=tools, tool_choice="none"))["toolConfig"] == {
        "functionCallingConfig": {"mode": "NONE"}}
    named = body_of(chat([user("x")], tools=tools, tool_choice={"name": "now"}))
    assert named["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}}
    openai_choice = {"type": "function", "function": {"name": "now"}}
    openai_shape = body_of(chat([user("x")], tools=tools, tool_choice=openai_choice))
    assert openai_shape["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == ["now"]


def test_schema_refs_and_nullable_unions():
    # Shape of a pydantic v2 model_json_schema() with a nested model and Optional fields.
    schema = {
        "$defs": {
            "Address": {
                "title": "Address",
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                "required": ["street"],
            },
            "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
        },
        "title": "Person",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "examples": ["Ada"]},
            "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}], "default": None},
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
            "color": {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}]},
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "kind": {"const": "person"},
            "size": {"type": "integer", "enum": [1, 2, 3]},
            "when": {"type": "string", "format": "date-time"},
        },
        "required": ["name", "home"],
    }
    out = convert_schema(schema)
    assert out["type"] == "OBJECT" and "title" not in out and "$defs" not in out
    props = out["properties"]
    assert props["name"] == {"type": "STRING", "minLength": 1}
    assert props["age"] == {"type": "INTEGER", "minimum": 0, "nullable": True}
    assert props["home"] == {
        "type": "OBJECT",
        "description": "Where they live",
        "properties": {"street": {"type": "STRING"}, "zip": {"type": "STRING", "nullable": True}},
        "required": ["street"],
    }
    assert props["tags"] == {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": 1, "maxItems": 5}
    assert props["color"] == {"type": "STRING", "enum": ["red", "green"], "nullable": True}
    assert props["id"] == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
    assert props["kind"] == {"type": "STRING", "enum": ["person"]}
    assert props["size"] == {"type": "INTEGER", "enum": ["1", "2", "3"]}
    assert props["when"] == {"type": "STRING", "format": "date-time"}
    assert out["required"] == ["name", "home"]
    assert "propertyOrdering" not in out


def test_schema_recursion_is_cut_and_multi_type_becomes_any_of():
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        }}},
        "$ref": "#/$defs/Node",
    }
    out = convert_schema(schema)
    assert out["properties"]["value"] == {"type": "INTEGER"}
    assert out["properties"]["children"]["items"]["type"] == "OBJECT"
    assert "properties" not in out["properties"]["children"]["items"]
    assert convert_schema({"type": ["string", "number", "null"]}) == {
        "nullable": True, "anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}
    with pytest.raises(GatewayError):
        convert_schema({"$ref": "https://example.com/schema.json"})


def test_all_of_is_merged():
    out = convert_schema({"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "boolean"}}},
    ]})
    assert out == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
                   "required": ["a"]}


# --------------------------------------------------------------------------- generation config


def test_generation_config_and_deployment_defaults():
    req = chat([user("x")], temperature=0.2, top_p=0.9, top_k=40, max_tokens=256, stop=["END"], n=2, seed=7,
               presence_penalty=0.1, frequency_penalty=0.3, user="u-1", parallel_tool_calls=False)
    upstream = up(params={"temperature": 1.0, "max_tokens": 1000, "thinkingConfig": {"thinkingBudget": 0},
                          "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})
    body = body_of(req, upstream)
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["END"],
        "candidateCount": 2, "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.3,
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert "user" not in body and "parallel_tool_calls" not in body

    defaults = body_of(chat([user("x")]), up(params={"temperature": 1.0, "max_tokens": 1000, "stop": "##"}))
    assert defaults["generationConfig"] == {"temperature": 1.0, "maxOutputTokens": 1000, "stopSequences": ["##"]}


def test_json_modes():
    obj = body_of(chat([user("x")], response_format=ResponseFormat(type="json_object")))
    assert obj["generationConfig"] == {"responseMimeType": "application/json"}

    fmt = ResponseFormat(type="json_schema", name="person", strict=True, schema={
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    })
    cfg = body_of(chat([user("x")], response_format=fmt))["generationConfig"]
    assert cfg == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER"}},
            "propertyOrdering": ["name", "age"],
            "required": ["name", "age"],
        },
    }
    assert "generationConfig" not in body_of(chat([user("x")], response_format=ResponseFormat(type="text")))


def test_extra_is_merged_last_and_filtered_by_dialect():
    extra = {"safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}],
             "generationConfig": {"responseModalities": ["TEXT"]}}
    body = body_of(chat([user("x")], temperature=0.5, extra=extra))
    assert body["safetySettings"] == extra["safetySettings"]
    assert body["generationConfig"] == {"temperature": 0.5, "responseModalities": ["TEXT"]}
    other = body_of(chat([user("x")], extra={"logit_bias": {"1": 2}}, extra_dialect="openai"))
    assert "logit_bias" not in other


# --------------------------------------------------------------------------- responses


def test_text_response_with_usage():
    payload = {
        "candidates": [{
            "content": {"parts": [
                {"text": "Let me think", "thought": True},
                {"text": "Hello"}, {"text": ", world"},
            ], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 117,
                          "thoughtsTokenCount": 100, "cachedContentTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abcRESP",
    }
    resp = ADAPTER.chat_response(payload, chat([user("x")]), up())
    assert resp.id == "abcRESP" and resp.model == "gemini-2.5-flash"
    assert resp.choices[0].message.text() == "Hello, world"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.input_tokens == 12
    assert resp.usage.output_tokens == 105
    assert resp.usage.reasoning_tokens == 100
    assert resp.usage.cached_tokens == 8


def test_function_call_response():
    payload = {"candidates": [{
        "content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"functionCall": {"name": "get_time", "args": {}}},
        ]},
        "finishReason": "STOP",
    }], "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 10}}
    resp = ADAPTER.chat_response(payload, chat([user("x")]), up())
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == []
    first, second = choice.message.tool_calls
    assert first.name == "get_weather" and orjson.loads(first.arguments) == {"city": "Paris"}
    assert first.id.startswith("call_") and signature_from_id(first.id) == "c2lnbmF0dXJl"
    assert second.arguments == "{}" and signature_from_id(second.id) is None and first.id != second.id
    assert resp.id.startswith("gemini-") and resp.model == "gemini-2.5-flash"
    with_id = {"candidates": [{"content": {"parts": [{"functionCall": {"id": "fc-9", "name": "f", "args": {}}}]},
                               "finishReason": "STOP"}]}
    assert ADAPTER.chat_response(with_id, chat([user("x")]), up()).choices[0].message.tool_calls[0].id == "fc-9"


@pytest.mark.parametrize("reason, expected", [
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "stop"),
    ("OTHER", "stop"),
])
def test_finish_reasons(reason, expected):
    payload = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert ADAPTER.chat_response(payload, chat([user("x")]), up()).choices[0].finish_reason == expected


def test_multiple_candidates_keep_their_index():
    payload = {"candidates": [
        {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
    ]}
    choices = ADAPTER.chat_response(payload, chat([user("x")], n=2), up()).choices
    assert [(c.index, c.message.text(), c.finish_reason) for c in choices] == [(0, "a", "stop"), (1, "b", "length")]


def test_blocked_prompt_is_content_policy_error():
    payload = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_response(payload, chat([user("x")]), up())
    assert e.value.kind == "content_policy" and e.value.status == 400 and e.value.code == "SAFETY"
    assert not e.value.retryable


# --------------------------------------------------------------------------- streaming

RECORDED_STREAM = [
    {"candidates": [{"content": {"parts": [{"text": "Let me check", "thought": True}], "role": "model"},
                     "index": 0}],
     "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20},
     "modelVersion": "gemini-2.5-flash", "responseId": "stream-1"},
    {"candidates": [{"content": {"parts": [{"text": "I'll look"}], "role": "model"}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 3, "totalTokenCount": 23},
     "modelVersion": "gemini-2.5-flash", "responseId": "stream-1"},
    {"candidates": [{"content": {"parts": [{"text": " that up."}], "role": "model"}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 6, "totalTokenCount": 26},
     "modelVersion": "gemini-2.5-flash", "responseId": "stream-1"},
    {"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "c"}},
         "thoughtSignature": "CiQB/sig+w=="},
        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
    ], "role": "model"}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 25, "totalTokenCount": 85,
                       "thoughtsTokenCount": 40, "cachedContentTokenCount": 4},
     "modelVersion": "gemini-2.5-flash", "responseId": "stream-1"},
]


def run_stream(events: list[dict]):
    decoder = ADAPTER.stream_decoder(chat([user("x")], stream=True), up())
    chunks = []
    for e in events:
        chunks.extend(decoder.feed(SSEEvent(data=orjson.dumps(e).decode())))
    chunks.extend(decoder.finish())
    return chunks


def test_stream_text_function_calls_and_usage():
    chunks = run_stream(RECORDED_STREAM)
    assert chunks[0].role == "assistant" and chunks[0].id == "stream-1" and chunks[0].model == "gemini-2.5-flash"
    assert "".join(c.text or "" for c in chunks) == "I'll look that up."
    calls = [d for c in chunks for d in (c.tool_calls or ())]
    assert [(d.index, d.name) for d in calls] == [(0, "get_weather"), (1, "get_time")]
    assert orjson.loads(calls[0].arguments) == {"city": "Paris", "unit": "c"}
    assert signature_from_id(calls[0].id) == "CiQB/sig+w=="
    assert calls[1].id and calls[1].id != calls[0].id
    finishes = [c.finish_reason for c in chunks if c.finish_reason]
    assert finishes == ["tool_calls"]
    last = chunks[-1]
    assert last.usage is not None and last.text is None and last.role is None
    assert (last.usage.input_tokens, last.usage.output_tokens, last.usage.reasoning_tokens,
            last.usage.cached_tokens) == (20, 65, 40, 4)
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_stream_plain_text_finish_and_empty_events():
    decoder = ADAPTER.stream_decoder(chat([user("x")], stream=True), up())
    out = list(decoder.feed(SSEEvent(data="")))
    out += decoder.feed(SSEEvent(data='{"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"},'
                                      ' "finishReason": "MAX_TOKENS"}]}'))
    out += decoder.finish()
    assert [(c.role, c.text, c.finish_reason) for c in out] == [("assistant", None, None), (None, "Hi", None),
                                                                (None, None, "length")]
    assert out[0].id.startswith("gemini-") and out[0].model == "gemini-2.5-flash"


def test_stream_error_event_raises():
    decoder = ADAPTER.stream_decoder(chat([user("x")], stream=True), up())
    event = SSEEvent(data='{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}')
    with pytest.raises(GatewayError) as e:
        list(decoder.feed(event))
    assert e.value.status == 503 and e.value.kind == "overloaded" and e.value.retryable


def test_stream_blocked_prompt_raises():
    decoder = ADAPTER.stream_decoder(chat([user("x")], stream=True), up())
    with pytest.raises(GatewayError) as e:
        list(decoder.feed(SSEEvent(data='{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}')))
    assert e.value.kind == "content_policy"


# --------------------------------------------------------------------------- errors


def err(status: int, error: dict, headers: dict | None = None) -> GatewayError:
    return ADAPTER.error(status, orjson.dumps({"error": error}), headers or {})


def test_invalid_api_key_is_authentication():
    e = err(400, {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                  "status": "INVALID_ARGUMENT", "details": [
                      {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                       "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]})
    assert (e.kind, e.status) == ("authentication", 401)


def test_rate_limit_with_retry_delay():
    e = err(429, {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
                  "details": [
                      {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]})
    assert (e.kind, e.status, e.retry_after) == ("rate_limit", 429, 13.0)
    assert e.retryable
    header = err(429, {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}, {"Retry-After": "7"})
    assert header.retry_after == 7.0


@pytest.mark.parametrize("status, code, kind", [
    (400, "INVALID_ARGUMENT", "invalid_request"),
    (400, "FAILED_PRECONDITION", "invalid_request"),
    (403, "PERMISSION_DENIED", "permission"),
    (401, "UNAUTHENTICATED", "authentication"),
    (404, "NOT_FOUND", "not_found"),
    (500, "INTERNAL", "server_error"),
    (503, "UNAVAILABLE", "overloaded"),
    (504, "DEADLINE_EXCEEDED", "timeout"),
])
def test_status_mapping(status, code, kind):
    e = err(status, {"code": status, "message": "m", "status": code})
    assert (e.kind, e.status, e.code) == (kind, status, code)


def test_context_window_and_key_redaction_and_non_json():
    e = err(400, {"code": 400, "status": "INVALID_ARGUMENT",
                  "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."})
    assert e.kind == "context_window_exceeded" and e.status == 400
    leaked = err(400, {"code": 400, "status": "INVALID_ARGUMENT", "message": f"bad request for key {KEY}"})
    assert KEY not in leaked.message
    text = ADAPTER.error(502, b"<html>Bad Gateway</html>", {})
    assert text.status == 502 and text.kind == "server_error"
    wrapped = ADAPTER.error(429, orjson.dumps([{"error": {"code": 429, "message": "busy",
                                                          "status": "RESOURCE_EXHAUSTED"}}]), {})
    assert wrapped.kind == "rate_limit"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_request():
    req = EmbeddingRequest(model="emb", input=["hello", "world"], dimensions=256, task_type="retrieval_query")
    wire = ADAPTER.embeddings_request(req, up(model="text-embedding-004"))
    assert wire.url == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"
    assert wire.headers["x-goog-api-key"] == KEY
    assert wire.body == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]},
         "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]},
         "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"},
    ]}
    plain = ADAPTER.embeddings_request(EmbeddingRequest(model="emb", input=["x"]), up(model="gemini-embedding-001"))
    assert plain.body == {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}]}


def test_embeddings_response():
    req = EmbeddingRequest(model="emb", input=["hello", "a longer sentence"])
    payload = {"embeddings": [{"values": [0.1, -0.2, 0.3]}, {"values": [0.4, 0.5, -0.6]}]}
    resp = ADAPTER.embeddings_response(payload, req, up(model="text-embedding-004"))
    assert resp.vectors == [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]
    assert resp.model == "text-embedding-004"
    assert resp.usage.input_tokens == 2 + 5  # ceil(5/4) + ceil(17/4)
    counted = ADAPTER.embeddings_response({**payload, "usageMetadata": {"promptTokenCount": 6}}, req, up())
    assert counted.usage.input_tokens == 6
    with pytest.raises(GatewayError):
        ADAPTER.embeddings_response({"oops": 1}, req, up())
