"""Deterministic replies: what the mock "model" answers, and how many tokens that costs.

Every dialect parses its request into a :class:`Conversation` and calls :func:`generate`.
The rules, which tests may rely on:

* Text reply: ``"Echo: " + <text of the last user message>``. After a tool result
  (the last message is a tool result), ``"Tool <name> returned: <result text>"``.
  An empty user text echoes as ``"Echo: (empty)"``.
* Tool call: when tools are offered, tool choice is not "none", and the last message is a
  user message, the first tool (or the forced one) is called. A forced choice ("required",
  "any", a named tool) calls a tool even after a tool result. The arguments are
  :func:`sample_from_schema` of the tool's parameters.
* JSON mode: ``json_schema`` → :func:`sample_from_schema` of the schema; ``json_object``
  → ``{"echo": <last user text>}``. When the last user text contains ``[[invalid-json]]`` the
  JSON is cut in half (invalid), as a model that broke off would answer — for testing
  structured-output validation and repair.
* Stop sequences cut the text before the first occurrence (finish reason ``stop_sequence``).
* Guard models: a model whose name contains "guard" answers like Llama Guard ("safe", or
  "unsafe\nS1,S10") instead of echoing; see :mod:`sluice.mock.moderation` for the rules.
* Tokens: input = ``ceil(chars / 4)`` (at least 1) over all message text, system text,
  tool-call arguments and tool results; output = number of whitespace-separated words of the
  reply text (for a tool call: of the arguments JSON). ``max_tokens`` truncates the reply to
  that many words (finish reason ``length``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.mock.moderation import guard_verdict, is_guard_model

Finish = str  # "stop" | "length" | "tool_calls" | "stop_sequence"


@dataclass(slots=True)
class Conversation:
    """What a reply depends on, extracted from any dialect's request."""

    last_user_text: str = ""
    last_is_tool_result: bool = False
    tool_result_text: str = ""
    tool_result_name: str = ""
    input_chars: int = 0
    tools: list[tuple[str, dict | None]] = field(default_factory=list)
    tool_choice: str = "auto"  # "auto" | "none" | "required"
    forced_tool: str | None = None
    json_schema: dict | None = None
    json_object: bool = False
    max_tokens: int | None = None
    stop: list[str] | None = None


@dataclass(slots=True)
class Reply:
    text: str = ""
    tool_name: str | None = None
    tool_arguments: str = ""  # JSON text
    finish: Finish = "stop"
    stop_sequence: str | None = None
    input_tokens: int = 1
    output_tokens: int = 0

    @property
    def is_tool_call(self) -> bool:
        return self.tool_name is not None


def count_input_tokens(chars: int) -> int:
    """The mock's input token rule: one token per four characters, at least one."""
    return max(1, math.ceil(chars / 4))


def count_output_tokens(text: str) -> int:
    """The mock's output token rule: one token per whitespace-separated word."""
    return len(text.split())


def expected_text_reply(user_text: str) -> str:
    return "Echo: " + (user_text if user_text.strip() else "(empty)")


def generate(conv: Conversation, model: str = "") -> Reply:
    reply = Reply(input_tokens=count_input_tokens(conv.input_chars))
    tool = _chosen_tool(conv)
    if tool is not None:
        name, schema = tool
        reply.tool_name = name
        reply.tool_arguments = orjson.dumps(sample_from_schema(schema or {"type": "object"})).decode()
        reply.finish = "tool_calls"
        reply.output_tokens = count_output_tokens(reply.tool_arguments)
        return reply
    reply.text = guard_verdict(conv.last_user_text) if is_guard_model(model) else _reply_text(conv)
    _apply_stop(reply, conv.stop)
    _apply_max_tokens(reply, conv.max_tokens)
    reply.output_tokens = count_output_tokens(reply.text)
    return reply


def _chosen_tool(conv: Conversation) -> tuple[str, dict | None] | None:
    if not conv.tools or conv.tool_choice == "none":
        return None
    if conv.forced_tool is not None:
        for name, schema in conv.tools:
            if name == conv.forced_tool:
                return name, schema
        return None
    if conv.tool_choice == "required" or not conv.last_is_tool_result:
        return conv.tools[0]
    return None


INVALID_JSON_MARKER = "[[invalid-json]]"


