"""The response cache's pure parts: keys, namespaces, policy, the LRU store, stream assembly and replay."""

from __future__ import annotations

import asyncio

import msgspec

from sluice.policies.auth import Principal
from sluice.policies.cache import (
    CacheSettings,
    ResponseCache,
    StreamAssembler,
    replay_chunks,
    request_digest,
)
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, ToolCallDelta, Usage
from sluice.store.response_cache import LocalResponseStore


def req(**kw) -> ChatRequest:
    base = {"model": "gpt", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "temperature": 0.0}
    return msgspec.convert(base | kw, ChatRequest)


TEAM_A = Principal("key", "k1", key_id="k1", team_id="team-a")
TEAM_A_OTHER_KEY = Principal("key", "k2", key_id="k2", team_id="team-a")
TEAM_B = Principal("key", "k3", key_id="k3", team_id="team-b")


def test_key_ignores_stream_user_and_metadata_but_not_sampling():
    assert request_digest(req()) == request_digest(req(stream=True, include_usage=True, user="u", metadata={"a": 1}))
    assert request_digest(req()) != request_digest(req(temperature=0.5))
    assert request_digest(req()) != request_digest(req(max_tokens=5))
    assert request_digest(req()) != request_digest(req(model="other"))


def test_key_does_not_depend_on_dict_order():
    a = req(tools=[{"name": "f", "parameters": {"type": "object", "properties": {"x": {}, "y": {}}}}])
    b = req(tools=[{"name": "f", "parameters": {"properties": {"y": {}, "x": {}}, "type": "object"}}])
    assert request_digest(a) == request_digest(b)


def test_namespaces():
    team = ResponseCache(LocalResponseStore(), CacheSettings(namespace="team"))
    assert team.plan(req(), TEAM_A, None).key == team.plan(req(), TEAM_A_OTHER_KEY, None).key
    assert team.plan(req(), TEAM_A, None).key != team.plan(req(), TEAM_B, None).key
    per_key = ResponseCache(LocalResponseStore(), CacheSettings(namespace="key"))
    assert per_key.plan(req(), TEAM_A, None).key != per_key.plan(req(), TEAM_A_OTHER_KEY, None).key
    shared = ResponseCache(LocalResponseStore(), CacheSettings(namespace="global"))
    assert shared.plan(req(), TEAM_A, None).key == shared.plan(req(), TEAM_B, None).key


def test_policy_and_per_request_controls():
    cache = ResponseCache(LocalResponseStore(), CacheSettings(ttl=60, model_ttl={"gpt": 30}))
    assert cache.plan(req(temperature=None), TEAM_A, None) is None  # unset = the providers' default of 1
    assert cache.plan(req(tools=[{"name": "f"}]), TEAM_A, None) is None
    plan = cache.plan(req(), TEAM_A, None)
    assert (plan.lookup, plan.store, plan.ttl) == (True, True, 30)
    plan = cache.plan(req(), TEAM_A, {"cache-control": "no-cache"})
    assert (plan.lookup, plan.store) == (False, True)
    plan = cache.plan(req(), TEAM_A, {"cache-control": "no-store"})
    assert (plan.lookup, plan.store) == (False, False)
    assert cache.plan(req(), TEAM_A, {"x-sluice-cache-ttl": "5"}).ttl == 5
    assert cache.plan(req(), TEAM_A, {"x-sluice-cache-ttl": "0"}).store is False
    assert cache.plan(req(), TEAM_A, {"x-sluice-cache-ttl": "soon"}).ttl == 30  # malformed: ignored
    any_temperature = ResponseCache(LocalResponseStore(), CacheSettings(max_temperature=None, tools=True))
    assert any_temperature.plan(req(temperature=1.5, tools=[{"name": "f"}]), TEAM_A, None) is not None


async def test_local_store_bounds_ttl_and_purge():
    store = LocalResponseStore(max_entries=2, max_bytes=1000)
    await store.set("gpt\x1ft:a\x1f1", b"one", 60)
    await store.set("gpt\x1ft:b\x1f2", b"two", 60)
    assert await store.get("gpt\x1ft:a\x1f1") == b"one"  # now the most recently used
    await store.set("claude\x1ft:a\x1f3", b"three", 60)  # evicts the least recently used: 2
    assert await store.get("gpt\x1ft:b\x1f2") is None
    await store.set("gpt\x1ft:a\x1f4", b"x" * 2000, 60)  # larger than the whole store: not kept
    assert await store.get("gpt\x1ft:a\x1f4") is None
    await store.set("gpt\x1ft:a\x1f5", b"short", 0.05)
    await asyncio.sleep(0.06)
    assert await store.get("gpt\x1ft:a\x1f5") is None
    assert await store.purge("claude", None) == 1
    assert await store.size() == 0
    await store.set("gpt\x1ft:a\x1f6", b"six", 60)
    await store.set("gpt\x1ft:b\x1f7", b"seven", 60)
    assert await store.purge(None, "t:a") == 1
    assert await store.get("gpt\x1ft:b\x1f7") == b"seven"


def test_assembled_stream_replays_to_the_same_chunks_content():
    assembler = StreamAssembler()
    for chunk in [ChatChunk(role="assistant", id="c1", model="m"), ChatChunk(text="Hel"), ChatChunk(text="lo"),
                  ChatChunk(tool_calls=[ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a"')]),
                  ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments=": 1}")]),
                  ChatChunk(finish_reason="tool_calls"), ChatChunk(usage=Usage(input_tokens=3, output_tokens=4))]:
        assembler.add(chunk)
    resp: ChatResponse = assembler.response("gpt")
    message = resp.choices[0].message
    assert message.text() == "Hello" and message.tool_calls[0].arguments == '{"a": 1}'
    assert resp.choices[0].finish_reason == "tool_calls" and resp.usage.output_tokens == 4
    again = StreamAssembler()
    for chunk in replay_chunks(resp):
        again.add(chunk)
    assert again.response("gpt") == resp
