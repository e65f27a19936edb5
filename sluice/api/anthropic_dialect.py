"""Anthropic Messages API as an inbound dialect: wire JSON/SSE <-> canonical types.

Pure translation, no I/O: the route in ``sluice.api.anthropic`` reads the body, calls
``parse_request``, runs the gateway and writes what ``render_response``, ``StreamEncoder``
or ``render_error`` return. Wire shapes follow the Messages API reference and the official
SDK's types (``MessageCreateParams``, ``Message``, ``RawMessageStreamEvent``).

Decisions where the canonical schema has no exact equivalent:

* ``thinking`` / ``redacted_thinking`` input blocks are dropped: they only mean something
  to the Claude model that produced them, and Anthropic itself ignores thinking from
  earlier turns.
* ``document`` blocks are accepted only with a plain-text (``text``) or ``content`` source,
  which become text; PDF, URL and file sources are refused, as are server tools (web
  search, code execution, ...), ``mcp_servers`` and server-tool result blocks: a gateway
  that silently dropped them would change what the client asked for.
* Request fields the canonical schema has no place for (``thinking``, ``service_tier``,
  ``container``, ``context_management``, ``output_config.effort``, fields newer than this
  module, ...) go to ``extra`` with ``extra_dialect="anthropic"``: an Anthropic deployment
  receives them unchanged, the router drops them for any other provider. Fields that address
  Anthropic's account or transport rather than the model call (``workspace_id``,
  ``anthropic_version``, ...) are dropped.
* A tool call whose arguments are not a JSON object is rendered with ``input: {}``: the
  Anthropic wire format has no place for raw argument text.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from sluice.schema.chat import ContentPart

__all__ = [
    "ERROR_TYPE_BY_KIND",
    "DROPPED_FIELDS",
    "HANDLED_FIELDS",
    "StreamEncoder",
    "error_type",
    "parse_request",
    "render_error",
    "render_response",
    "stop_reason",
    "to_message_id",
]

# Request fields never passed on: they pick Anthropic's account, workspace or transport
# (Bedrock / Vertex put the API version and betas in the body), which is the gateway's choice.
DROPPED_FIELDS = frozenset(
    {"workspace_id", "user_profile_id", "anthropic_version", "anthropic_beta", "betas"}
)

# Request fields parse_request translates.
HANDLED_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "metadata", "output_config", "output_format",
        "mcp_servers",
    }
)

_ROLES = ("user", "assistant")
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


# --------------------------------------------------------------------------- errors


def _invalid(param: str, problem: str) -> GatewayError:
    # Anthropic's validation messages read "<path>: <problem>", e.g. "max_tokens: Field required".
    return GatewayError("invalid_request", f"{param}: {problem}", param=param)


def _required(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    if value is None:
        raise _invalid(key, "Field required")
    return value


def _int(value: Any, param: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _invalid(param, "Input should be a valid integer")
    if value < minimum:
        raise _invalid(param, f"Input should be greater than or equal to {minimum}")
    return value


def _unit_float(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(param, "Input should be a valid number")
    if not 0.0 <= value <= 1.0:
        raise _invalid(param, "Input should be between 0 and 1")
    return float(value)


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid(param, "Input should be a valid string")
    return value


def _obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(param, "Input should be a valid dictionary")
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid(param, "Input should be a valid list")
    return value


# --------------------------------------------------------------------------- request


def parse_request(body: Any) -> ChatRequest:
    """Validate an Anthropic ``POST /v1/messages`` body and translate it to a ChatRequest."""
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "Request body must be a JSON object")
    model = _str(_required(body, "model"), "model")
    if not model:
        raise _invalid("model", "String should have at least 1 character")
    max_tokens = _int(_required(body, "max_tokens"), "max_tokens", 1)
    messages = _system(body.get("system")) + _messages(body.get("messages"))
    _refuse_mcp(body.get("mcp_servers"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream", "Input should be a valid boolean")
    if body.keys() <= _MINIMAL:  # what most SDK calls send: the rest are defaults, not looked up one by one
        return ChatRequest(model=model, messages=messages, max_tokens=max_tokens, stream=stream, include_usage=stream)
    tools = _tools(body.get("tools"))
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    metadata = _metadata(body.get("metadata"))
    extra = _passthrough(body)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=_opt(body, "temperature", _unit_float),
        top_p=_opt(body, "top_p", _unit_float),
        top_k=_opt(body, "top_k", lambda v, p: _int(v, p, 0)),
        stop=_stop_sequences(body.get("stop_sequences")),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_response_format(body),
        user=_user_id(metadata),
        metadata=metadata,
        stream=stream,
        # An Anthropic stream always reports usage in message_start / message_delta.
        include_usage=stream,
        extra=extra,
        extra_dialect="anthropic" if extra else None,
    )


_MINIMAL = frozenset({"model", "max_tokens", "messages", "system", "stream"})


def _passthrough(body: dict[str, Any]) -> dict[str, Any] | None:
    """Anthropic-only fields for ``extra``; ``output_config`` minus the format we translate."""
    extra = {k: v for k, v in body.items() if k not in HANDLED_FIELDS and k not in DROPPED_FIELDS}
    config = body.get("output_config")
    if isinstance(config, dict):
        rest = {k: v for k, v in config.items() if k != "format"}
        if rest:
            extra["output_config"] = rest
    return extra or None


def _opt(body: dict[str, Any], key: str, check: Any) -> Any:
    value = body.get(key)
    return None if value is None else check(value, key)


def _system(system: Any) -> list[Message]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Message(role="system", content=[TextPart(text=system)])] if system else []
    parts: list[ContentPart] = []
    for i, block in enumerate(_list(system, "system")):
        where = f"system.{i}"
        block = _obj(block, where)
        if block.get("type") != "text":
            raise _invalid(f"{where}.type", "Input should be 'text'")
        parts.append(TextPart(text=_str(_required_at(block, "text", where), f"{where}.text")))
    return [Message(role="system", content=parts)] if parts else []


def _required_at(block: dict[str, Any], key: str, where: str) -> Any:
    value = block.get(key)
    if value is None:
        raise _invalid(f"{where}.{key}", "Field required")
    return value


def _messages(raw: Any) -> list[Message]:
    if raw is None:
        raise _invalid("messages", "Field required")
    items = _list(raw, "messages")
    if not items:
        raise _invalid("messages", "at least one message is required")
    out: list[Message] = []
    last = len(items) - 1
    for i, item in enumerate(items):
        out.extend(_message(item, f"messages.{i}", is_last=i == last))
    return out


def _message(item: Any, where: str, *, is_last: bool) -> list[Message]:
    item = _obj(item, where)
    role = item.get("role")
    if role == "system":
        raise GatewayError(
            "invalid_request",
            'messages: Unexpected role "system". The Messages API accepts a top-level '
            '`system` parameter, not "system" as an input message role.',
            param=f"{where}.role",
        )
    if role not in _ROLES:
        raise _invalid(f"{where}.role", "Input should be 'user' or 'assistant'")
    content = _required_at(item, "content", where)
    if not content and not (is_last and role == "assistant"):
        # Anthropic: only a final (prefill) assistant message may be empty.
        raise _invalid(
            f"{where}.content",
            "all messages must have non-empty content except for the optional final assistant message",
        )
    if isinstance(content, str):
        return [Message(role=role, content=[TextPart(text=content)])] if content else []
    blocks = _list(content, f"{where}.content")
    if role == "assistant":
        return _assistant_turn(blocks, f"{where}.content")
    return _user_turn(blocks, f"{where}.content")


def _user_turn(blocks: list[Any], where: str) -> list[Message]:
    """Tool results become canonical ``tool`` messages, placed before the turn's other content."""
    results: list[Message] = []
    parts: list[ContentPart] = []
    for i, raw in enumerate(blocks):
        path = f"{where}.{i}"
        block = _obj(raw, path)
        kind = block.get("type")
        if kind == "tool_result":
            results.append(_tool_result(block, path))
        elif kind == "tool_use":
            raise _invalid(f"{path}.type", "tool_use blocks are only allowed in assistant messages")
        else:
            part = _content_part(block, path)
            if part is not None:
                parts.append(part)
    if parts:
        results.append(Message(role="user", content=parts))
    return results


