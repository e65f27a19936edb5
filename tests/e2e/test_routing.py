"""Routing policies against the emulator's faults: retries, Retry-After, fallbacks, context windows, strategies."""

from __future__ import annotations

import time

import openai
import pytest

from sluice.mock import expected_text_reply

HI = [{"role": "user", "content": "hi"}]


async def test_retry_same_deployment_after_a_5xx(oai):
    raw = await oai.chat.completions.with_raw_response.create(model="retry-once", messages=HI)
    assert raw.headers["x-sluice-attempts"] == "2"
    assert raw.parse().choices[0].message.content == expected_text_reply("hi")


async def test_retry_waits_for_retry_after(oai):
    started = time.monotonic()
    raw = await oai.chat.completions.with_raw_response.create(model="retry-after-1s", messages=HI)
    assert raw.headers["x-sluice-attempts"] == "2"
    assert time.monotonic() - started >= 0.95  # the upstream asked for one second


async def test_retry_after_longer_than_the_limit_is_not_waited(oai):
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(model="rate-limited", messages=HI)  # Retry-After: 7
    assert time.monotonic() - started < 2


async def test_fallback_chain_to_another_alias(oai, upstream_log):
    raw = await oai.chat.completions.with_raw_response.create(model="primary-down", messages=HI)
    assert raw.headers["x-sluice-fallback"] == "gpt-mock"
    assert raw.parse().choices[0].message.content == expected_text_reply("hi")
    assert [r["body"]["model"] for r in await upstream_log()] == ["gpt-4o-mini+fail=503", "gpt-4o-mini"]


async def test_fallback_for_streams(oai):
    stream = await oai.chat.completions.create(model="primary-down", messages=HI, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == expected_text_reply("hi")


async def test_oversized_prompt_takes_the_context_window_fallback(oai, upstream_log):
    short = await oai.chat.completions.with_raw_response.create(model="tiny-window", messages=HI)
    assert short.headers["x-sluice-deployment"] == "small" and "x-sluice-fallback" not in short.headers
    long_prompt = [{"role": "user", "content": "word " * 200}]  # ~250 tokens > the 60-token window
    raw = await oai.chat.completions.with_raw_response.create(model="tiny-window", messages=long_prompt)
    assert raw.headers["x-sluice-fallback"] == "claude-mock"
    assert (await upstream_log())[-1]["path"] == "/v1/messages"  # never sent to the small model


async def test_priority_strategy(oai):
    for _ in range(5):
        raw = await oai.chat.completions.with_raw_response.create(model="by-priority", messages=HI)
        assert raw.headers["x-sluice-deployment"] == "first"


async def test_round_robin_alternates(oai):
    seen = []
    for _ in range(4):
        raw = await oai.chat.completions.with_raw_response.create(model="rotating", messages=HI)
        seen.append(raw.headers["x-sluice-deployment"])
    assert seen[0] != seen[1] and seen[:2] == seen[2:]


@pytest.mark.parametrize("headers, messages, rule, deployment", [
    ({"x-sluice-tags": "free"}, HI, "free-tier", "gem/gemini-2.5-flash"),
    ({"x-tier": "gold"}, HI, "gold-header", "claude/claude-sonnet-4-5"),
    ({}, [{"role": "user", "content": "long " * 3000}], "long-prompts", "claude/claude-sonnet-4-5"),
    ({}, HI, None, "oai/gpt-4o-mini"),
])
async def test_conditional_rules(oai, headers, messages, rule, deployment):
    raw = await oai.chat.completions.with_raw_response.create(model="gpt-mock", messages=messages,
                                                              extra_headers=headers)
    assert raw.headers.get("x-sluice-rule") == rule
    assert raw.headers["x-sluice-deployment"] == deployment
    assert raw.parse().model == "gpt-mock"  # the client still sees the alias it asked for


@pytest.mark.parametrize("text, route, deployment", [
    ("Write a python function that removes duplicates from a list", "code", "oai/gpt-4o-mini"),
    ("What is the integral of 2x from 0 to 3?", "math", "claude/claude-sonnet-4-5"),
    ("Suggest a name for my new puppy", "below_threshold", "gem/gemini-2.5-flash"),
])
async def test_semantic_alias_routes_by_meaning(oai, text, route, deployment):
    raw = await oai.chat.completions.with_raw_response.create(model="auto",
                                                              messages=[{"role": "user", "content": text}])
    assert raw.headers["x-sluice-semantic-route"] == route
    assert raw.headers["x-sluice-deployment"] == deployment
    assert raw.parse().model == "auto"


async def test_semantic_alias_is_listed(oai):
    assert "auto" in {m.id async for m in oai.models.list()}


async def test_lowest_latency_moves_traffic_to_the_faster_deployment(oai):
    seen = []
    for _ in range(20):
        raw = await oai.chat.completions.with_raw_response.create(model="fastest", messages=HI)
        seen.append(raw.headers["x-sluice-deployment"])
    # Both are measured once (unmeasured goes first), then the faster one takes the traffic.
    assert seen[2:].count("quick") >= 17


async def test_least_busy_spreads_concurrent_calls(oai):
    import asyncio

    raws = await asyncio.gather(*(oai.chat.completions.with_raw_response.create(model="least-busy", messages=HI)
                                  for _ in range(6)))
    counts = {name: [r.headers["x-sluice-deployment"] for r in raws].count(name) for name in ("busy-a", "busy-b")}
    assert counts == {"busy-a": 3, "busy-b": 3}


async def test_time_to_first_token_limit_fails_over(oai):
    started = time.monotonic()
    stream = await oai.chat.completions.with_raw_response.create(model="ttft-limited", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text == expected_text_reply("hi")
    assert stream.headers["x-sluice-deployment"] == "backup" and stream.headers["x-sluice-attempts"] == "2"
    assert time.monotonic() - started < 2.0  # not the 3 s stall
