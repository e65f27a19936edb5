"""The non-streaming relay: an OpenAI-style answer passed to an OpenAI client as it is.

For every answer it takes, the client must get what the decoding path (``chat_response`` and
``render_chat_response``) would have given it, plus the fields Sluice does not model; every
answer the decoding path would change must be left to it.
"""

from __future__ import annotations

import copy
import json

import orjson
import pytest

from sluice.api.openai_dialect import relayed_answer_body, render_chat_response
from sluice.providers.base import Upstream
from sluice.providers.openai import ADAPTERS, relayed_answer
from sluice.schema import ChatRequest, Message, TextPart

OPENAI = ADAPTERS["openai"]
UP = Upstream(provider="openai", kind="openai", base_url="", model="gpt-4o-mini", api_key="sk-secret")
REQ = ChatRequest(model="alias", messages=[Message(role="user", content=[TextPart(text="hi")])])


def answer(**over) -> dict:
    base = {
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello.", "refusal": None,
                                             "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                  "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_1",
    }
    base.update(over)
    return base


def tool_answer() -> dict:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    return answer(choices=[{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls},
                            "logprobs": None, "finish_reason": "tool_calls"}])


def two_choices() -> dict:
    return answer(choices=[
        {"index": 0, "message": {"role": "assistant", "content": "One."}, "logprobs": None, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Two, cut"}, "logprobs": None,
         "finish_reason": "length"}])


def decoded(payload: dict) -> dict:
    return render_chat_response(OPENAI.chat_response(copy.deepcopy(payload), REQ, UP), "alias")


def relayed(payload: dict, encode=orjson.dumps) -> dict:
    resp = OPENAI.relay_response("openai", encode(payload), UP)
    assert resp is not None
    return orjson.loads(relayed_answer_body(resp, "alias"))


def project(rendered: dict, like: dict) -> object:
    """``rendered`` cut down to the keys of ``like``, recursively."""
    if isinstance(like, dict):
        return {k: project(rendered.get(k), v) for k, v in like.items()}
    if isinstance(like, list):
        return [project(r, v) for r, v in zip(rendered, like)] if isinstance(rendered, list) else rendered
    return rendered


@pytest.mark.parametrize("payload", [answer(), tool_answer(), two_choices(), answer(system_fingerprint=None)],
                         ids=["text", "tool-calls", "two-choices", "no-fingerprint"])
def test_a_relayed_answer_says_what_the_decoded_one_says(payload):
    want = decoded(payload)
    got = relayed(payload)
    assert got["model"] == "alias"
    # The decoding path's usage carries only the details Sluice models; the relay, OpenAI's own.
    want_usage, got_usage = want.pop("usage"), got["usage"]
    assert project(got_usage, want_usage) == want_usage
    assert project(got, want) == want
    # ... and what Sluice does not model reaches the client as the upstream sent it.
    assert got["service_tier"] == "default"
    assert got["usage"]["prompt_tokens_details"]["audio_tokens"] == 0


def test_pretty_printed_answers_keep_their_bytes_but_the_model():
    # OpenAI's own API indents its JSON; only the model's value may change.
    body = json.dumps(answer(), indent=2).encode()
    resp = OPENAI.relay_response("openai", body, UP)
    out = relayed_answer_body(resp, 'team/"quoted" alias')
    assert orjson.loads(out)["model"] == 'team/"quoted" alias'
    assert out.replace(b'"model":"team/\\"quoted\\" alias"', b'"model": "gpt-4o-mini-2024"') == body


def test_the_relayed_response_carries_the_usage_for_the_ledger_and_limits():
    resp = OPENAI.relay_response("openai", orjson.dumps(answer()), UP)
    assert resp.choices == []
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.cached_tokens,
            resp.usage.reasoning_tokens) == (9, 3, 4, 1)


def test_only_an_openai_client_gets_a_relayed_answer():
    assert OPENAI.relay_response("anthropic", orjson.dumps(answer()), UP) is None


def _without(key: str) -> dict:
    payload = answer()
    del payload[key]
    return payload


def _choice(**over) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
    choice.update(over)
    return answer(choices=[choice])


def _bad_tool_call(**over) -> dict:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    call.update(over)
    return answer(choices=[{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": "tool_calls"}])


@pytest.mark.parametrize("payload", [
    _without("object"), answer(object="text_completion"), answer(id="cmpl-1"), answer(id=7), _without("usage"),
    answer(usage=None), _without("created"), answer(choices=[]), answer(choices="x"),
    _choice(finish_reason="eos"), _choice(finish_reason=None), _choice(finish_reason="error"),
    _choice(message={"role": "assistant", "content": "", "refusal": "I can't help with that."}),
    _choice(message={"role": "assistant", "content": [{"type": "text", "text": "parts"}]}),
    _choice(message="text"), _choice(index=None),
    _bad_tool_call(id=None), _bad_tool_call(function={"arguments": "{}"}), _bad_tool_call(type="custom"),
    _bad_tool_call(function={"name": "f", "arguments": {"a": 1}}),
    _bad_tool_call(function={"name": "", "arguments": ""}),
    answer(created=0), _choice(message={"role": "user", "content": "x"}),
    answer(usage={"prompt_tokens": None, "completion_tokens": 1}), answer(model=None), _without("model"),
    answer(metadata={"model": "another"}),  # a second "model" field: which one to rename is unclear
    ["not", "an", "object"],
], ids=lambda p: None)
def test_answers_the_decoding_path_would_change_are_left_to_it(payload):
    assert relayed_answer(orjson.dumps(payload)) is None


def test_a_body_that_is_not_json_is_left_to_the_decoding_path():
    assert relayed_answer(b"<html>502 Bad Gateway</html>") is None


# ---- a stream's usage report, read in C by the stream relay ------------------------------------

USAGES = [
    {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
     "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
     "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0}},
    {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": None, "completion_tokens_details": None},
    {"prompt_tokens": 9, "completion_tokens": 3, "prompt_cache_hit_tokens": 5, "prompt_cache_miss_tokens": 4},
]


def report(usage: dict, **over) -> dict:
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
             "usage": usage}
    event.update(over)
    return event


@pytest.mark.parametrize("usage", USAGES)
def test_a_usage_report_reads_as_the_stream_decoder_reads_it(usage):
    from sluice.providers.answer_relay import reported_usage
    from sluice.providers.openai import usage_from_wire

    for sep in (b"data: ", b"data:"):
        assert reported_usage(b"\n" + sep + orjson.dumps(report(usage)) + b"\n\n") == usage_from_wire(usage)
    # With a choice in the same event (vLLM's continuous usage, a finish with usage).
    with_choice = report(usage, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    assert reported_usage(b"data: " + orjson.dumps(with_choice)) == usage_from_wire(usage)


@pytest.mark.parametrize("event", [
    b"event: usage\ndata: " + orjson.dumps(report(USAGES[0])),  # more than one line
    b"data: " + orjson.dumps(report({"prompt_tokens": None, "completion_tokens": 1})),
    b"data: " + orjson.dumps({"choices": [], "x_groq": {"usage": USAGES[0]}}),  # Groq's place for it
    b": keep-alive",
    b"data: [DONE]",
])
def test_other_usage_shapes_are_left_to_the_stream_decoder(event):
    from sluice.providers.answer_relay import reported_usage

    assert reported_usage(event) is None
