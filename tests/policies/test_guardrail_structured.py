"""Structured output: the schema a client asked for (through both dialects), validating answers
against it, fence stripping, the repair request, and that a schema never makes us fetch a URL."""

from __future__ import annotations

import pytest
import pytest_asyncio
from aiohttp import web

from sluice.api.anthropic_dialect import parse_request as parse_anthropic
from sluice.api.openai_dialect import parse_chat_request as parse_openai
from sluice.policies.guardrails.structured import (
    InvalidSchema,
    compiled,
    extract_json,
    repair_request,
    schema_of,
    schema_problem,
    validate_json_output,
)
from sluice.schema import ChatRequest, Message, ResponseFormat, TextPart

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
        "address": {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["zip"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def chat(response_format: ResponseFormat | None = None, *extra: Message) -> ChatRequest:
    return ChatRequest(model="gpt", messages=[Message(role="system", content=[TextPart(text="be terse")]),
                                              Message(role="user", content=[TextPart(text="who?")]), *extra],
                       response_format=response_format, temperature=0.2)


# ---------------------------------------------------------------------------------- schema_of


def test_schema_of_openai_requests():
    base = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    assert schema_of(parse_openai(base)) is None
    assert schema_of(parse_openai({**base, "response_format": {"type": "text"}})) is None
    assert schema_of(parse_openai({**base, "response_format": {"type": "json_object"}})) == {"type": "object"}
    with_schema = {**base, "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "person", "schema": PERSON, "strict": True}}}
    assert schema_of(parse_openai(with_schema)) == PERSON
    no_schema = {**base, "response_format": {"type": "json_schema", "json_schema": {"name": "anything"}}}
    assert schema_of(parse_openai(no_schema)) == {}


def test_schema_of_anthropic_requests():
    body = {"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    assert schema_of(parse_anthropic(body)) is None
    structured = {**body, "output_config": {"format": {"type": "json_schema", "schema": PERSON}}}
    assert schema_of(parse_anthropic(structured)) == PERSON


def test_json_object_schema_is_a_fresh_copy():
    req = chat(ResponseFormat(type="json_object"))
    schema_of(req)["required"] = ["x"]
    assert schema_of(req) == {"type": "object"}


# -------------------------------------------------------------------------------- validation


def test_valid_answers():
    assert validate_json_output('{"name": "Ada", "age": 36}', PERSON) == []
    assert validate_json_output('{"name": "Ada", "age": 36, "emails": ["not-an-email"]}', PERSON) == []  # no formats
    assert validate_json_output("[1, 2]", None) == []
    assert validate_json_output('"just a string"', {}) == []


def test_violations_name_their_json_path():
    errors = validate_json_output(
        '{"name": 7, "age": -1, "emails": ["a", 2], "address": {"zip": "ABC"}, "extra": true}', PERSON)
    assert errors == [
        "$: Additional properties are not allowed ('extra' was unexpected)",
        "$.address.zip: 'ABC' does not match '^[0-9]{5}$'",
        "$.age: -1 is less than the minimum of 0",
        "$.emails[1]: 2 is not of type 'string'",
        "$.name: 7 is not of type 'string'",
    ]
    assert validate_json_output('{"name": "Ada"}', PERSON) == ["$: 'age' is a required property"]
    assert validate_json_output("[]", {"type": "object"}) == ["$: [] is not of type 'object'"]


def test_not_json_at_all():
    assert validate_json_output("Sure! Ada is 36.", PERSON) == \
        ["the answer is not valid JSON: Expecting value at line 1 column 1"]
    assert validate_json_output('{"name": "Ada", "age": 36', PERSON)[0].startswith(
        "the answer is not valid JSON: Expecting ',' delimiter")
    assert validate_json_output("   ", None) == ["the answer is empty; expected JSON"]
    assert validate_json_output('{"age": NaN}', None) == ["the answer is not valid JSON: NaN is not a JSON value"]
    assert validate_json_output("[" * 100_000 + "]" * 100_000, None)[0].startswith("the answer is not")


def test_many_errors_are_capped_and_long_messages_clipped():
    schema = {"type": "array", "items": {"type": "integer"}}
    errors = validate_json_output("[" + ",".join('"x"' for _ in range(30)) + "]", schema)
    assert len(errors) == 9 and errors[-1] == "… and 22 more"
    long = validate_json_output('{"a": "' + "y" * 5000 + '"}', {"properties": {"a": {"maxLength": 3}}})
    assert len(long) == 1 and len(long[0]) <= 300 and long[0].endswith("…")


@pytest.mark.parametrize("answer", [
    '```json\n{"name": "Ada", "age": 36}\n```',
    '```\n{"name": "Ada", "age": 36}\n```',
    '  ```JSON  \r\n{"name": "Ada", "age": 36}\r\n```  ',
    'Here is the JSON you asked for:\n\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?',
    '```json\n{"name": "Ada", "age": 36}',  # closing fence cut off
    '\n{"name": "Ada", "age": 36}\n',
])
def test_fenced_answers_are_validated_by_their_content(answer):
    assert extract_json(answer) == '{"name": "Ada", "age": 36}'
    assert validate_json_output(answer, PERSON) == []


def test_extract_json_leaves_other_text_alone():
    assert extract_json("no json here") == "no json here"
    assert extract_json('{"code": "```python\\nx\\n```"}') == '{"code": "```python\\nx\\n```"}'


def test_validators_are_compiled_once_per_distinct_schema():
    a = {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}
    b = {"properties": {"x": {"type": "string"}}, "required": ["x"], "type": "object"}  # same, reordered
    assert compiled(a) is compiled(b)
    assert compiled(a) is not compiled({"type": "array"})


def test_broken_schemas_are_the_clients_fault():
    assert schema_problem(PERSON) is None
    assert schema_problem({"type": "objekt"}) == \
        "the JSON schema is invalid at $.type: 'objekt' is not valid under any of the given schemas"
    assert "$.properties.a.minimum" in schema_problem({"properties": {"a": {"minimum": "zero"}}})
    assert schema_problem([]) == "a JSON schema must be an object, not list"
    with pytest.raises(InvalidSchema):
        validate_json_output("{}", {"type": 5})
    with pytest.raises(InvalidSchema, match="cannot be resolved"):
        validate_json_output("{}", {"$ref": "#/$defs/missing"})


def test_local_refs_and_explicit_draft():
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"n": {"type": "integer"}},
              "type": "array", "items": {"$ref": "#/definitions/n"}}
    assert validate_json_output("[1, 2]", schema) == []
    assert validate_json_output('[1, "2"]', schema) == ["$[1]: '2' is not of type 'integer'"]


class SchemaHost:
    def __init__(self) -> None:
        self.hits = 0

    async def serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"type": "integer"})


