"""The guardrail engine: policy selection, input verdicts, restoring placeholders in answers and in
streams split anywhere, and output checks."""

from __future__ import annotations

import msgspec
import pytest

from sluice.policies.auth import Principal
from sluice.policies.guardrails.engine import CheckSpec, Guardrails, PolicySpec
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, GatewayError

EMAIL = "jane.doe@example.com"
CALLER = Principal("key", "k1", key_id="k1", team_id="t1")


def req(text: str, model: str = "gpt") -> ChatRequest:
    return msgspec.convert({"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
                           ChatRequest)


def answer(text: str) -> ChatResponse:
    return msgspec.convert({"id": "r", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}}]}, ChatResponse)


def redacting(**kw) -> Guardrails:
    return Guardrails([PolicySpec("p", input=(CheckSpec("pii", "redact", **kw),), models=("gpt*",))])


def test_policy_selection_by_alias_team_and_key():
    g = Guardrails([PolicySpec("team-only", models=("*",), teams=("t2",)), PolicySpec("any", models=("gpt*",))])
    assert g.policy_for(CALLER, "gpt-4o").name == "any"
    assert g.policy_for(CALLER, "claude") is None
    assert g.policy_for(Principal("key", "k2", key_id="k2", team_id="t2"), "claude").name == "team-only"


async def test_reversible_redaction_round_trip():
    redacted, session = await redacting().start(CALLER, req(f"mail {EMAIL} now"))
    sent = redacted.messages[0].text()
    assert EMAIL not in sent and "[EMAIL_1]" in sent
    restored = await session.finish_response(answer(f"I will write to {sent.split()[1]}"))
    assert restored.choices[0].message.text() == f"I will write to {EMAIL}"
    assert "pii=redact" in session.header()


async def test_mask_mode_keeps_nothing():
    redacted, session = await redacting(mode="mask").start(CALLER, req(f"mail {EMAIL}"))
    assert EMAIL not in redacted.messages[0].text() and session.vault is None


async def test_placeholders_split_across_stream_chunks_are_restored():
    redacted, session = await redacting().start(CALLER, req(f"mail {EMAIL}"))
    text = f"Writing to {redacted.messages[0].text().split()[1]} today."
    for cut in range(1, len(text)):
        async def batches():
            yield [ChatChunk(role="assistant")]
            yield [ChatChunk(text=text[:cut])]
            yield [ChatChunk(text=text[cut:]), ChatChunk(finish_reason="stop")]

        out = "".join([c.text or "" async for batch in session.guard_stream(batches()) for c in batch])
        assert out == f"Writing to {EMAIL} today.", cut


async def test_a_stream_ending_without_finish_releases_held_text():
    _, session = await redacting().start(CALLER, req(f"mail {EMAIL}"))

    async def batches():
        yield [ChatChunk(text="ends with [EMA")]

    out = "".join([c.text or "" async for batch in session.guard_stream(batches()) for c in batch])
    assert out == "ends with [EMA"


async def test_blocks_are_gateway_errors_in_the_clients_dialect():
    g = Guardrails([PolicySpec("p", input=(CheckSpec("max_length", "block", max_chars=5),))])
    with pytest.raises(GatewayError) as refused:
        await g.start(CALLER, req("far too long"))
    assert refused.value.status == 400 and refused.value.code == "guardrail_blocked"


async def test_output_checks():
    g = Guardrails([PolicySpec("p", output=(CheckSpec("pii", "redact"),))])
    _, session = await g.start(CALLER, req("hi"))
    masked = await session.finish_response(answer(f"contact {EMAIL}"))
    assert EMAIL not in masked.choices[0].message.text()
    g = Guardrails([PolicySpec("p", output=(CheckSpec("max_length", "block", max_chars=3),))])
    _, session = await g.start(CALLER, req("hi"))
    with pytest.raises(GatewayError):
        await session.finish_response(answer("a long answer"))


