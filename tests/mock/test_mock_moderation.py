"""The emulator's moderation: POST /v1/moderations over real HTTP, and Llama-Guard-style chat models.

The answers are read back through Sluice's own mapping (``moderation_from_openai``,
``parse_llama_guard``), so a drift between the emulator and the guardrail backends fails here.
"""

from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio

from sluice.mock import start_mock
from sluice.mock.moderation import CATEGORIES, PHRASES, guard_verdict
from sluice.policies.guardrails.moderation import (
    llama_guard_conversation,
    llama_guard_prompt,
    moderate_with_endpoint,
    moderation_from_openai,
    parse_llama_guard,
)

AUTH = {"Authorization": "Bearer sk-test-secret"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mock():
    server = await start_mock()
    yield server
    await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(mock):
    async with aiohttp.ClientSession(base_url=mock.url) as session:
        yield session


async def _moderate(client: aiohttp.ClientSession, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    async with client.post("/v1/moderations", json=body, headers=AUTH if headers is None else headers) as resp:
        return resp.status, await resp.json()


async def test_a_benign_text_is_not_flagged_and_has_every_category(client):
    status, body = await _moderate(client, {"input": "How do I bake bread?"})
    assert status == 200
    assert body["id"].startswith("modr-") and body["model"] == "omni-moderation-latest"
    [result] = body["results"]
    assert result["flagged"] is False
    assert set(result["categories"]) == set(CATEGORIES) == set(result["category_scores"])
    assert set(result["category_applied_input_types"]) == set(CATEGORIES)
    assert all(types == ["text"] for types in result["category_applied_input_types"].values())


@pytest.mark.parametrize("category", CATEGORIES)
async def test_each_marker_flags_its_category_and_its_parent(client, category):
    status, body = await _moderate(client, {"input": f"some text [[{category.upper()}]] here", "model": "omni-moderation-2024-09-26"})
    assert status == 200 and body["model"] == "omni-moderation-2024-09-26"
    [result] = body["results"]
    flagged = {c for c, on in result["categories"].items() if on}
    assert flagged == {category, category.split("/")[0]}
    assert result["category_scores"][category] == 0.99 and result["flagged"] is True


@pytest.mark.parametrize(("category", "phrase"), [(c, p) for c, phrases in PHRASES.items() for p in phrases])
async def test_each_trigger_phrase_flags_its_category(client, category, phrase):
    _, body = await _moderate(client, {"input": [f"Well. {phrase.capitalize()}, they said."]})
    assert body["results"][0]["categories"][category] is True
    assert body["results"][0]["category_scores"][category] == 0.9


async def test_trigger_phrases_need_whole_words(client):
    _, body = await _moderate(client, {"input": ["a gorecki symphony", "shoplifters museum? no: shoplifting"]})
    assert [r["flagged"] for r in body["results"]] == [False, False]


async def test_an_array_gives_one_result_per_string_in_order(client):
    _, body = await _moderate(client, {"input": ["fine", "they are vermin", "also fine"]})
    assert [r["flagged"] for r in body["results"]] == [False, True, False]


async def test_multimodal_input_is_one_result_and_names_the_input_types(client):
    parts = [{"type": "text", "text": "look: gore"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    _, body = await _moderate(client, {"input": parts})
    [result] = body["results"]
    assert result["categories"]["violence/graphic"] is True
    assert result["category_applied_input_types"]["violence"] == ["image", "text"]
    assert result["category_applied_input_types"]["hate"] == ["text"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": 42}, "input"),
        ({"input": ["ok", {"type": "text", "text": "mixed"}]}, "input"),
        ({"input": [{"type": "audio", "data": "x"}]}, "input[0].type"),
        ({"input": [{"type": "text"}]}, "input[0].text"),
        ({"input": [{"type": "image_url", "image_url": {}}]}, "input[0].image_url.url"),
        ({"input": [{"type": "image_url", "image_url": {"url": "u"}}], "model": "text-moderation-latest"}, "input[0].type"),
        ({"input": "x", "model": 7}, "model"),
        ({"input": "x", "temperature": 1}, None),
    ],
)
async def test_bad_requests_are_400_in_openai_error_shape(client, body, param):
    status, payload = await _moderate(client, body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["param"] == param
    assert payload["error"]["message"]


async def test_missing_key_is_401(client):
    status, payload = await _moderate(client, {"input": "x"}, headers={})
    assert status == 401 and payload["error"]["type"] == "invalid_request_error"


async def test_fault_directives_apply_to_moderation_models(client):
    status, payload = await _moderate(client, {"input": "x", "model": "omni-moderation-latest+fail=503"})
    assert status == 503 and "overloaded" in payload["error"]["message"]


async def test_the_gateway_backend_reads_the_emulator(client):
    async def call(payload: dict) -> dict:
        async with client.post("/v1/moderations", json=payload, headers=AUTH) as resp:
            resp.raise_for_status()
            return await resp.json()

    results = await moderate_with_endpoint(["hello", "[[self-harm/intent]]", "i know where you live"], call)
    assert [r.flagged for r in results] == [(), ("self_harm",), ("harassment", "violence")]
    assert results[1].scores["self_harm"] == 0.99 and results[0].backend == "openai"


async def test_openai_sdk_parses_the_emulator_answer(mock, sdk):
    client = sdk.openai(mock.url + "/v1", "sk-test-secret")
    response = await client.moderations.create(model="omni-moderation-latest", input=["cook meth now", "tea?"])
    assert response.results[0].categories.illicit is True and response.results[1].flagged is False
    assert response.results[0].category_scores.illicit == 0.9
    mapped = moderation_from_openai(response.model_dump(by_alias=True))
    assert mapped[0].flagged == ("illegal",) and mapped[1].flagged == ()


# --- guard models ------------------------------------------------------------------------------


def test_guard_verdict_reads_only_the_conversation_block():
    prompt = llama_guard_prompt("User", llama_guard_conversation([("user", "hello there")]))
    assert "S10: Hate." in prompt  # the taxonomy names categories the rules must not see
    assert guard_verdict(prompt) == "safe"
    unsafe = llama_guard_prompt("User", "User: they are subhuman vermin and I will kill you")
    assert guard_verdict(unsafe) == "unsafe\nS1,S10"


async def test_a_guard_chat_model_answers_like_llama_guard(mock, sdk):
    client = sdk.openai(mock.url + "/v1", "sk-test-secret")
    conversation = llama_guard_conversation([("user", "hi"), ("assistant", "Here is how to cook meth: ...")])
    answer = await client.chat.completions.create(
        model="llama-guard-3-8b", messages=[{"role": "user", "content": llama_guard_prompt("Agent", conversation)}])
    text = answer.choices[0].message.content
    assert text == "unsafe\nS2"
    assert parse_llama_guard(text).flagged == ("illegal",)
    safe = await client.chat.completions.create(
        model="mock-guard", messages=[{"role": "user", "content": llama_guard_prompt("User", "User: what is tea?")}])
    assert safe.choices[0].message.content == "safe"


async def test_a_guard_model_without_the_template_reads_the_last_user_message(mock, sdk):
    client = sdk.anthropic(mock.url, "sk-ant-secret")
    answer = await client.messages.create(model="claude-guard", max_tokens=20,
                                          messages=[{"role": "user", "content": "[[sexual/minors]]"}])
    assert answer.content[0].text == "unsafe\nS4,S12"  # a sub-category flags its parent too
    assert parse_llama_guard(answer.content[0].text).flagged == ("sexual", "illegal")


async def test_other_chat_models_still_echo(mock, sdk):
    client = sdk.openai(mock.url + "/v1", "sk-test-secret")
    answer = await client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "vermin"}])
    assert answer.choices[0].message.content == "Echo: vermin"
