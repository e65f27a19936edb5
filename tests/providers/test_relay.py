"""The same-dialect relay: whole events passed through, read at any split, with usage, errors and
finish reasons looked at — and nothing else."""

from __future__ import annotations

import orjson
import pytest

from sluice.providers.openai import OpenAIStreamDecoder, _wire_finish
from sluice.providers.relay import OpenAIRelay
from sluice.schema import GatewayError


def event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(delta: dict, finish: str | None = None) -> bytes:
    return event({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
                  "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})


USAGE = event({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
BODY = (chunk({"role": "assistant", "content": ""}) + chunk({"content": "Hel"}) + chunk({"content": "lo"})
        + chunk({}, "stop") + USAGE + b"data: [DONE]\n\n")


def relay(keep_usage: bool = True) -> OpenAIRelay:
    return OpenAIRelay(OpenAIStreamDecoder("up"), _wire_finish, keep_usage=keep_usage)


def run(body: bytes, cut: int | None = None, keep_usage: bool = True) -> list:
    r = relay(keep_usage)
    pieces = [body] if cut is None else [body[:cut], body[cut:]]
    out = [c for piece in pieces for c in r.feed(piece)]
    return out + r.finish()


def test_events_pass_through_whole_at_any_split():
    for cut in range(1, len(BODY)):
        out = run(BODY, cut)
        assert b"".join(c.raw for c in out if c.raw) == BODY, cut
        usage = [c.usage for c in out if c.usage is not None]
        assert len(usage) == 1 and usage[0].input_tokens == 7 and usage[0].output_tokens == 3, cut
        assert sum(c.raw_tokens for c in out) >= 3  # role excepted: text, text, finish (+usage, done)


def test_a_first_read_with_only_the_role_is_not_a_token_yet():
    r = relay()
    first = r.feed(chunk({"role": "assistant", "content": ""}))
    assert first[0].raw_tokens == 0
    assert r.feed(chunk({"content": "x"}))[0].raw_tokens == 1


def test_crlf_line_ends_are_normalised():
    out = run(BODY.replace(b"\n", b"\r\n"))
    assert b"".join(c.raw for c in out) == BODY


def test_an_error_event_fails_the_stream():
    body = chunk({"role": "assistant", "content": ""}) + event({"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(GatewayError):
        run(body)


def test_vllm_style_error_object_fails_the_stream():
    body = chunk({"content": "a"}) + event({"object": "error", "message": "boom", "type": "InternalServerError",
                                            "code": 500})
    with pytest.raises(GatewayError):
        run(body)


def test_text_ending_in_error_is_not_an_error():
    out = run(chunk({"content": "an error"}) + chunk({}, "stop"))
    assert b"an error" in b"".join(c.raw for c in out)


def test_non_openai_finish_reasons_become_the_decoded_ones():
    out = run(chunk({"content": "x"}) + chunk({}, "eos") + chunk({}, "insufficient_system_resource"))
    raw = b"".join(c.raw for c in out)
    assert b'"finish_reason":"eos"' not in raw and raw.count(b'"finish_reason":"stop"') == 2
    kept = run(chunk({}, "tool_calls"))
    assert b'"finish_reason":"tool_calls"' in kept[0].raw


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter", "stopped", "stop_sequence",
                                    "", "eos", "lengthy", "error"])
def test_only_finish_reasons_outside_openais_set_are_rewritten(reason):
    raw = b"".join(c.raw for c in run(chunk({"content": "x"}) + chunk({}, reason)))
    wanted = _wire_finish(reason) if reason else "stop"
    assert (f'"finish_reason":"{reason}"'.encode() in raw) == (reason == wanted)
    assert f'"finish_reason":"{wanted}"'.encode() in raw


def test_newline_delimited_json_falls_back_to_decoding():
    body = orjson.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}}]}) + b"\n\n"
    out = run(body)
    assert out and out[0].raw is None and out[0].text == "hi"


def _with_usage_nulls(body: bytes) -> bytes:
    """What OpenAI sends when asked for usage: "usage":null on every event but the report."""
    return body.replace(b'"finish_reason":null}]}', b'"finish_reason":null}],"usage":null}').replace(
        b'"finish_reason":"stop"}]}', b'"finish_reason":"stop"}],"usage":null}')


def test_usage_the_client_did_not_ask_for_is_cut_but_still_counted():
    body = _with_usage_nulls(BODY)
    assert body.count(b'"usage":null') == 4
    expected = BODY.replace(USAGE, b"")
    for cut in range(1, len(body)):
        out = run(body, cut, keep_usage=False)
        relayed = b"".join(c.raw for c in out if c.raw)
        assert relayed == expected, cut
        usage = [c.usage for c in out if c.usage is not None]
        assert len(usage) == 1 and usage[0].input_tokens == 7 and usage[0].output_tokens == 3, cut


def test_usage_the_client_asked_for_is_kept_as_sent():
    body = _with_usage_nulls(BODY)
    assert b"".join(c.raw for c in run(body, keep_usage=True) if c.raw) == body


def test_a_usage_report_on_a_chunk_with_choices_is_kept():
    # Groq puts usage under x_groq on the last chunk, which also carries a choice.
    last = event({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
                  "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                  "x_groq": {"usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}})
    body = chunk({"role": "assistant", "content": ""}) + chunk({"content": "Hi"}) + last + b"data: [DONE]\n\n"
    out = run(body, keep_usage=False)
    assert b"".join(c.raw for c in out if c.raw) == body
    assert [c.usage.input_tokens for c in out if c.usage is not None] == [2]