@pytest.mark.parametrize("stage, spec, message", [
    ("output", CheckSpec("injection"), "input only"),
    ("input", CheckSpec("json_schema"), "output only"),
    ("input", CheckSpec("max_length"), "max_chars"),
    ("input", CheckSpec("webhook"), "url"),
    ("input", CheckSpec("python", target="no_such_module:fn"), "cannot import"),
    ("input", CheckSpec("moderation", action="redact"), "not redact"),
    ("input", CheckSpec("moderation", backend="endpoint"), "needs model"),
    ("input", CheckSpec("topics"), "allow or a deny list"),
])
def test_config_mistakes_name_the_policy_and_check(stage, spec, message):
    with pytest.raises(ValueError) as bad:
        Guardrails([PolicySpec("strict", **{stage: (spec,)})])
    assert message in str(bad.value) and "policy 'strict'" in str(bad.value) and f"{stage} check 1" in str(bad.value)


async def test_a_policy_with_input_checks_only_lets_a_stream_pass_untouched():
    g = Guardrails([PolicySpec("p", input=(CheckSpec("injection", "block"),))])
    _, session = await g.start(CALLER, req("hello"))

    async def batches():
        yield [ChatChunk(text="hi")]

    stream = batches()
    assert not session.watches_output() and session.guard_stream(stream) is stream


async def test_stream_scanner_holds_text_until_scanned_and_blocks_before_it_leaves():
    from sluice.policies.guardrails.engine import StreamSpec

    g = Guardrails([PolicySpec("p", output=(CheckSpec("pii", "block"),), stream=StreamSpec(every=50, window=700,
                                                                                             overlap=50))])
    _, session = await g.start(CALLER, req("hi"))
    words = [f"w{i} " for i in range(60)] + ["card 4111 1111 ", "1111 1111 ", "end"]

    async def batches():
        for w in words:
            yield [ChatChunk(text=w)]

    released = []
    with pytest.raises(GatewayError) as refused:
        async for batch in session.guard_stream(batches()):
            released += [c.text for c in batch if c.text]
    assert refused.value.code == "guardrail_blocked"
    assert released and "".join(released).startswith("w0 ") and "4111" not in "".join(released)
    assert "pii=block" in session.header()


async def test_a_request_with_a_broken_schema_is_refused_before_the_call():
    import msgspec as _m

    from sluice.schema import ChatRequest as _Req

    g = Guardrails([PolicySpec("p", output=(CheckSpec("json_schema"),))])
    bad = _m.convert({"model": "gpt", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                      "response_format": {"type": "json_schema", "name": "n", "schema": {"type": "no-such-type"}}},
                     _Req)
    with pytest.raises(GatewayError) as refused:
        await g.start(CALLER, bad)
    assert refused.value.status == 400 and refused.value.param == "response_format"
    with pytest.raises(ValueError):
        Guardrails([PolicySpec("p", output=(CheckSpec("json_schema", schema={"type": 5}),))])


async def _drain(stream) -> tuple[str, GatewayError | None]:
    text = []
    try:
        async for batch in stream:
            text += [c.text for c in batch if c.text]
    except GatewayError as err:
        return "".join(text), err
    return "".join(text), None


async def test_whole_answer_checks_run_when_a_stream_ends():
    """An entry point and the JSON-schema check see the whole streamed answer at its end: the
    text already went out, the stream ends with the block instead of its normal ending."""
    g = Guardrails([PolicySpec("p", output=(
        CheckSpec("python", target="tests.policies.guardrail_entrypoints:keyword_sync"),))])
    _, session = await g.start(CALLER, req("hi"))

    async def answer(*parts):
        for part in parts:
            yield [ChatChunk(text=part)]

    text, err = await _drain(session.guard_stream(answer("all fine, ", "nothing forbidden ", "here")))
    assert text == "all fine, nothing forbidden here" and err is not None and err.code == "guardrail_blocked"
    assert "keyword_sync=block" in session.header()
    _, session = await g.start(CALLER, req("hi"))
    assert await _drain(session.guard_stream(answer("clean ", "text"))) == ("clean text", None)

    schema = Guardrails([PolicySpec("p", output=(CheckSpec("json_schema", schema={"type": "object"}),))])
    _, session = await schema.start(CALLER, req("hi"))
    _, err = await _drain(session.guard_stream(answer('{"a": ', "1")))
    assert err is not None and "json_schema" in err.message
    _, session = await schema.start(CALLER, req("hi"))
    assert (await _drain(session.guard_stream(answer('{"a": ', "1}"))))[1] is None