def _assistant_turn(blocks: list[Any], where: str) -> list[Message]:
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for i, raw in enumerate(blocks):
        path = f"{where}.{i}"
        block = _obj(raw, path)
        kind = block.get("type")
        if kind == "tool_use":
            calls.append(_tool_use(block, path))
        elif kind == "tool_result":
            raise _invalid(f"{path}.type", "tool_result blocks are only allowed in user messages")
        else:
            part = _content_part(block, path)
            if part is not None:
                parts.append(part)
    if not parts and not calls:
        return []  # e.g. a turn that held only thinking blocks
    return [Message(role="assistant", content=parts, tool_calls=calls or None)]


def _content_part(block: dict[str, Any], where: str) -> ContentPart | None:
    """One text/image/document block; ``None`` for blocks that are dropped (thinking)."""
    kind = block.get("type")
    if kind == "text":
        return TextPart(text=_str(_required_at(block, "text", where), f"{where}.text"))
    if kind == "image":
        return _image(_obj(_required_at(block, "source", where), f"{where}.source"), f"{where}.source")
    if kind == "document":
        return _document(_obj(_required_at(block, "source", where), f"{where}.source"), f"{where}.source")
    if kind in ("thinking", "redacted_thinking"):
        return None
    if isinstance(kind, str) and kind:
        raise _invalid(f"{where}.type", f"content block type '{kind}' is not supported by this gateway")
    raise _invalid(f"{where}.type", "Field required")


