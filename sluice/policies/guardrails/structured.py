"""Structured output: is the model's answer the JSON the client asked for?

A client asks for JSON with ``response_format`` (OpenAI: ``json_object`` or ``json_schema``;
Anthropic: ``output_config.format``), which the dialects parse into ``ChatRequest.response_format``.
``schema_of`` reads the schema from there, ``validate_json_output`` checks an answer against it and
``repair_request`` builds the one retry that asks the model to correct itself.

Validation follows JSON Schema Draft 2020-12 (or the draft a schema names in ``$schema``) with
``format`` not asserted, as the providers' structured-output modes do. ``$ref`` resolves inside
the schema and to the published meta-schemas only: a schema never makes the gateway fetch a URL.
Compiled validators are cached by the schema's canonical JSON, so a client sending the same
schema on every request compiles it once.

Models often wrap JSON in a Markdown code fence (```json … ```) or put a sentence before it;
``extract_json`` takes the JSON out and validation applies to that. A caller that accepts such an
answer may want to hand the client ``extract_json(answer)`` rather than the fenced text.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from msgspec import structs
from referencing.exceptions import Unresolvable

from sluice.schema import ChatRequest, Message, TextPart

MAX_ERRORS = 8  # reported per answer; a repair prompt needs the first few, not hundreds
MAX_MESSAGE_CHARS = 300
ANY_OBJECT: dict[str, Any] = {"type": "object"}

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)(?:\r?\n)?[ \t]*```", re.DOTALL)


class InvalidSchema(ValueError):
    """The schema the client sent is not a valid JSON Schema: a client error, not the model's."""


def schema_of(req: ChatRequest) -> dict[str, Any] | None:
    """The schema the client asked the answer to follow; ``None`` when it asked for no JSON.

    ``json_object`` asks for any JSON object (``{"type": "object"}``); ``json_schema`` without a
    schema asks for any JSON value (``{}``).
    """
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return dict(ANY_OBJECT)
    return fmt.schema if fmt.schema is not None else {}


def extract_json(text: str) -> str:
    """The JSON in a model's answer: the answer itself, or the content of its first code fence."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")) or not stripped:
        return stripped
    fenced = _FENCE.search(stripped)
    if fenced is not None:
        return fenced.group(1).strip()
    if stripped.startswith("```"):  # an opening fence whose closing one was cut off (max_tokens)
        return stripped.partition("\n")[2].strip()
    return stripped


def validate_json_output(text: str, schema: dict[str, Any] | None) -> list[str]:
    """Human-readable problems with ``text`` as JSON for ``schema``; empty when it is valid.

    ``schema=None`` only asks for valid JSON. Raises ``InvalidSchema`` when the schema itself is
    broken (a client error: check ``schema_problem`` on the request to refuse it up front).
    """
    candidate = extract_json(text)
    if not candidate:
        return ["the answer is empty; expected JSON"]
    try:
        value = json.loads(candidate, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return [f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
    except _NotJSON as exc:
        return [f"the answer is not valid JSON: {exc}"]
    except RecursionError:
        return ["the answer is not usable JSON: it is nested too deeply"]
    if schema is None:
        return []
    validator = compiled(schema)
    try:
        found = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except Unresolvable as exc:
        raise InvalidSchema(f"the JSON schema has a $ref that cannot be resolved: {exc}") from None
    errors = [_clip(f"{e.json_path}: {e.message}") for e in found[:MAX_ERRORS]]
    if len(found) > MAX_ERRORS:
        errors.append(f"… and {len(found) - MAX_ERRORS} more")
    return errors


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value")  # Python's json accepts NaN and Infinity; JSON does not


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON Schema, or ``None`` when it is."""
    try:
        compiled(schema)
    except InvalidSchema as exc:
        return str(exc)
    return None


def compiled(schema: dict[str, Any]) -> Any:
    """A validator for ``schema``, compiled once per distinct schema (``InvalidSchema`` if broken)."""
    if not isinstance(schema, dict):
        raise InvalidSchema(f"a JSON schema must be an object, not {type(schema).__name__}")
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchema(f"the JSON schema is not plain JSON: {exc}") from None
    return _compile(key)


@lru_cache(maxsize=256)
def _compile(canonical: str) -> Any:
    schema = json.loads(canonical)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if exc.path else "$"
        raise InvalidSchema(_clip(f"the JSON schema is invalid at {where}: {exc.message}")) from None
    # The meta-schemas only, without retrieval: a client's $ref must not make us fetch a URL.
    return cls(schema, registry=META_SCHEMAS, format_checker=None)


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def repair_request(req: ChatRequest, bad_output: str, errors: list[str]) -> ChatRequest:
    """The request for one repair attempt: the conversation, the invalid answer, what is wrong.

    Everything else about the request (model, ``response_format``, sampling) is kept. An answer
    that continued an assistant prefill is put back together with it, so the model sees its whole
    answer once.
    """
    messages = list(req.messages)
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and not last.tool_calls:
        messages[-1] = Message(role="assistant", content=[TextPart(text=last.text() + bad_output)])
    else:
        messages.append(Message(role="assistant", content=[TextPart(text=bad_output)]))
    messages.append(Message(role="user", content=[TextPart(text=repair_prompt(req, errors))]))
    return structs.replace(req, messages=messages)


def repair_prompt(req: ChatRequest, errors: list[str]) -> str:
    schema = schema_of(req)
    if schema == ANY_OBJECT:
        wanted = "a valid JSON object"
    elif schema:
        wanted = "JSON that follows the requested schema"
    else:
        wanted = "valid JSON"
    problems = "\n".join(f"- {e}" for e in errors) or "- it is not valid JSON"
    return (f"Your previous answer is not {wanted}:\n{problems}\n\n"
            "Reply again with only the corrected JSON: no explanation and no Markdown code fence.")


__all__ = ["InvalidSchema", "compiled", "extract_json", "repair_prompt", "repair_request", "schema_of",
           "schema_problem", "validate_json_output"]
