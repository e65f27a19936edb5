"""The shape of an OpenAI chat answer that can go to an OpenAI client as the upstream sent it.

``decode_answer`` checks an answer's bytes against it in C (msgspec) and fails for anything the
decoding path (``OpenAIAdapter.chat_response`` and the API's rendering) would change: another
object type or id scheme, a missing or zero ``created``, no choices, a choice without ``index``,
a finish reason outside OpenAI's set (``eos``, ``error``, none), a refusal, content in parts, a
role other than assistant, tool calls without an id or name or with arguments that are not a
string, usage missing or not in numbers. Fields not named here are not looked at.
``split_at_model`` finds the answer's one top-level ``"model"`` field, the only bytes the relay
changes.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from sluice.schema import Usage

# The finish reasons an OpenAI client knows; others are rewritten on the way (relay or decoding).
OPENAI_FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Function(msgspec.Struct):
    name: _NonEmpty
    arguments: str


class _ToolCall(msgspec.Struct):
    id: _NonEmpty
    type: Literal["function"]
    function: _Function


class _Message(msgspec.Struct):
    role: Literal["assistant"]
    content: str | None = None
    refusal: None = None  # a refusal becomes the content (and content_filter) on the decoding path
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    index: int
    message: _Message
    finish_reason: Literal[OPENAI_FINISH_REASONS]  # type: ignore[valid-type]


class PromptDetails(msgspec.Struct):
    cached_tokens: int = 0


class CompletionDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class AnswerUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    prompt_cache_hit_tokens: int = 0  # DeepSeek's name for cached prompt tokens


class Answer(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(pattern="^chatcmpl")]
    object: Literal["chat.completion"]
    created: Annotated[int, msgspec.Meta(gt=0)]
    model: str
    choices: Annotated[list[_Choice], msgspec.Meta(min_length=1)]
    usage: AnswerUsage


decode_answer = msgspec.json.Decoder(Answer).decode


class _UsageReport(msgspec.Struct):
    usage: AnswerUsage


_decode_report = msgspec.json.Decoder(_UsageReport).decode


def usage_of(u: AnswerUsage) -> Usage:
    """Sluice's usage from OpenAI's (as ``openai.usage_from_wire`` reads a dict)."""
    cached = (u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0) or u.prompt_cache_hit_tokens
    reasoning = u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else 0
    return Usage(input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens, cached_tokens=cached,
                 reasoning_tokens=reasoning)


def reported_usage(event: bytes) -> Usage | None:
    """The usage in a stream's usage report, one ``data:`` line (blank lines around it allowed),
    read in C; None for any other shape (the stream decoder then reads it)."""
    event = event.strip()
    if not event.startswith(b"data:") or b"\n" in event:
        return None
    try:
        return usage_of(_decode_report(event[5:]).usage)
    except msgspec.DecodeError:
        return None

# A JSON key can only be a real "model" field here: inside a string its quotes are escaped.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def split_at_model(body: bytes) -> tuple[bytes, bytes] | None:
    """The answer's bytes before and after its ``"model"`` field, or None unless there is
    exactly one (a nested object of an extension could have another)."""
    found = _MODEL_FIELD.search(body)
    if found is None or _MODEL_FIELD.search(body, found.end()) is not None:
        return None
    return body[:found.start()], body[found.end():]
