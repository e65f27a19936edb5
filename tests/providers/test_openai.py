"""OpenAI adapter and its compatible dialects: wire examples written from the Chat Completions,
Embeddings and error references (and each compatible server's own reference); no network."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.base import SSEEvent, Upstream
from sluice.providers.openai import ADAPTERS, DIALECTS, OpenAIAdapter, OpenAIStreamDecoder
from sluice.providers.registry import adapter_for
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
    ToolCallDelta,
    Usage,
)

OPENAI = ADAPTERS["openai"]
WEATHER = Tool(
    name="get_weather",
    description="Get the current weather",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


def up(kind: str = "openai", **kw) -> Upstream:
    base = {"provider": kind, "kind": kind, "base_url": "", "model": "gpt-4o-mini", "api_key": "sk-secret"}
    base.update(kw)
    return Upstream(**base)


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text=text)])


def req(*messages: Message, **kw) -> ChatRequest:
    return ChatRequest(model="alias", messages=list(messages) or [user("Hello!")], **kw)


def body_for(r: ChatRequest, upstream: Upstream | None = None, kind: str = "openai") -> dict:
    return ADAPTERS[kind].chat_request(r, upstream or up(kind)).body


# --------------------------------------------------------------------------- request


def test_registry_serves_every_dialect():
    assert set(DIALECTS) == {"openai", "azure", "vllm", "ollama", "llamacpp", "mistral", "groq", "together",
                             "deepseek", "openrouter", "openai-compatible"}
    for kind in DIALECTS:
        a = adapter_for(kind)
        assert isinstance(a, OpenAIAdapter) and a.kind == kind


def test_minimal_request_url_headers_body():
    wire = OPENAI.chat_request(req(), up(options={"organization": "org-1"}, headers={"x-extra": "1"}))
    assert wire.method == "POST"
    assert wire.url == "https://api.openai.com/v1/chat/completions"
    assert wire.headers == {"authorization": "Bearer sk-secret", "openai-organization": "org-1", "x-extra": "1"}
    assert wire.body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}


def test_base_url_override_strips_trailing_slash():
    wire = OPENAI.chat_request(req(), up(base_url="https://proxy.example/v1/"))
    assert wire.url == "https://proxy.example/v1/chat/completions"


def test_every_canonical_field():
    r = req(
        Message(role="system", content=[TextPart(text="Be terse.")]),
        user("Hi"),
        temperature=0.2, top_p=0.9, max_tokens=64, stop=["\n\n"], n=2, seed=7, presence_penalty=0.5,
        frequency_penalty=-0.5, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False, user="u-1",
        metadata={"team": "a"}, extra={"store": True, "logprobs": True},
    )
    assert body_for(r) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "parallel_tool_calls": False,
        "user": "u-1",
        "metadata": {"team": "a"},
        "max_completion_tokens": 64,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Get the current weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}}],
        "tool_choice": "auto",
        "store": True,
        "logprobs": True,
    }


def test_metadata_only_with_store():
    # OpenAI: "The 'metadata' parameter is only allowed when 'store' is enabled."
    assert "metadata" not in body_for(req(metadata={"team": "a"}))
    assert body_for(req(metadata={"team": "a"}), up(params={"store": True}))["metadata"] == {"team": "a"}


def test_parallel_tool_calls_dropped_without_tools():
    assert "parallel_tool_calls" not in body_for(req(parallel_tool_calls=True))
    assert "parallel_tool_calls" not in body_for(req(), up(params={"parallel_tool_calls": False}))
    assert body_for(req(tools=[WEATHER]), up(params={"parallel_tool_calls": False}))["parallel_tool_calls"] is False
    assert "tool_choice" not in body_for(req(tool_choice="required"))


def test_images_url_and_data_url():
    m = Message(role="user", content=[
        TextPart(text="What is in these?"),
        ImagePart.from_url("https://example.com/cat.png", "low"),
        ImagePart.from_url("data:image/jpeg;base64,/9j/4AAQ"),
    ])
    assert body_for(req(m))["messages"][0] == {"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]}


def test_assistant_tool_calls_and_tool_results():
    call = ToolCall(id="call_abc", name="get_weather", arguments='{"location":"Paris"}')
    msgs = body_for(req(
        user("Weather?"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_abc", content=[TextPart(text="18C")]),
        Message(role="assistant", content=[TextPart(text="It is 18C.")], name="bot"),
    ))["messages"]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_abc", "content": "18C"}
    assert msgs[3] == {"role": "assistant", "content": "It is 18C.", "name": "bot"}


@pytest.mark.parametrize("choice, wire", [
    ("auto", "auto"),
    ("none", "none"),
    ("required", "required"),
    ({"name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice_variants(choice, wire):
    assert body_for(req(tools=[WEATHER], tool_choice=choice))["tool_choice"] == wire


def test_tool_without_parameters_gets_empty_object_schema_and_strict():
    body = body_for(req(tools=[Tool(name="ping", strict=True)]))
    assert body["tools"] == [{"type": "function", "function": {
        "name": "ping", "parameters": {"type": "object", "properties": {}}, "strict": True}}]


def test_response_format_variants():
    assert body_for(req(response_format=ResponseFormat(type="json_object")))["response_format"] == {
        "type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    rf = ResponseFormat(type="json_schema", name="answer", schema=schema, strict=True)
    assert body_for(req(response_format=rf))["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    assert "response_format" not in body_for(req(response_format=ResponseFormat(type="text")))


def test_stream_always_asks_for_usage():
    body = body_for(req(stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "stream" not in body_for(req())


def test_deployment_params_are_defaults_and_extra_merges_last():
    upstream = up(params={"temperature": 0.1, "max_tokens": 100, "seed": 3, "reasoning_effort": "low"})
    body = body_for(req(temperature=0.9), upstream)
    assert body["temperature"] == 0.9  # the client's value wins
    assert body["seed"] == 3
    assert body["max_completion_tokens"] == 100
    assert "max_tokens" not in body
    assert body["reasoning_effort"] == "low"
    body = body_for(req(extra={"reasoning_effort": "high", "temperature": 1.0}), upstream)
    assert body["reasoning_effort"] == "high"
    assert body["temperature"] == 1.0
    assert body_for(req(), up(params={"max_completion_tokens": 50}))["max_completion_tokens"] == 50


# --------------------------------------------------------------------------- compatible dialects


def test_azure_url_auth_and_api_version():
    upstream = up("azure", base_url="https://res.openai.azure.com", model="my-gpt4o", api_version="2024-10-21")
    wire = ADAPTERS["azure"].chat_request(req(max_tokens=10), upstream)
    assert wire.url == ("https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions"
                        "?api-version=2024-10-21")
    assert wire.headers == {"api-key": "sk-secret"}
    # GA 2024-10-21's createChatCompletionRequest has max_tokens only.
    assert wire.body["max_tokens"] == 10 and "max_completion_tokens" not in wire.body
    emb = ADAPTERS["azure"].embeddings_request(EmbeddingRequest(model="e", input=["x"]), upstream)
    assert emb.url == "https://res.openai.azure.com/openai/deployments/my-gpt4o/embeddings?api-version=2024-10-21"


@pytest.mark.parametrize("version, field", [
    ("2024-10-21", "max_tokens"),
    ("2024-06-01", "max_tokens"),
    ("2024-08-01-preview", "max_tokens"),
    ("2024-09-01-preview", "max_completion_tokens"),
    ("2025-04-01-preview", "max_completion_tokens"),
])
def test_azure_token_limit_field_follows_api_version(version, field):
    upstream = up("azure", base_url="https://res.openai.azure.com/openai", model="d", api_version=version)
    body = ADAPTERS["azure"].chat_request(req(max_tokens=5), upstream).body
    assert body[field] == 5
    assert ADAPTERS["azure"].chat_request(req(), upstream).url.startswith(
        "https://res.openai.azure.com/openai/deployments/d/")


def test_azure_needs_api_version():
    with pytest.raises(GatewayError) as e:
        ADAPTERS["azure"].chat_request(req(), up("azure", base_url="https://res.openai.azure.com"))
    assert e.value.status == 400


@pytest.mark.parametrize("kind, url", [
    ("vllm", "http://localhost:8000/v1/chat/completions"),
    ("ollama", "http://localhost:11434/v1/chat/completions"),
    ("llamacpp", "http://localhost:8080/v1/chat/completions"),
    ("mistral", "https://api.mistral.ai/v1/chat/completions"),
    ("groq", "https://api.groq.com/openai/v1/chat/completions"),
    ("together", "https://api.together.xyz/v1/chat/completions"),
    ("deepseek", "https://api.deepseek.com/v1/chat/completions"),
    ("openrouter", "https://openrouter.ai/api/v1/chat/completions"),
])
def test_default_base_urls_bearer_auth_and_max_tokens(kind, url):
    wire = ADAPTERS[kind].chat_request(req(max_tokens=9), up(kind))
    assert wire.url == url
    assert wire.headers == {"authorization": "Bearer sk-secret"}
    assert wire.body["max_tokens"] == 9 and "max_completion_tokens" not in wire.body


def test_no_key_no_auth_header():
    assert ADAPTERS["ollama"].chat_request(req(), up("ollama", api_key=None)).headers == {}


def test_openai_compatible_uses_given_base_url():
    wire = ADAPTERS["openai-compatible"].chat_request(req(), up("openai-compatible", base_url="http://h:9/v1"))
    assert wire.url == "http://h:9/v1/chat/completions"


def test_mistral_differences():
    r = req(seed=42, tools=[WEATHER], tool_choice="required", user="u", stream=True, n=2)
    body = body_for(r, kind="mistral")
    assert body["random_seed"] == 42 and "seed" not in body
    assert body["tool_choice"] == "any"
    assert "user" not in body
    assert body["n"] == 2
    assert body["stream"] is True and "stream_options" not in body


@pytest.mark.parametrize("kind", ["groq", "llamacpp", "deepseek", "ollama"])
def test_n_above_one_rejected_where_unsupported(kind):
    with pytest.raises(GatewayError) as e:
        body_for(req(n=2), kind=kind)
    assert e.value.status == 400 and e.value.param == "n"
    assert "n" not in body_for(req(n=1), kind=kind)


def test_deepseek_differences():
    body = body_for(req(seed=1, user="u", stream=True), kind="deepseek")
    assert "seed" not in body and "user" not in body  # best-effort hints dropped, not failed
    assert body["stream_options"] == {"include_usage": True}
    image = Message(role="user", content=[ImagePart.from_url("https://x/y.png")])
    with pytest.raises(GatewayError) as e:
        body_for(req(image), kind="deepseek")
    assert e.value.param == "messages"
    with pytest.raises(GatewayError) as e:
        body_for(req(response_format=ResponseFormat(type="json_schema", name="a", schema={})), kind="deepseek")
    assert e.value.param == "response_format"
    assert body_for(req(response_format=ResponseFormat(type="json_object")), kind="deepseek")[
        "response_format"] == {"type": "json_object"}
    with pytest.raises(GatewayError):
        ADAPTERS["deepseek"].embeddings_request(EmbeddingRequest(model="e", input=["x"]), up("deepseek"))


def test_metadata_never_sent_to_compatible_servers():
    for kind in DIALECTS:
        if kind == "openai":
            continue
        upstream = up(kind, base_url="http://h/v1", api_version="2025-04-01-preview")
        body = ADAPTERS[kind].chat_request(req(metadata={"a": "b"}, extra={"store": True}), upstream).body
        assert "metadata" not in body, kind


# --------------------------------------------------------------------------- responses

COMPLETION = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_44709d6fcb",
}


def test_parse_text_response_with_usage_details():
    resp = OPENAI.chat_response(COMPLETION, req(), up())
    assert resp.id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert resp.model == "gpt-4.1-2025-04-14"
    assert resp.created == 1741569952
    assert resp.system_fingerprint == "fp_44709d6fcb"
    assert resp.choices[0].message.text() == "Hello! How can I assist you today?"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage == Usage(input_tokens=19, output_tokens=10, cached_tokens=4, reasoning_tokens=3)


def test_parse_tool_calls():
    payload = {**COMPLETION, "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_abc123", "type": "function",
             "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
            {"id": "call_def456", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ]},
        "logprobs": None, "finish_reason": "tool_calls"}]}
    choice = OPENAI.chat_response(payload, req(), up()).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == []
    assert choice.message.tool_calls == [
        ToolCall(id="call_abc123", name="get_current_weather", arguments="{\n\"location\": \"Boston, MA\"\n}"),
        ToolCall(id="call_def456", name="get_time", arguments="{}"),
    ]


def test_parse_refusal_and_finish_reasons():
    payload = {**COMPLETION, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
         "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "abc"}, "finish_reason": "length"},
        {"index": 2, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"},
        {"index": 3, "message": {"role": "assistant", "content": "x"}, "finish_reason": "function_call"},
        {"index": 4, "message": {"role": "assistant", "content": "x"},
         "finish_reason": "insufficient_system_resource"},
    ]}
    choices = OPENAI.chat_response(payload, req(), up()).choices
    assert choices[0].message.text() == "I can't help with that."
    assert [c.finish_reason for c in choices] == ["content_filter", "length", "content_filter", "tool_calls",
                                                  "error"]
    assert [c.index for c in choices] == [0, 1, 2, 3, 4]


def test_deepseek_cache_hit_usage():
    payload = {**COMPLETION, "usage": {"prompt_tokens": 10, "completion_tokens": 11, "total_tokens": 21,
                                       "prompt_cache_hit_tokens": 6, "prompt_cache_miss_tokens": 4}}
    assert OPENAI.chat_response(payload, req(), up()).usage == Usage(input_tokens=10, output_tokens=11,
                                                                     cached_tokens=6)


def test_unexpected_and_error_bodies_on_200():
    with pytest.raises(GatewayError) as e:
        OPENAI.chat_response({"foo": 1}, req(), up())
    assert e.value.status == 502
    with pytest.raises(GatewayError) as e:
        OPENAI.chat_response({"error": {"message": "model overloaded", "type": "server_error", "code": None}},
                             req(), up())
    assert e.value.status == 500 and e.value.message == "model overloaded"


# --------------------------------------------------------------------------- streaming

CHUNK = '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",' \
        '"system_fingerprint":"fp_44709d6fcb","choices":%s,"usage":null}'


def sse(choices: list) -> SSEEvent:
    return SSEEvent(data=CHUNK % orjson.dumps(choices).decode())


RECORDED = [
    sse([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
          "finish_reason": None}]),
    sse([{"index": 0, "delta": {"content": "Let me"}, "logprobs": None, "finish_reason": None}]),
    sse([{"index": 0, "delta": {"content": " check."}, "logprobs": None, "finish_reason": None}]),
    sse([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                                                "type": "function",
                                                "function": {"name": "get_weather", "arguments": ""}}]},
          "logprobs": None, "finish_reason": None}]),
    sse([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\""}}]},
          "logprobs": None, "finish_reason": None}]),
    sse([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "location\":\"Paris\"}"}}]},
          "logprobs": None, "finish_reason": None}]),
    sse([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]),
    SSEEvent(data='{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,'
                  '"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":18,'
                  '"total_tokens":100,"prompt_tokens_details":{"cached_tokens":64},'
                  '"completion_tokens_details":{"reasoning_tokens":0}}}'),
    SSEEvent(data="[DONE]"),
]


def decode(events) -> list[ChatChunk]:
    d = OPENAI.stream_decoder(req(stream=True), up())
    assert isinstance(d, OpenAIStreamDecoder)
    out: list[ChatChunk] = []
    for e in events:
        out.extend(d.feed(e))
    out.extend(d.finish())
    return out


def test_recorded_stream():
    chunks = decode(RECORDED)
    assert chunks[0] == ChatChunk(index=0, role="assistant", id="chatcmpl-123", model="gpt-4o-mini")
    assert [c.text for c in chunks[1:3]] == ["Let me", " check."]
    assert all(c.role is None and c.id is None for c in chunks[1:])
    assert chunks[3].tool_calls == [ToolCallDelta(index=0, id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather")]
    assert chunks[4].tool_calls == [ToolCallDelta(index=0, arguments='{"')]
    assert chunks[5].tool_calls == [ToolCallDelta(index=0, arguments='location":"Paris"}')]
    assert chunks[6].finish_reason == "tool_calls"
    assert chunks[7] == ChatChunk(usage=Usage(input_tokens=82, output_tokens=18, cached_tokens=64))
    assert len(chunks) == 8
    args = "".join(t.arguments for c in chunks if c.tool_calls for t in c.tool_calls)
    assert orjson.loads(args) == {"location": "Paris"}


def test_stream_role_per_choice_when_n_above_one():
    chunks = decode([
        sse([{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]),
        sse([{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]),
        sse([{"index": 0, "delta": {"content": "c"}, "finish_reason": "stop"}]),
    ])
    assert [(c.index, c.role, c.text) for c in chunks] == [(0, "assistant", "a"), (1, "assistant", "b"),
                                                          (0, None, "c")]
    assert chunks[2].finish_reason == "stop"


def test_stream_usage_with_finish_and_groq_x_groq():
    # Mistral: usage rides on the finish chunk; Groq: under x_groq.usage.
    chunks = decode([SSEEvent(data='{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":""},'
                                   '"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,'
                                   '"total_tokens":7}}')])
    assert chunks[0].finish_reason == "stop"
    assert chunks[1] == ChatChunk(usage=Usage(input_tokens=5, output_tokens=2))
    chunks = decode([SSEEvent(data='{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                                   '"x_groq":{"id":"req_1","usage":{"prompt_tokens":3,"completion_tokens":1}}}')])
    assert chunks[-1].usage == Usage(input_tokens=3, output_tokens=1)


def test_in_stream_errors():
    d = OPENAI.stream_decoder(req(stream=True), up())
    list(d.feed(RECORDED[1]))
    with pytest.raises(GatewayError) as e:
        d.feed(SSEEvent(data='{"error":{"message":"The server had an error while processing your request.",'
                             '"type":"server_error","param":null,"code":null}}'))
    assert e.value.status == 500 and e.value.kind == "server_error" and e.value.retryable
    assert "server had an error" in e.value.message
    with pytest.raises(GatewayError) as e:  # vLLM's error object
        d.feed(SSEEvent(data='{"object":"error","message":"max_tokens too large","type":"BadRequestError",'
                             '"param":null,"code":400}'))
    assert e.value.status == 400 and e.value.message == "max_tokens too large"
    with pytest.raises(GatewayError) as e:
        d.feed(SSEEvent(data='{"error":"Rate limit reached"}'))
    assert e.value.status == 500 and e.value.message == "Rate limit reached"
    with pytest.raises(GatewayError) as e:
        d.feed(SSEEvent(data="{not json"))
    assert e.value.status == 502


# --------------------------------------------------------------------------- errors


def err(status: int, payload, headers=None) -> GatewayError:
    return OPENAI.error(status, orjson.dumps(payload) if not isinstance(payload, bytes) else payload,
                        headers or {})


def test_error_mapping_per_status():
    body = {"error": {"message": "bad", "type": "invalid_request_error", "param": "temperature",
                      "code": "invalid_value"}}
    e = err(400, body)
    assert (e.kind, e.status, e.param, e.code, e.message) == ("invalid_request", 400, "temperature",
                                                              "invalid_value", "bad")
    assert not e.retryable
    for status, kind in [(401, "authentication"), (403, "permission"), (404, "not_found"), (429, "rate_limit"),
                         (500, "server_error"), (502, "server_error"), (503, "overloaded"), (504, "timeout")]:
        e = err(status, {"error": {"message": "m", "type": "x", "param": None, "code": None}})
        assert (e.kind, e.status) == (kind, status)
        assert e.retryable == (status >= 429 and status != 401)


def test_rate_limit_retry_after_headers():
    body = {"error": {"message": "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM)",
                      "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}
    e = err(429, body, {"retry-after": "7"})
    assert e.kind == "rate_limit" and e.retry_after == 7.0 and e.code == "rate_limit_exceeded" and e.retryable
    assert err(429, body, {"retry-after-ms": "1500", "retry-after": "7"}).retry_after == 1.5
    assert err(429, body).retry_after is None


def test_context_length_exceeded():
    body = {"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages "
                                 "resulted in 130000 tokens. Please reduce the length of the messages.",
                      "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    e = err(400, body)
    assert e.kind == "context_window_exceeded" and e.status == 400 and e.param == "messages"
    # servers that only say it in words
    e = err(400, {"object": "error", "message": "This model's maximum context length is 4096 tokens.",
                  "type": "BadRequestError", "param": None, "code": 400})
    assert e.kind == "context_window_exceeded" and e.code is None


def test_content_filter_and_plain_text_errors():
    e = err(400, {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                                       "content management policy.", "type": None, "param": "prompt",
                            "code": "content_filter", "status": 400}})
    assert e.kind == "content_policy"
    e = err(502, b"<html>Bad Gateway</html>")
    assert e.status == 502 and e.message == "<html>Bad Gateway</html>"
    e = err(500, b"")
    assert e.message == "upstream error 500"
    e = err(422, {"detail": "Extra inputs are not permitted"})
    assert e.kind == "unprocessable" and e.message == "Extra inputs are not permitted"


def test_auth_error_never_echoes_a_key():
    e = err(401, {"error": {"message": "Incorrect API key provided: sk-proj-abcd************************wxyz. "
                                       "You can find your API key at https://platform.openai.com/account/api-keys.",
                            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
    assert e.kind == "authentication" and e.code == "invalid_api_key"
    assert "abcd" not in e.message and "wxyz" not in e.message and "sk-" not in e.message
    e = err(401, {"error": {"message": "Invalid API Key gsk_0123456789abcdef", "type": "invalid_request_error",
                            "code": "invalid_api_key"}})
    assert "0123456789" not in e.message


# --------------------------------------------------------------------------- embeddings


def test_embeddings_request():
    wire = OPENAI.embeddings_request(
        EmbeddingRequest(model="alias", input=["a", "b"], dimensions=256, user="u", encoding_format="base64"),
        up(model="text-embedding-3-small"))
    assert wire.url == "https://api.openai.com/v1/embeddings"
    assert wire.headers == {"authorization": "Bearer sk-secret"}
    # Always floats upstream: the inbound API re-encodes for the client.
    assert wire.body == {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float",
                         "dimensions": 256, "user": "u"}
    mistral = ADAPTERS["mistral"].embeddings_request(EmbeddingRequest(model="e", input=["a"], user="u"),
                                                     up("mistral"))
    assert "user" not in mistral.body


def test_embeddings_response_sorted_by_index():
    payload = {"object": "list", "data": [
        {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
    ], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    resp = OPENAI.embeddings_response(payload, EmbeddingRequest(model="a", input=["x", "y"]), up())
    assert resp.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert resp.model == "text-embedding-3-small"
    assert resp.usage.input_tokens == 8
    with pytest.raises(GatewayError) as e:
        OPENAI.embeddings_response({"data": [{"index": 0}]}, EmbeddingRequest(model="a", input=["x"]), up())
    assert e.value.status == 502
