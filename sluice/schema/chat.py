"""Canonical chat types: every inbound dialect is parsed into these, every provider reads them.

The shape follows the common denominator of the OpenAI, Anthropic and Gemini APIs:
system instructions are messages with role ``system``; tool results are messages with
role ``tool``; content is always a list of parts. ``msgspec.Struct`` keeps construction
cheap on the hot path.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class TextPart(msgspec.Struct, tag="text", kw_only=True, omit_defaults=True):
    text: str


class ImagePart(msgspec.Struct, tag="image", kw_only=True, omit_defaults=True):
    """An image given either by URL or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None

    @classmethod
    def from_url(cls, url: str, detail: str | None = None) -> "ImagePart":
        """Parse ``data:`` URLs into inline data so providers that need bytes get them."""
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            media_type = header[5:].split(";", 1)[0] or "image/png"
            return cls(data=payload, media_type=media_type, detail=detail)
        return cls(url=url, detail=detail)

    def as_url(self) -> str:
        if self.url is not None:
            return self.url
        return f"data:{self.media_type or 'image/png'};base64,{self.data}"


ContentPart = Union[TextPart, ImagePart]


class ToolCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Role
    content: list[ContentPart] = msgspec.field(default_factory=list)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None  # role == "tool": which call this answers
    name: str | None = None
    is_error: bool = False  # role == "tool": the tool reported a failure

    def text(self) -> str:
        content = self.content
        if len(content) == 1 and type(content[0]) is TextPart:  # the common case, on the hot path
            return content[0].text
        return "".join([p.text for p in content if isinstance(p, TextPart)])


class Tool(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema
    strict: bool | None = None


# "auto" | "none" | "required" | {"name": ...} for one named tool
ToolChoice = Union[Literal["auto", "none", "required"], dict]


class ResponseFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ChatRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    messages: list[Message]
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    stream: bool = False
    include_usage: bool = False
    # Provider-specific parameters passed through untouched to the wire request.
    extra: dict[str, Any] | None = None
    # The dialect family ``extra`` was written for ("openai", "anthropic", ...). None means
    # "for whatever provider serves the call" (set from deployment config). Parameters meant
    # for one family are dropped before a call to another, never sent where they mean nothing.
    extra_dialect: str | None = None

    def system_text(self) -> str:
        return "\n\n".join(m.text() for m in self.messages if m.role == "system")


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # of input_tokens, served from the provider's prompt cache
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Choice(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int = 0
    message: Message
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None


class ChatResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    created: int = 0
    system_fingerprint: str | None = None
    # A relayed answer (sluice.providers.answer_relay): the upstream's own bytes before and after
    # its "model" field, for a client of its dialect; ``choices`` is then empty.
    raw: tuple[bytes, bytes] | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A piece of a streamed tool call: the first piece for an ``index`` carries id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One streamed delta of one choice, or a usage-only chunk (``usage`` set, nothing else)."""

    index: int = 0
    role: Role | None = None
    text: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    # Set by providers on the first chunk when the upstream announces them.
    id: str | None = None
    model: str | None = None
    # Same-dialect relay: the upstream's own SSE events, whole, to pass to a client that speaks
    # the upstream's dialect (the other fields stay unset; usage comes as its own chunk), and
    # how many of those events carry a token (text, a tool-call piece or a finish).
    raw: bytes | None = None
    raw_tokens: int = 0