def _reply_text(conv: Conversation) -> str:
    if conv.json_schema is not None or conv.json_object:
        sample = sample_from_schema(conv.json_schema) if conv.json_schema is not None else {"echo": conv.last_user_text}
        text = orjson.dumps(sample).decode()
        if INVALID_JSON_MARKER in conv.last_user_text:
            return text[: max(1, len(text) // 2)]  # a model that broke off mid-object
        return text
    if conv.last_is_tool_result:
        return f"Tool {conv.tool_result_name or 'call'} returned: {conv.tool_result_text}"
    return expected_text_reply(conv.last_user_text)


def _apply_stop(reply: Reply, stops: list[str] | None) -> None:
    if not stops:
        return
    cut = len(reply.text)
    hit = None
    for s in stops:
        i = reply.text.find(s) if s else -1
        if 0 <= i < cut:
            cut, hit = i, s
    if hit is not None:
        reply.text = reply.text[:cut]
        reply.finish = "stop_sequence"
        reply.stop_sequence = hit


_WORD = re.compile(r"\s*\S+")


def _apply_max_tokens(reply: Reply, max_tokens: int | None) -> None:
    if max_tokens is None:
        return
    words = _WORD.findall(reply.text)
    if len(words) > max_tokens:
        reply.text = "".join(words[:max_tokens])
        reply.finish = "length"
        reply.stop_sequence = None


def split_words(text: str) -> list[str]:
    """Stream pieces: one per word, each with its leading whitespace, so they join back."""
    pieces = _WORD.findall(text)
    tail = len("".join(pieces))
    if tail < len(text):  # trailing whitespace
        pieces.append(text[tail:])
    return pieces or [text]


def split_pieces(text: str, parts: int = 4) -> list[str]:
    """Tool arguments are streamed in a few pieces of roughly equal size."""
    if len(text) < 2:
        return [text]
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- JSON Schema → deterministic sample ---------------------------------------------------

_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


def sample_from_schema(schema: dict, root: dict | None = None, name: str = "value", depth: int = 0) -> Any:
    """A deterministic value that conforms to ``schema`` (the common JSON Schema subset).

    Objects get their required properties (every property when ``required`` is absent);
    strings are ``"sample_<property>"`` unless a format or enum says otherwise.
    """
    root = root if root is not None else schema
    if depth > 12 or not isinstance(schema, dict):
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if _type_of(_resolve(s, root)) != "null"] or schema[key]
            return sample_from_schema(options[0], root, name, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            _merge(merged, _resolve(part, root))
        return sample_from_schema(merged, root, name, depth + 1)
    return _sample_typed(schema, _type_of(schema), root, name, depth)


def _sample_typed(schema: dict, kind: str | None, root: dict, name: str, depth: int) -> Any:
    if kind == "object" or (kind is None and "properties" in schema):
        props: dict = schema.get("properties") or {}
        wanted = schema["required"] if "required" in schema else list(props)
        return {k: sample_from_schema(props.get(k, {"type": "string"}), root, k, depth + 1) for k in wanted}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [sample_from_schema(schema.get("items") or {"type": "string"}, root, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_number(schema, 1))
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _sample_string(schema, name)


def _sample_string(schema: dict, name: str) -> str:
    value = _STRING_FORMATS.get(schema.get("format", ""), f"sample_{name}")
    min_len = int(schema.get("minLength", 0))
    if len(value) < min_len:
        value += "x" * (min_len - len(value))
    max_len = schema.get("maxLength")
    return value[: int(max_len)] if max_len is not None else value


def _number(schema: dict, default: float) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is not None:
        value = float(low) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    else:
        value = default
    if high is not None and value > float(high):
        value = float(high) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    return value


def _type_of(schema: dict) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), kind[0] if kind else None)
    return str(kind).lower() if kind is not None else None


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    node: Any = root
    for part in ref[1:].split("/"):
        if part:
            node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _merge(into: dict, part: dict) -> None:
    for k, v in part.items():
        if k == "properties":
            into.setdefault("properties", {}).update(v)
        elif k == "required":
            into["required"] = list(dict.fromkeys([*into.get("required", []), *v]))
        else:
            into[k] = v


# --- embeddings ----------------------------------------------------------------------------


def embedding(text: str, dims: int) -> list[float]:
    """A unit vector derived from a hash of the text: equal texts, equal vectors."""
    raw = hashlib.shake_256(text.encode()).digest(dims * 2)
    ints = struct.unpack(f"<{dims}H", raw)
    vec = [i / 32767.5 - 1.0 for i in ints]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def embedding_base64(vec: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