@pytest_asyncio.fixture
async def schema_host():
    host = SchemaHost()
    app = web.Application()
    app.router.add_get("/s.json", host.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host.url = f"http://127.0.0.1:{runner.addresses[0][1]}/s.json"
    yield host
    await runner.cleanup()


async def test_a_remote_ref_is_never_fetched(schema_host):
    with pytest.raises(InvalidSchema, match="cannot be resolved"):
        validate_json_output('"x"', {"$ref": schema_host.url})
    assert schema_host.hits == 0


# ------------------------------------------------------------------------------------ repair


def test_repair_request_appends_the_answer_and_the_errors():
    original = chat(ResponseFormat(type="json_schema", name="person", schema=PERSON, strict=True))
    bad = '{"name": "Ada"}'
    errors = validate_json_output(bad, PERSON)
    repaired = repair_request(original, bad, errors)
    assert len(original.messages) == 2  # the original request is untouched
    assert [m.role for m in repaired.messages] == ["system", "user", "assistant", "user"]
    assert repaired.messages[2].text() == bad
    prompt = repaired.messages[3].text()
    assert "not JSON that follows the requested schema" in prompt
    assert "- $: 'age' is a required property" in prompt
    assert "only the corrected JSON" in prompt
    assert repaired.response_format == original.response_format
    assert (repaired.model, repaired.temperature) == ("gpt", 0.2)


def test_repair_prompt_for_json_mode():
    repaired = repair_request(chat(ResponseFormat(type="json_object")), "nope",
                              validate_json_output("nope", {"type": "object"}))
    assert "not a valid JSON object" in repaired.messages[-1].text()
    assert "Expecting value" in repaired.messages[-1].text()


def test_repair_after_a_prefill_keeps_one_assistant_turn():
    prefilled = chat(ResponseFormat(type="json_object"), Message(role="assistant", content=[TextPart(text='{"na')]))
    repaired = repair_request(prefilled, 'me": "Ada"', ["$: 'age' is a required property"])
    assert [m.role for m in repaired.messages] == ["system", "user", "assistant", "user"]
    assert repaired.messages[2].text() == '{"name": "Ada"'
