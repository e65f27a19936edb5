"""TGI native adapter: wire examples follow TGI's docs/openapi.json (GenerateRequest,
GenerateResponse, StreamResponse, ErrorResponse) and the router's validation messages."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.base import SSEEvent, Upstream
from sluice.providers.tgi import ADAPTER, TEMPLATES, TGIAdapter, render_prompt
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


def up(**kw) -> Upstream:
    base = dict(provider="tgi-local", kind="tgi", base_url="http://tgi:8080/", model="mistralai/Mistral-7B")
    base.update(kw)
    return Upstream(**base)


def msg(role: str, text: str) -> Message:
    return Message(role=role, content=[TextPart(text=text)])


def chat(*messages: Message, **kw) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), **kw)


CONVO = [msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "2+2?")]


# ---- templates --------------------------------------------------------------------------------


def test_chatml_is_default_and_renders_every_turn():
    body = ADAPTER.chat_request(chat(*CONVO), up()).body
    assert body["inputs"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert body["parameters"]["stop"] == ["<|im_end|>"]


def test_llama3_template_without_bos():
    body = ADAPTER.chat_request(chat(*CONVO), up(options={"chat_template": "llama3"})).body
    assert body["inputs"] == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert "<|begin_of_text|>" not in body["inputs"]
    assert body["parameters"]["stop"] == ["<|eot_id|>"]


def test_mistral_merges_system_into_first_user_turn():
    body = ADAPTER.chat_request(chat(*CONVO), up(options={"chat_template": "mistral"})).body
    assert body["inputs"] == "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] 2+2? [/INST]"
    assert body["parameters"]["stop"] == ["</s>", "[INST]"]


def test_zephyr_template():
    body = ADAPTER.chat_request(chat(*CONVO), up(options={"chat_template": "zephyr"})).body
    assert body["inputs"] == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\n2+2?</s>\n<|assistant|>\n"
    )
    assert body["parameters"]["stop"] == ["</s>", "<|user|>"]


def test_plain_template():
    body = ADAPTER.chat_request(chat(*CONVO), up(options={"chat_template": "plain"})).body
    assert body["inputs"] == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: 2+2?\n\nAssistant:"
    assert body["parameters"]["stop"] == ["\nUser:"]


def test_trailing_assistant_message_is_continued():
    prompt = render_prompt([msg("user", "Name a colour."), msg("assistant", "The colour is")], TEMPLATES["chatml"])
    assert prompt == "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nThe colour is"


def test_custom_prompt_format_overrides_template():
    fmt = {"prefix": "<s>", "user_prefix": "### Human: ", "user_suffix": "\n", "assistant_prefix": "### Bot:",
           "assistant_suffix": "\n", "system": "merge", "stop": ["### Human:"]}
    body = ADAPTER.chat_request(chat(msg("system", "S"), msg("user", "Q")), up(options={"prompt_format": fmt})).body
    assert body["inputs"] == "<s>### Human: S\n\nQ\n### Bot:"
    assert body["parameters"]["stop"] == ["### Human:"]


def test_unknown_template_is_a_config_error():
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_request(chat(msg("user", "x")), up(options={"chat_template": "alpaca"}))
    assert e.value.kind == "server_error" and "alpaca" in e.value.message


def test_tool_messages_are_refused():
    call = Message(role="assistant", tool_calls=[ToolCall(id="c1", name="f", arguments="{}")])
    result = Message(role="tool", tool_call_id="c1", content=[TextPart(text="42")])
    for history in ([msg("user", "q"), call], [msg("user", "q"), result]):
        with pytest.raises(GatewayError) as e:
            ADAPTER.chat_request(chat(*history), up())
        assert e.value.kind == "invalid_request" and e.value.status == 400
        assert "openai-compatible" in e.value.message


def test_images_are_refused():
    m = Message(role="user", content=[TextPart(text="what?"), ImagePart(url="https://x/cat.png")])
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_request(chat(m), up())
    assert e.value.kind == "invalid_request" and e.value.message == "this deployment takes text only"


def test_tools_and_n_are_refused():
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_request(chat(msg("user", "q"), tools=[Tool(name="f")]), up())
    assert e.value.param == "tools" and "/v1" in e.value.message
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_request(chat(msg("user", "q"), n=2), up())
    assert e.value.param == "n"


# ---- parameters -------------------------------------------------------------------------------


def test_parameter_mapping():
    req = chat(msg("user", "q"), max_tokens=50, temperature=0.7, top_p=0.9, top_k=40, seed=7,
               frequency_penalty=0.5, presence_penalty=0.3, stop=["END"])
    p = ADAPTER.chat_request(req, up(params={"repetition_penalty": 1.1, "temperature": 0.1})).body["parameters"]
    assert p == {
        "max_new_tokens": 50, "temperature": 0.7, "do_sample": True, "top_p": 0.9, "top_k": 40, "seed": 7,
        "frequency_penalty": 0.5, "repetition_penalty": 1.1, "stop": ["END", "<|im_end|>"],
        "details": True, "decoder_input_details": False, "return_full_text": False,
    }


def test_temperature_zero_means_greedy_without_warpers():
    p = ADAPTER.chat_request(chat(msg("user", "q"), temperature=0, top_p=0.5, top_k=5), up()).body["parameters"]
    assert p["do_sample"] is False
    assert "temperature" not in p and "top_p" not in p and "top_k" not in p


def test_top_p_one_is_dropped_and_defaults_apply():
    p = ADAPTER.chat_request(chat(msg("user", "q"), top_p=1.0), up()).body["parameters"]
    assert "top_p" not in p and "do_sample" not in p and "temperature" not in p
    assert p["max_new_tokens"] == 1024
    p = ADAPTER.chat_request(chat(msg("user", "q")), up(params={"max_tokens": 300, "top_p": 0.8})).body["parameters"]
    assert p["max_new_tokens"] == 300 and p["top_p"] == 0.8


def test_stop_limit_keeps_request_stops_first():
    req = chat(msg("user", "q"), stop=["a", "b", "c"])
    p = ADAPTER.chat_request(req, up(options={"chat_template": "mistral"})).body["parameters"]
    assert p["stop"] == ["a", "b", "c", "</s>"]
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_request(chat(msg("user", "q"), stop=["1", "2", "3", "4", "5"]), up())
    assert e.value.kind == "invalid_request" and e.value.param == "stop"
    p = ADAPTER.chat_request(req, up(options={"max_stop_sequences": 8, "chat_template": "mistral"})).body["parameters"]
    assert p["stop"] == ["a", "b", "c", "</s>", "[INST]"]


def test_response_format_becomes_grammar():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    rf = ResponseFormat(type="json_schema", name="r", schema=schema)
    p = ADAPTER.chat_request(chat(msg("user", "q"), response_format=rf), up()).body["parameters"]
    assert p["grammar"] == {"type": "json", "value": schema}
    p = ADAPTER.chat_request(chat(msg("user", "q"), response_format=ResponseFormat(type="json_object")),
                             up()).body["parameters"]
    assert p["grammar"] == {"type": "json", "value": {"type": "object"}}
    p = ADAPTER.chat_request(chat(msg("user", "q"), response_format=ResponseFormat(type="text")), up()).body
    assert "grammar" not in p["parameters"]


def test_extra_goes_into_parameters():
    p = ADAPTER.chat_request(chat(msg("user", "q"), extra={"typical_p": 0.5, "watermark": True}),
                             up()).body["parameters"]
    assert p["typical_p"] == 0.5 and p["watermark"] is True


def test_url_and_headers_follow_stream_flag():
    u = up(api_key="hf_secret", headers={"x-tenant": "a"})
    w = ADAPTER.chat_request(chat(msg("user", "q")), u)
    assert w.url == "http://tgi:8080/generate" and w.method == "POST"
    assert w.headers == {"authorization": "Bearer hf_secret", "x-tenant": "a"}
    w = ADAPTER.chat_request(chat(msg("user", "q"), stream=True), u)
    assert w.url == "http://tgi:8080/generate_stream"
    assert "stream" not in w.body
    assert ADAPTER.chat_request(chat(msg("user", "q")), up()).headers == {}


# ---- non-streaming response -------------------------------------------------------------------


def test_response_with_details():
    payload = {
        "generated_text": "Four.",
        "details": {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None, "prefill": [],
                    "tokens": [{"id": 1, "text": "Four", "logprob": -0.1, "special": False}]},
    }
    req = chat(msg("user", "2+2?"))
    r = ADAPTER.chat_response(payload, req, up())
    assert r.id.startswith("chatcmpl-") and len(r.id) > 12
    assert r.model == "mistralai/Mistral-7B"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.text() == "Four."
    assert r.choices[0].finish_reason == "stop"
    prompt = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert r.usage.output_tokens == 3
    assert r.usage.input_tokens == -(-len(prompt) // 4)


def test_response_length_and_prefill_count():
    payload = {"generated_text": "a b c", "details": {"finish_reason": "length", "generated_tokens": 3,
                                                      "prefill": [{"id": 1, "text": "x", "logprob": None}] * 9,
                                                      "tokens": []}}
    r = ADAPTER.chat_response(payload, chat(msg("user", "q")), up())
    assert r.choices[0].finish_reason == "length" and r.usage.input_tokens == 9


def test_response_strips_trailing_stop_sequence():
    payload = {"generated_text": "1, 2, 3 END", "details": {"finish_reason": "stop_sequence", "generated_tokens": 6,
                                                            "prefill": [], "tokens": []}}
    r = ADAPTER.chat_response(payload, chat(msg("user", "count"), stop=["END"]), up())
    assert r.choices[0].message.text() == "1, 2, 3 "
    assert r.choices[0].finish_reason == "stop" and r.choices[0].stop_sequence == "END"
    # A template stop ends the turn; it is not reported as the client's stop sequence.
    payload["generated_text"] = "Hi<|im_end|>"
    r = ADAPTER.chat_response(payload, chat(msg("user", "q")), up())
    assert r.choices[0].message.text() == "Hi" and r.choices[0].stop_sequence is None


def test_eos_does_not_strip_text_that_looks_like_a_stop():
    payload = {"generated_text": "It ends with END", "details": {"finish_reason": "eos_token", "generated_tokens": 4,
                                                                 "prefill": [], "tokens": []}}
    r = ADAPTER.chat_response(payload, chat(msg("user", "q"), stop=["END"]), up())
    assert r.choices[0].message.text() == "It ends with END"


def test_response_list_form_and_no_details():
    r = ADAPTER.chat_response([{"generated_text": "ok"}], chat(msg("user", "q")), up())
    assert r.choices[0].message.text() == "ok" and r.choices[0].finish_reason == "stop"
    assert r.usage.output_tokens == 0


def test_malformed_response():
    with pytest.raises(GatewayError) as e:
        ADAPTER.chat_response({"foo": 1}, chat(msg("user", "q")), up())
    assert e.value.kind == "upstream_unavailable" and e.value.status == 502


# ---- streaming --------------------------------------------------------------------------------


def sse(obj) -> SSEEvent:
    return SSEEvent(data=orjson.dumps(obj).decode())


def tok(i: int, text: str, special: bool = False) -> dict:
    return {"index": i, "token": {"id": 100 + i, "text": text, "logprob": -0.5, "special": special},
            "top_tokens": None, "generated_text": None, "details": None}


def run(decoder, events):
    out = []
    for ev in events:
        out.extend(decoder.feed(ev))
    out.extend(decoder.finish())
    return out


def test_recorded_stream_eos():
    events = [sse(tok(1, "Hello")), sse(tok(2, " there")), sse(tok(3, "!")),
              sse({"index": 4, "token": {"id": 2, "text": "</s>", "logprob": -0.01, "special": True},
                   "top_tokens": None, "generated_text": "Hello there!",
                   "details": {"finish_reason": "eos_token", "generated_tokens": 4, "seed": None,
                               "input_length": 17}})]
    req = chat(msg("user", "hi"), stream=True)
    chunks = run(ADAPTER.stream_decoder(req, up()), events)
    assert chunks[0].role == "assistant" and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == "mistralai/Mistral-7B"
    assert [c.text for c in chunks if c.text] == ["Hello", " there", "!"]
    assert chunks[-2].finish_reason == "stop" and chunks[-2].text is None
    assert chunks[-1].usage.input_tokens == 17 and chunks[-1].usage.output_tokens == 4
    assert chunks[-1].finish_reason is None and chunks[-1].text is None


def test_stream_holds_back_and_strips_stop_sequence():
    events = [sse(tok(1, "one")), sse(tok(2, " E")), sse(tok(3, "x")), sse(tok(4, " E")), sse(tok(5, "N")),
              sse({"index": 6, "token": {"id": 9, "text": "D", "logprob": -0.1, "special": False},
                   "generated_text": "one Ex END",
                   "details": {"finish_reason": "stop_sequence", "generated_tokens": 6, "seed": 1}})]
    req = chat(msg("user", "go"), stop=["END"], stream=True)
    chunks = run(ADAPTER.stream_decoder(req, up()), events)
    texts = [c.text for c in chunks if c.text]
    assert "".join(texts) == "one Ex "
    # "E" is held until "x" shows it is not the start of "END"; "END" itself never leaves.
    assert texts == ["one", " ", "Ex", " "]
    assert chunks[-2].finish_reason == "stop" and chunks[-2].stop_sequence == "END"
    # No input_length (older servers): estimated from the prompt.
    prompt = "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n"
    assert chunks[-1].usage.input_tokens == -(-len(prompt) // 4) and chunks[-1].usage.output_tokens == 6


def test_stream_length_flushes_held_text():
    events = [sse(tok(1, "a <|im")), sse({**tok(2, "_"), "details": {"finish_reason": "length",
                                                                     "generated_tokens": 2, "input_length": 3}})]
    chunks = run(ADAPTER.stream_decoder(chat(msg("user", "q"), stream=True), up()), events)
    assert "".join(c.text for c in chunks if c.text) == "a <|im_"
    assert chunks[-2].finish_reason == "length"


def test_stream_error_event():
    dec = ADAPTER.stream_decoder(chat(msg("user", "q"), stream=True), up())
    list(dec.feed(sse(tok(1, "Hi"))))
    with pytest.raises(GatewayError) as e:
        list(dec.feed(sse({"error": "Request failed during generation: Server error: CUDA out of memory",
                           "error_type": "generation"})))
    assert e.value.kind == "server_error" and e.value.status == 502 and e.value.retryable


def test_stream_validation_error_before_first_token():
    # /generate_stream answers 200 and reports validation failures as the first event.
    dec = ADAPTER.stream_decoder(chat(msg("user", "q"), stream=True), up())
    with pytest.raises(GatewayError) as e:
        dec.feed(sse({"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
                               "Given: 4000 `inputs` tokens and 1024 `max_new_tokens`",
                      "error_type": "validation"}))
    assert e.value.kind == "context_window_exceeded" and e.value.status == 400 and not e.value.retryable


def test_stream_cut_short_raises_on_finish():
    dec = ADAPTER.stream_decoder(chat(msg("user", "q"), stream=True), up())
    assert [c.text for c in dec.feed(sse(tok(1, "Hi")))] == [None, "Hi"]
    with pytest.raises(GatewayError) as e:
        list(dec.finish())
    assert e.value.kind == "upstream_unavailable"


def test_stream_ignores_blank_and_done_events():
    dec = ADAPTER.stream_decoder(chat(msg("user", "q"), stream=True), up())
    assert list(dec.feed(SSEEvent(data=""))) == [] and list(dec.feed(SSEEvent(data="[DONE]"))) == []


# ---- errors -----------------------------------------------------------------------------------


def err(status: int, payload, headers=None) -> GatewayError:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return ADAPTER.error(status, body, headers or {})


def test_error_422_validation_is_invalid_request():
    e = err(422, {"error": "Input validation error: `top_p` must be > 0.0 and < 1.0", "error_type": "validation"})
    assert (e.kind, e.status, e.code) == ("invalid_request", 400, "validation")
    assert "top_p" in e.message and not e.retryable


@pytest.mark.parametrize("message", [
    "Input validation error: `inputs` must have less than 4095 tokens. Given: 5012",
    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 8000 `inputs` tokens "
    "and 1024 `max_new_tokens`",
])
def test_error_input_too_long_is_context_window(message):
    e = err(422, {"error": message, "error_type": "validation"})
    assert (e.kind, e.status) == ("context_window_exceeded", 400)


def test_error_424_generation_is_retryable_bad_gateway():
    e = err(424, {"error": "Request failed during generation: Server error: CUDA out of memory",
                  "error_type": "generation"})
    assert (e.kind, e.status) == ("server_error", 502) and e.retryable


def test_error_429_overloaded_keeps_retry_after():
    e = err(429, {"error": "Model is overloaded", "error_type": "overloaded"}, {"retry-after": "3"})
    assert (e.kind, e.status, e.retry_after) == ("rate_limit", 429, 3.0) and e.retryable


def test_error_500_incomplete_generation():
    e = err(500, {"error": "Incomplete generation", "error_type": "incomplete_generation"})
    assert (e.kind, e.status) == ("server_error", 502)


def test_error_503_loading_uses_estimated_time():
    e = err(503, {"error": "Model mistralai/Mistral-7B is currently loading", "estimated_time": 20.0})
    assert (e.kind, e.status, e.retry_after) == ("overloaded", 503, 20.0)


def test_error_413_plain_text():
    e = err(413, b"Failed to buffer the request body: length limit exceeded")
    assert (e.kind, e.status) == ("payload_too_large", 413) and "length limit" in e.message


def test_error_auth_does_not_echo_key():
    e = err(401, {"error": "Authorization header is correct, but the token seems invalid"})
    assert (e.kind, e.status) == ("authentication", 401)
    e = err(404, b"")
    assert (e.kind, e.status, e.message) == ("not_found", 404, "upstream error 404")


# ---- embeddings -------------------------------------------------------------------------------


def test_embeddings_unsupported():
    with pytest.raises(GatewayError) as e:
        ADAPTER.embeddings_request(EmbeddingRequest(model="m", input=["x"]), up())
    assert e.value.kind == "invalid_request" and "embeddings" in e.value.message


def test_adapter_identity():
    assert isinstance(ADAPTER, TGIAdapter) and ADAPTER.kind == "tgi"