def _image(source: dict[str, Any], where: str) -> ImagePart:
    kind = source.get("type")
    if kind == "base64":
        data = _str(_required_at(source, "data", where), f"{where}.data")
        media_type = _str(_required_at(source, "media_type", where), f"{where}.media_type")
        return ImagePart(data=data, media_type=media_type)
    if kind == "url":
        return ImagePart(url=_str(_required_at(source, "url", where), f"{where}.url"))
    if kind == "file":
        raise _invalid(f"{where}.type", "file image sources (Files API) are not supported by this gateway")
    raise _invalid(f"{where}.type", "Input should be 'base64' or 'url'")


def _document(source: dict[str, Any], where: str) -> TextPart:
    kind = source.get("type")
    if kind == "text":
        return TextPart(text=_str(_required_at(source, "data", where), f"{where}.data"))
    if kind == "content":
        content = _required_at(source, "content", where)
        if isinstance(content, str):
            return TextPart(text=content)
        texts = []
        for i, raw in enumerate(_list(content, f"{where}.content")):
            block = _obj(raw, f"{where}.content.{i}")
            if block.get("type") != "text":
                raise _invalid(f"{where}.content.{i}.type", "only text blocks are supported in document content")
            texts.append(_str(_required_at(block, "text", f"{where}.content.{i}"), f"{where}.content.{i}.text"))
        return TextPart(text="\n\n".join(texts))
    raise _invalid(
        f"{where}.type",
        f"document source type '{kind}' is not supported by this gateway; only 'text' and 'content' sources are",
    )


def _tool_use(block: dict[str, Any], where: str) -> ToolCall:
    call_id = _str(_required_at(block, "id", where), f"{where}.id")
    name = _str(_required_at(block, "name", where), f"{where}.name")
    args = _obj(_required_at(block, "input", where), f"{where}.input")
    return ToolCall(id=call_id, name=name, arguments=orjson.dumps(args).decode())


def _tool_result(block: dict[str, Any], where: str) -> Message:
    call_id = _str(_required_at(block, "tool_use_id", where), f"{where}.tool_use_id")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise _invalid(f"{where}.is_error", "Input should be a valid boolean")
    content = block.get("content")
    parts: list[ContentPart] = []
    if isinstance(content, str):
        parts = [TextPart(text=content)] if content else []
    elif content is not None:
        for i, raw in enumerate(_list(content, f"{where}.content")):
            path = f"{where}.content.{i}"
            part = _content_part(_obj(raw, path), path)
            if part is not None:
                parts.append(part)
    return Message(role="tool", tool_call_id=call_id, content=parts, is_error=is_error)


def _tools(raw: Any) -> list[Tool] | None:
    if raw is None:
        return None
    tools = [_tool(item, f"tools.{i}") for i, item in enumerate(_list(raw, "tools"))]
    return tools or None


def _tool(item: Any, where: str) -> Tool:
    item = _obj(item, where)
    kind = item.get("type")
    if kind not in (None, "custom"):
        # Server tools (web_search_20250305, bash_20250124, ...) run inside Anthropic's API.
        raise _invalid(f"{where}.type", f"server tool '{kind}' is not supported by this gateway; only client tools are")
    name = _str(_required_at(item, "name", where), f"{where}.name")
    if not name:
        raise _invalid(f"{where}.name", "String should have at least 1 character")
    description = item.get("description")
    if description is not None:
        description = _str(description, f"{where}.description")
    schema = _obj(_required_at(item, "input_schema", where), f"{where}.input_schema")
    strict = item.get("strict")
    return Tool(
        name=name,
        description=description,
        parameters=schema,
        strict=strict if isinstance(strict, bool) else None,
    )


