"""Issue 6, the rest of the framework, end to end through the official SDKs: output checks on
streams (a violation ends the stream with an error event before the offending text leaves),
JSON-schema validation with a repair retry, webhook and Python entry-point checks (timeouts and
fail policies), topic lists, and verdicts in the audit log."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from aiohttp import web

from sluice.config import parse_config
from sluice.server import start
from tests.e2e.conftest import MASTER_KEY, gateway_config

CARD = "4111 1111 1111 1111"
LONG = " ".join(f"word{i}" for i in range(120))  # ~1,000 characters before the card
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}


@pytest_asyncio.fixture(scope="module")
async def hook():
    """A webhook the test controls: blocks 'forbidden', redacts 'project-x', stalls on 'slowly'."""
    seen: list[dict] = []

    async def check(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        text = body["text"]
        if "slowly" in text:
            await asyncio.sleep(2)
        if "forbidden" in text:
            return web.json_response({"action": "block", "score": 0.9, "reasons": ["forbidden word"]})
        if "project-x" in text:
            return web.json_response({"action": "redact", "text": text.replace("project-x", "[codename]")})
        return web.json_response({"action": "allow"})

    app = web.Application()
    app.router.add_post("/check", check)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/check", seen
    await runner.cleanup()


def _alias(model: str = "gpt-4o-mini") -> dict:
    return {"deployments": [{"provider": "oai", "model": model}]}


@pytest_asyncio.fixture(scope="module")
async def guarded(mock, pg_url, tmp_path_factory, hook):
    url, _ = hook
    raw = gateway_config(mock.url, pg_url, str(tmp_path_factory.mktemp("guard2") / "spill.jsonl"))
    for alias in ("out-pii", "out-topics", "json-repair", "json-strict", "hooked", "hooked-open", "python-hooked",
                  "topical", "moderated", "moderated-out", "moderated-remote", "moderated-guard"):
        raw["models"][alias] = _alias()
    raw["models"]["moderation-model"] = _alias("omni-moderation-latest")
    raw["models"]["guard-model"] = _alias("llama-guard-3-8b")
    raw["guardrails"] = {"policies": {
        "out-pii": {"models": ["out-pii", "claude-mock"], "output": [{"check": "pii", "action": "block"}],
                    "stream": {"every": 100, "window": 1000, "overlap": 100}},
        "out-topics": {"models": ["out-topics"], "output": [
            {"check": "topics", "action": "block", "deny": [{"name": "crypto", "keywords": ["bitcoin"]}]}]},
        "json-repair": {"models": ["json-repair"], "output": [{"check": "json_schema", "repair": True}]},
        "json-strict": {"models": ["json-strict"], "output": [{"check": "json_schema", "action": "block"}]},
        "hooked": {"models": ["hooked"], "input": [{"check": "webhook", "url": url, "name": "policy-svc",
                                                    "timeout": 0.5}],
                   "output": [{"check": "webhook", "url": url, "name": "policy-svc"}]},
        "hooked-open": {"models": ["hooked-open"], "input": [
            {"check": "webhook", "url": url, "timeout": 0.5, "fail": "open"}]},
        "python-hooked": {"models": ["python-hooked"], "input": [
            {"check": "python", "target": "tests.policies.guardrail_entrypoints:keyword_sync"}]},
        "moderated": {"models": ["moderated"], "input": [{"check": "moderation"}]},
        "moderated-out": {"models": ["moderated-out"], "output": [{"check": "moderation"}]},
        "moderated-remote": {"models": ["moderated-remote"], "input": [
            {"check": "moderation", "backend": "endpoint", "model": "moderation-model"}]},
        "moderated-guard": {"models": ["moderated-guard"], "input": [
            {"check": "moderation", "backend": "llama_guard", "model": "guard-model", "categories": ["violence"]}]},
        "topical": {"models": ["topical"], "input": [
            {"check": "topics", "deny": [{"name": "medical", "keywords": ["diagnosis", "prescription"]}]}]},
    }}
    gw = await start(parse_config(raw), "127.0.0.1", 0)
    yield gw
    await gw.stop()


# ---- streams: incremental output checks -----------------------------------------------------


async def test_a_stream_that_violates_the_output_policy_ends_with_an_error_event(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    received = []
    stream = await client.chat.completions.create(
        model="out-pii", stream=True, messages=[{"role": "user", "content": f"{LONG} card {CARD} end"}])
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    text = "".join(received)
    assert text.startswith("Echo: word0") and len(text) > 500  # scanned text was released as it went
    assert "4111" not in text  # …but not the window holding the card
    assert "guardrail" in str(failed.value)


async def test_an_anthropic_stream_is_cut_with_its_error_event(guarded, sdk):
    claude = sdk.anthropic(guarded.url, MASTER_KEY)
    received = []
    with pytest.raises(anthropic.APIError):
        async with claude.messages.stream(model="claude-mock", max_tokens=400, messages=[
                {"role": "user", "content": f"{LONG} card {CARD}"}]) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert "4111" not in "".join(received)


async def test_a_clean_stream_passes_whole(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    stream = await client.chat.completions.create(model="out-pii", stream=True,
                                                  messages=[{"role": "user", "content": LONG}])
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == f"Echo: {LONG}"


async def test_deny_keywords_cut_a_stream_and_block_a_json_answer(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    stream = await client.chat.completions.create(model="out-topics", stream=True,
                                                  messages=[{"role": "user", "content": "tell me about Bitcoin"}])
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="out-topics",
                                             messages=[{"role": "user", "content": "tell me about bitcoin"}])
    assert refused.value.body["code"] == "guardrail_blocked"


# ---- structured output ------------------------------------------------------------------------


def _json_format() -> dict:
    return {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}


async def test_invalid_json_is_repaired_with_one_more_call(guarded, sdk, upstream_log):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    raw = await client.chat.completions.with_raw_response.create(
        model="json-repair", response_format=_json_format(),
        messages=[{"role": "user", "content": "Largest city? [[invalid-json]]"}])
    answer = json.loads(raw.parse().choices[0].message.content)
    assert set(answer) == {"city", "population"}
    assert "json_schema=redact" in raw.headers["x-sluice-guardrails"]
    sent = await upstream_log("gpt-4o-mini")
    assert len(sent) == 2  # the answer, then the repair
    repair = json.dumps(sent[1]["body"]["messages"])
    assert "not valid JSON" in repair or "JSON" in repair
    assert raw.parse().usage.prompt_tokens > 0


async def test_invalid_json_without_repair_is_refused(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="json-strict", response_format=_json_format(),
                                             messages=[{"role": "user", "content": "City? [[invalid-json]]"}])
    assert "json_schema" in refused.value.body["message"]
    ok = await client.chat.completions.create(model="json-strict", response_format=_json_format(),
                                              messages=[{"role": "user", "content": "City?"}])
    assert set(json.loads(ok.choices[0].message.content)) == {"city", "population"}


# ---- webhooks and entry points ----------------------------------------------------------------


async def test_webhook_blocks_redacts_and_sees_the_context(guarded, sdk, hook, upstream_log):
    _, seen = hook
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="hooked", messages=[{"role": "user", "content": "a forbidden ask"}])
    assert "policy-svc" in refused.value.body["message"]
    assert await upstream_log("gpt-4o-mini") == []
    raw = await client.chat.completions.with_raw_response.create(
        model="hooked", messages=[{"role": "user", "content": "status of project-x please"}])
    sent = json.dumps((await upstream_log("gpt-4o-mini"))[0]["body"])
    assert "project-x" not in sent and "[codename]" in sent
    assert "policy-svc=redact" in raw.headers["x-sluice-guardrails"]
    first = seen[-2]  # input check of the second call; then the output check
    assert first["stage"] == "input" and first["model"] == "hooked" and first["request_id"]
    assert seen[-1]["stage"] == "output"


async def test_a_slow_webhook_fails_closed_or_open_as_configured(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="hooked", messages=[{"role": "user", "content": "go slowly"}])
    assert "unavailable" in refused.value.body["message"]
    raw = await client.chat.completions.with_raw_response.create(
        model="hooked-open", messages=[{"role": "user", "content": "go slowly"}])
    assert raw.parse().choices[0].message.content == "Echo: go slowly"
    assert "webhook=allow" in raw.headers["x-sluice-guardrails"]


async def test_python_entry_point_check(guarded, sdk):
    client = sdk.anthropic(guarded.url, MASTER_KEY)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="python-hooked", max_tokens=20,
                                     messages=[{"role": "user", "content": "something forbidden"}])
    assert "keyword_sync" in refused.value.message
    ok = await client.messages.create(model="python-hooked", max_tokens=20,
                                      messages=[{"role": "user", "content": "fine"}])
    assert ok.content[0].text == "Echo: fine"


async def test_topic_deny_list_on_input(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="topical", messages=[
            {"role": "user", "content": "What prescription should I take?"}])
    ok = await client.chat.completions.create(model="topical", messages=[{"role": "user", "content": "Weather?"}])
    assert ok.choices[0].message.content == "Echo: Weather?"


# ---- content moderation ----------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["moderated", "moderated-remote", "moderated-guard"])
async def test_moderation_blocks_by_category_with_each_backend(guarded, sdk, alias, upstream_log):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    await upstream_log()  # clears the emulator's log
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=alias, messages=[
            {"role": "user", "content": "Listen carefully: I will kill you and your family tonight."}])
    assert "moderation" in refused.value.body["message"] and "violence" in refused.value.body["message"]
    assert await upstream_log("gpt-4o-mini") == []  # refused before the model saw it
    raw = await client.chat.completions.with_raw_response.create(model=alias, messages=[
        {"role": "user", "content": "How do I kill a stuck python process on Linux?"}])
    assert raw.parse().choices[0].message.content.startswith("Echo:")
    assert "moderation=allow" in raw.headers["x-sluice-guardrails"]


async def test_local_moderation_cuts_a_harmful_stream(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    # Only the answer is checked here; the emulator's answer repeats the threat.
    stream = await client.chat.completions.create(model="moderated-out", stream=True, messages=[
        {"role": "user", "content": "I will kill you"}])
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


# ---- the audit log ---------------------------------------------------------------------------


async def test_guardrail_actions_reach_the_audit_log(guarded, sdk):
    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="topical", messages=[
            {"role": "user", "content": "Give me a diagnosis."}])
    rid = refused.value.response.headers["x-request-id"]
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        for _ in range(40):  # the ledger writes in batches, off the request path
            async with http.get(f"{guarded.url}/admin/audit", params={"action": "guardrail.block"}) as r:
                entries = (await r.json())["data"]
            found = [e for e in entries if e["request_id"] == rid]
            if found:
                break
            await asyncio.sleep(0.1)
    assert found and found[0]["object_type"] == "call" and "topics=block" in found[0]["after"]["verdicts"]
    assert found[0]["after"]["model"] == "topical"


@pytest.mark.parametrize("alias, endpoint", [("moderated-remote", "moderations"), ("moderated-guard", "guardrail")])
async def test_calls_a_guardrail_makes_are_in_the_ledger(guarded, sdk, pg_url, alias, endpoint):
    from sqlalchemy import select

    from sluice.store.db import Database
    from sluice.store.models import UsageRecord

    client = sdk.openai(f"{guarded.url}/v1", MASTER_KEY)
    raw = await client.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "What is the capital of Peru?"}])
    rid = raw.headers["x-request-id"]
    db = Database(pg_url)
    try:
        for _ in range(40):
            async with db.session() as s:
                rows = list((await s.execute(select(UsageRecord).where(
                    UsageRecord.request_id.like(f"{rid}/guardrail-%")))).scalars())
            if rows:
                break
            await asyncio.sleep(0.1)
    finally:
        await db.close()
    assert len(rows) == 1 and rows[0].endpoint == endpoint and rows[0].status == 200
    assert rows[0].model == ("moderation-model" if endpoint == "moderations" else "guard-model")
    if endpoint == "guardrail":
        assert rows[0].input_tokens > 0 and rows[0].upstream_model == "llama-guard-3-8b"