def _tool_choice(raw: Any) -> tuple[Any, bool | None]:
    """Canonical tool_choice and parallel_tool_calls (False when parallel use is disabled)."""
    if raw is None:
        return None, None
    choice = _obj(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        canonical: Any = {"name": _str(_required_at(choice, "name", "tool_choice"), "tool_choice.name")}
    elif kind in _TOOL_CHOICE:
        canonical = _TOOL_CHOICE[kind]
    else:
        raise _invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _invalid("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")
    return canonical, (False if disable else None)


def _stop_sequences(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    stops = [_str(s, f"stop_sequences.{i}") for i, s in enumerate(_list(raw, "stop_sequences"))]
    return stops or None


def _metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    meta = _obj(raw, "metadata")
    user_id = meta.get("user_id")
    if user_id is not None:
        _str(user_id, "metadata.user_id")
    return dict(meta) or None


def _user_id(metadata: dict[str, Any] | None) -> str | None:
    return metadata.get("user_id") if metadata else None


def _response_format(body: dict[str, Any]) -> ResponseFormat | None:
    """Structured outputs: ``output_config.format`` (GA) or the older beta ``output_format``."""
    config = body.get("output_config")
    fmt = _obj(config, "output_config").get("format") if config is not None else None
    param = "output_config.format"
    if fmt is None and body.get("output_format") is not None:
        fmt, param = body["output_format"], "output_format"
    if fmt is None:
        return None
    fmt = _obj(fmt, param)
    if fmt.get("type") != "json_schema":
        raise _invalid(f"{param}.type", "Input should be 'json_schema'")
    schema = _obj(_required_at(fmt, "schema", param), f"{param}.schema")
    return ResponseFormat(type="json_schema", name="response", schema=schema)


def _refuse_mcp(servers: Any) -> None:
    if servers:
        raise _invalid("mcp_servers", "MCP servers run inside Anthropic's API and are not supported by this gateway")


# --------------------------------------------------------------------------- response

_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}


def stop_reason(finish: str | None, stop_sequence: str | None, has_tool_calls: bool) -> str:
    """Anthropic ``stop_reason`` for a canonical finish reason."""
    if stop_sequence:
        return "stop_sequence"
    if finish in (None, "stop") and has_tool_calls:
        # Some providers (Gemini) say "stop" even when the turn ends in tool calls.
        return "tool_use"
    return _STOP_REASON.get(finish or "stop", "end_turn")


def _usage(usage: Usage | None) -> dict[str, int]:
    """Anthropic usage: its ``input_tokens`` excludes cache reads and writes, ours includes them."""
    u = usage or Usage()
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.output_tokens,
    }


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message_id(raw: str) -> str:
    """Anthropic message ids start with ``msg_``; provider ids (``chatcmpl-...``) get the prefix."""
    return raw if raw.startswith("msg_") else f"msg_{raw}"


def render_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    """An Anthropic ``Message`` object for the first choice of a canonical response."""
    choice = resp.choices[0] if resp.choices else None
    content: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    finish = stop_seq = None
    if choice is not None:
        for part in choice.message.content:
            if isinstance(part, TextPart) and part.text:
                content.append({"type": "text", "text": part.text})
        calls = choice.message.tool_calls or []
        for call in calls:
            content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)})
        finish, stop_seq = choice.finish_reason, choice.stop_sequence
    return {
        "id": to_message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish, stop_seq, bool(calls)),
        "stop_sequence": stop_seq or None,
        "usage": _usage(resp.usage),
    }


# --------------------------------------------------------------------------- errors out

ERROR_TYPE_BY_KIND: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "timeout": "timeout_error",
    "payload_too_large": "request_too_large",
    "unprocessable": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "server_error": "api_error",
    "overloaded": "overloaded_error",
    "upstream_unavailable": "api_error",
    "context_window_exceeded": "invalid_request_error",
    "content_policy": "invalid_request_error",
}


def error_type(err: GatewayError) -> str:
    known = ERROR_TYPE_BY_KIND.get(err.kind)
    if known is not None:
        return known
    # Anthropic uses invalid_request_error for any 4xx it has no specific type for.
    return "api_error" if err.status >= 500 else "invalid_request_error"


def _error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


def render_error(err: GatewayError, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """HTTP status and Anthropic error body; ``request_id`` is echoed as Anthropic does."""
    body = _error_body(err)
    if request_id is not None:
        body["request_id"] = request_id
    return err.status, body


# --------------------------------------------------------------------------- stream


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = _event(b"ping", {"type": "ping"})
_MESSAGE_STOP = _event(b"message_stop", {"type": "message_stop"})


class StreamEncoder:
    """Canonical chunks of choice 0 -> Anthropic's SSE event sequence, for one response.

    Sequence: message_start, then per block content_block_start / _delta... / _stop with
    increasing ``index``, then message_delta (stop reason and final usage), message_stop.
    A text block and each tool call are separate blocks; a block that is left (text after a
    tool call, the next tool call) is stopped and a new one opened, since Anthropic blocks
    cannot be reopened. message_delta is sent when usage arrives with or after the finish
    (it often comes in a later usage-only chunk), else at ``close()``, so it carries the final
    counts; usage arriving after it goes out in one more message_delta, which the protocol
    allows ("one or more message_delta events").
    """

    __slots__ = (
        "_id", "_model", "_started", "_next_index", "_open", "_tool_blocks", "_finish",
        "_stop_sequence", "_usage", "_delta_sent", "_done", "_has_tools",
    )

    def __init__(self, message_id: str, model: str) -> None:
        self._id = to_message_id(message_id)
        self._model = model
        self._started = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", canonical index)
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._delta_sent = False
        self._done = False
        self._has_tools = False

    def encode(self, chunk: ChatChunk) -> bytes:
        if self._done or chunk.index != 0:
            return b""
        out: list[bytes] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        if not self._started:
            out.append(self._message_start())
        if not self._delta_sent:
            if chunk.text:
                out.extend(self._text(chunk.text))
            if chunk.tool_calls:
                for delta in chunk.tool_calls:
                    out.extend(self._tool(delta))
        if chunk.finish_reason is not None and self._finish is None:
            self._finish = chunk.finish_reason
            self._stop_sequence = chunk.stop_sequence
            out.extend(self._stop_open())
        if self._finish is not None and chunk.usage is not None:
            # Usage seen before the finish may be partial (input only), so only usage that
            # comes with or after the finish triggers message_delta; otherwise close() sends it.
            out.append(self._message_delta())
        return b"".join(out)

    def close(self) -> bytes:
        """Events owed at the end of the stream: open block stop, message_delta, message_stop."""
        if self._done:
            return b""
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start())
        out.extend(self._stop_open())
        if not self._delta_sent:
            out.append(self._message_delta())
        out.append(_MESSAGE_STOP)
        self._done = True
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        """An in-stream ``error`` event; the stream ends with it (no message_stop follows)."""
        self._done = True
        return _event(b"error", _error_body(err))

    @staticmethod
    def ping() -> bytes:
        """A keep-alive event clients ignore, for long gaps between upstream chunks."""
        return _PING

    # -- events

    def _message_start(self) -> bytes:
        self._started = True
        usage = _usage(self._usage)
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return _event(b"message_start", {"type": "message_start", "message": message})

    def _message_delta(self) -> bytes:
        self._delta_sent = True
        reason = stop_reason(self._finish, self._stop_sequence, self._has_tools)
        # Counts are cumulative; without usage, send output_tokens only so the SDK keeps
        # the message_start figures.
        usage: dict[str, int] = _usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {"stop_reason": reason, "stop_sequence": self._stop_sequence or None}
        return _event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})

    def _start_block(self, block: dict[str, Any], key: tuple[str, int]) -> bytes:
        index = self._next_index
        self._next_index += 1
        self._open = key
        return _event(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block})

    def _stop_open(self) -> list[bytes]:
        if self._open is None:
            return []
        index = self._next_index - 1
        self._open = None
        return [_event(b"content_block_stop", {"type": "content_block_stop", "index": index})]

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != ("text", -1):
            out.extend(self._stop_open())
            out.append(self._start_block({"type": "text", "text": ""}, ("text", -1)))
        delta = {"type": "text_delta", "text": text}
        event = {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        out.append(_event(b"content_block_delta", event))
        return out

    def _tool(self, piece: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        key = ("tool", piece.index)
        index = self._tool_blocks.get(piece.index)
        if index is None:
            out.extend(self._stop_open())
            block = {
                "type": "tool_use",
                "id": piece.id or f"toolu_{self._id}_{piece.index}",
                "name": piece.name or "",
                "input": {},
            }
            index = self._next_index
            out.append(self._start_block(block, key))
            self._tool_blocks[piece.index] = index
            self._has_tools = True
        # A late piece of an earlier call (providers stream calls one after another, so this
        # is rare) is still sent with that call's index: SDKs accumulate by index.
        if piece.arguments:
            delta = {"type": "input_json_delta", "partial_json": piece.arguments}
            out.append(_event(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        return out
