"""Anthropic Messages API (``POST /v1/messages``): canonical ⇄ wire, streaming and errors.

Wire format checked against the Messages API reference and the official SDK's types
(anthropic-sdk-python ``types/message_create_params.py``, ``raw_*_event.py``,
``shared/error_type.py``). Decisions that differ from a literal translation:

* The conversation must open with a ``user`` turn. Anthropic has long answered
  ``400 messages: first message must use the "user" role`` to an assistant-first history
  (an OpenAI client's stored greeting is the usual cause), and a request with only system
  messages has no turn at all. Both get a minimal ``"."`` user turn, which costs one token and
  keeps an otherwise valid OpenAI-dialect request from failing.
* ``response_format`` ``json_schema`` uses structured outputs (``output_config.format``); a
  deployment whose model predates them sets ``options: {structured_outputs: false}`` and gets a
  system instruction instead. ``json_object`` has no native equivalent and is always emulated.
* ``seed``, ``presence_penalty`` and ``frequency_penalty`` have no Anthropic equivalent and are
  dropped rather than failing the call; ``n > 1`` changes the answer's shape, so it is refused.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import orjson

from sluice.providers.base import (
    SSEEvent,
    Upstream,
    WireRequest,
    decode_error_body,
    retry_after_seconds,
    unsupported,
)
from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    EmbeddingRequest,
    EmbeddingResponse,
    GatewayError,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    kind_for_status,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
OPENING_USER_TEXT = "."

# max_tokens is mandatory on Anthropic. Used when neither the client nor the deployment set it;
# first matching substring wins. Kept well under each family's ceiling because Anthropic
# estimates output-token rate limits from max_tokens when a request starts.
_MAX_TOKENS_BY_MODEL: tuple[tuple[str, int], ...] = (
    ("claude-3-5", 8192),
    ("claude-3-7", 16384),
    ("claude-opus-4", 16384),
    ("claude-sonnet-4", 16384),
    ("claude-haiku-4", 16384),
    ("claude-4", 16384),
)
_DEFAULT_MAX_TOKENS = 4096

# Canonical parameters Anthropic has no slot for; never copied from deployment params either.
_DROPPED_PARAMS = frozenset({"n", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"})

_JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

_FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> (canonical kind, status used when the HTTP status says nothing,
# as for an error event inside a 200 stream).
_ERROR_TYPES: dict[str, tuple[str, int]] = {
    "invalid_request_error": ("invalid_request", 400),
    "authentication_error": ("authentication", 401),
    "billing_error": ("permission", 402),
    "permission_error": ("permission", 403),
    "not_found_error": ("not_found", 404),
    "request_too_large": ("payload_too_large", 413),
    "rate_limit_error": ("rate_limit", 429),
    "timeout_error": ("timeout", 504),
    "api_error": ("server_error", 500),
    "overloaded_error": ("overloaded", 529),
}

_CONTEXT_WINDOW_MARKERS = ("prompt is too long", "exceed context limit", "context window")


class AnthropicAdapter:
    kind = "anthropic"

    def chat_request(self, req: ChatRequest, up: Upstream) -> WireRequest:
        return WireRequest(url=_messages_url(up.base_url), headers=_headers(up), body=build_body(req, up))

    def chat_response(self, payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse:
        return parse_response(payload, up)

    def stream_decoder(self, req: ChatRequest, up: Upstream) -> "AnthropicStreamDecoder":
        return AnthropicStreamDecoder(up.model)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_wire(status, decode_error_body(body), headers)

    def embeddings_request(self, req: EmbeddingRequest, up: Upstream) -> WireRequest:
        raise unsupported(self.kind, "embeddings")

    def embeddings_response(self, payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse:
        raise unsupported(self.kind, "embeddings")


ADAPTER = AnthropicAdapter()


# --------------------------------------------------------------------------- request


def _messages_url(base_url: str) -> str:
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    # Accept both "https://api.anthropic.com" and ".../v1" in the config.
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def _headers(up: Upstream) -> dict[str, str]:
    headers = {"anthropic-version": up.api_version or DEFAULT_API_VERSION}
    if up.api_key:
        headers["x-api-key"] = up.api_key
    headers.update(up.headers)
    return headers


def build_body(req: ChatRequest, up: Upstream) -> dict[str, Any]:
    if req.n is not None and req.n > 1:
        raise GatewayError("invalid_request", "Anthropic models return one choice per request; n must be 1", param="n")
    body: dict[str, Any] = {"model": up.model, "messages": build_messages(req.messages)}
    system = _system_blocks(req, up)
    if system:
        body["system"] = system[0]["text"] if len(system) == 1 else system
    _set_sampling(body, req)
    _set_tools(body, req)
    if req.user:
        body["metadata"] = {"user_id": req.user}
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.schema and _structured_outputs(up):
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema}}
    if req.stream:
        body["stream"] = True
    _apply_params(body, up.params)
    extra = _own_extra(req)
    body["max_tokens"] = _max_tokens(req, up, body, extra)
    if extra:
        _merge_extra(body, extra)
    return body


def _own_extra(req: ChatRequest) -> dict[str, Any] | None:
    # The router already drops another family's extra; checked again so that parameters
    # written for OpenAI or Gemini can never reach Anthropic as unknown fields.
    if req.extra and getattr(req, "extra_dialect", None) in (None, "anthropic"):
        return req.extra
    return None


def _structured_outputs(up: Upstream) -> bool:
    return up.options.get("structured_outputs", True) is not False


def _system_blocks(req: ChatRequest, up: Upstream) -> list[dict[str, Any]]:
    # One block per system message keeps their boundaries (a later stage may mark one cacheable).
    blocks = [{"type": "text", "text": t} for m in req.messages if m.role == "system" if (t := m.text())]
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        blocks.append({"type": "text", "text": _JSON_OBJECT_INSTRUCTION})
    elif fmt is not None and fmt.type == "json_schema" and fmt.schema and not _structured_outputs(up):
        schema = orjson.dumps(fmt.schema).decode()
        blocks.append({"type": "text", "text": f"{_JSON_OBJECT_INSTRUCTION} It must match this JSON Schema: {schema}"})
    return blocks


def _set_sampling(body: dict[str, Any], req: ChatRequest) -> None:
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = list(req.stop)


def _max_tokens(req: ChatRequest, up: Upstream, body: dict[str, Any], extra: dict[str, Any] | None) -> int:
    if req.max_tokens is not None:
        return req.max_tokens
    if up.params.get("max_tokens") is not None:
        return int(up.params["max_tokens"])
    default = _default_max_tokens(up.model)
    # Thinking tokens count toward max_tokens, which must exceed the thinking budget.
    thinking = (extra or {}).get("thinking") or body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    return default + budget if isinstance(budget, int) else default


def _default_max_tokens(model: str) -> int:
    for marker, value in _MAX_TOKENS_BY_MODEL:
        if marker in model:
            return value
    return _DEFAULT_MAX_TOKENS


def _apply_params(body: dict[str, Any], params: Mapping[str, Any]) -> None:
    """Deployment defaults fill only what the request left unset."""
    for key, value in params.items():
        if key in _DROPPED_PARAMS or key == "max_tokens" or value is None:
            continue
        if key == "stop":
            key, value = "stop_sequences", [value] if isinstance(value, str) else list(value)
        elif key == "user":
            body.setdefault("metadata", {"user_id": value})
            continue
        body.setdefault(key, value)


def _merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    # One level deep for objects, so extra={"output_config": {"effort": "low"}} does not
    # wipe a format set from response_format.
    for key, value in extra.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            body[key] = {**current, **value}
        else:
            body[key] = value


# --------------------------------------------------------------------------- tools


def _set_tools(body: dict[str, Any], req: ChatRequest) -> None:
    if not req.tools:
        return
    body["tools"] = [_tool(t.name, t.description, t.parameters, t.strict) for t in req.tools]
    choice = _tool_choice(req.tool_choice)
    if req.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = dict(choice or {"type": "auto"})
        choice["disable_parallel_tool_use"] = True
    if choice is not None:
        body["tool_choice"] = choice


def _tool(name: str, description: str | None, parameters: dict | None, strict: bool | None) -> dict[str, Any]:
    schema: dict[str, Any] = dict(parameters) if parameters else {"type": "object", "properties": {}}
    # Anthropic requires an object schema at the top; OpenAI clients sometimes omit "type".
    schema.setdefault("type", "object")
    tool: dict[str, Any] = {"name": name, "input_schema": schema}
    if description:
        tool["description"] = description
    if strict:
        tool["strict"] = True
    return tool


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        # Canonical {"name": ...}; the OpenAI shape {"type": "function", "function": {...}} is
        # tolerated because it is what clients most often send.
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise GatewayError("invalid_request", f"unsupported tool_choice: {choice!r}", param="tool_choice")


# --------------------------------------------------------------------------- messages


def build_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages -> Anthropic turns: user/assistant only, alternating, user first."""
    turns: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "system":
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks_for(msg)
        if not blocks:
            continue  # e.g. an assistant message with empty content: Anthropic rejects empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic wants strictly alternating roles
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": OPENING_USER_TEXT}]})
    for turn in turns:
        if turn["role"] == "user":
            _tool_results_first(turn["content"])
    _trim_prefill(turns[-1])
    return turns


def _blocks_for(msg: Message) -> list[dict[str, Any]]:
    if msg.role == "tool":
        return [_tool_result(msg)]
    blocks = _content_blocks(msg.content)
    if msg.role == "assistant" and msg.tool_calls:
        blocks.extend(_tool_use(call) for call in msg.tool_calls)
    return blocks


def _content_blocks(parts: Iterable[Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:  # Anthropic rejects empty text blocks
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part))
    return blocks


def _image(part: ImagePart) -> dict[str, Any]:
    if part.data is not None:
        source = {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
    elif part.url:
        source = {"type": "url", "url": part.url}
    else:
        raise GatewayError("invalid_request", "image content part has neither url nor data")
    return {"type": "image", "source": source}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        args = orjson.loads(call.arguments) if call.arguments.strip() else {}
    except orjson.JSONDecodeError:
        raise GatewayError(
            "invalid_request", f"tool call '{call.id}' has arguments that are not valid JSON", param="messages"
        ) from None
    if not isinstance(args, dict):
        raise GatewayError("invalid_request", f"tool call '{call.id}' arguments must be a JSON object", param="messages")
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": args}


def _tool_result(msg: Message) -> dict[str, Any]:
    if not msg.tool_call_id:
        raise GatewayError("invalid_request", "a tool message needs tool_call_id", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.tool_call_id}
    if any(isinstance(p, ImagePart) for p in msg.content):
        block["content"] = _content_blocks(msg.content)
    elif text := msg.text():
        block["content"] = text
    if msg.is_error:
        block["is_error"] = True
    return block


def _tool_results_first(blocks: list[dict[str, Any]]) -> None:
    # Anthropic requires tool_result blocks before any other content of their user turn.
    if len(blocks) > 1 and any(b["type"] == "tool_result" for b in blocks):
        blocks.sort(key=lambda b: b["type"] != "tool_result")  # stable


def _trim_prefill(turn: dict[str, Any]) -> None:
    # A final assistant turn is a prefill, and Anthropic rejects one ending in whitespace.
    if turn["role"] != "assistant":
        return
    last = turn["content"][-1]
    if last["type"] == "text":
        stripped = last["text"].rstrip()
        if stripped:
            last["text"] = stripped
        else:
            turn["content"].pop()


# --------------------------------------------------------------------------- response


def parse_response(payload: Any, up: Upstream) -> ChatResponse:
    if not isinstance(payload, dict):
        raise GatewayError("upstream_unavailable", "Anthropic sent a response that is not a message", status=502)
    if payload.get("type") == "error":
        raise error_from_wire(0, payload, {})
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in payload.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=args))
        # thinking, redacted_thinking and server-tool blocks have no canonical slot.
    text = "".join(texts)
    message = Message(
        role="assistant", content=[TextPart(text=text)] if text else [], tool_calls=calls or None
    )
    choice = Choice(
        index=0,
        message=message,
        finish_reason=_finish_reason(payload.get("stop_reason")),
        stop_sequence=payload.get("stop_sequence"),
    )
    return ChatResponse(
        id=payload.get("id") or "",
        model=payload.get("model") or up.model,
        choices=[choice],
        usage=usage_from_wire(payload.get("usage") or {}),
        created=int(time.time()),
    )


def _finish_reason(stop_reason: str | None) -> Any:
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, "stop")


def usage_from_wire(u: Mapping[str, Any]) -> Usage:
    # Anthropic's input_tokens excludes cached and cache-written tokens; canonical counts all.
    cache_read = u.get("cache_read_input_tokens") or 0
    cache_write = u.get("cache_creation_input_tokens") or 0
    details = u.get("output_tokens_details") or {}
    return Usage(
        input_tokens=(u.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=u.get("output_tokens") or 0,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )


# --------------------------------------------------------------------------- stream


class AnthropicStreamDecoder:
    """Anthropic SSE events -> canonical chunks, for one call.

    Content blocks are indexed across text, thinking and tool blocks; canonical tool-call
    indexes count tool_use blocks only, so the decoder keeps the mapping.
    """

    __slots__ = ("_model", "_tools", "_args_seen", "_usage", "_started", "_usage_sent")

    def __init__(self, model: str) -> None:
        self._model = model
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._args_seen: set[int] = set()
        self._usage: dict[str, Any] = {}
        self._started = False
        self._usage_sent = False

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise GatewayError("upstream_unavailable", "Anthropic sent a malformed stream event", status=502) from None
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_start":
            return self._start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            return self._block_stop(data.get("index", 0))
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            return self._usage_chunk()
        if kind == "error":
            raise error_from_wire(0, data, {})
        return ()  # ping, and event types added later

    def finish(self) -> Iterable[ChatChunk]:
        # A stream cut short still owes the usage seen so far, so partial calls are billed.
        return self._usage_chunk()

    def _start(self, message: Mapping[str, Any]) -> list[ChatChunk]:
        self._started = True
        self._usage.update(message.get("usage") or {})
        return [ChatChunk(role="assistant", id=message.get("id"), model=message.get("model") or self._model)]

    def _block_start(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [ChatChunk(text=block["text"])]
        if kind != "tool_use":
            return []
        tool_index = len(self._tools)
        self._tools[data.get("index", 0)] = tool_index
        return [ChatChunk(tool_calls=[ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"))])]

    def _delta(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [ChatChunk(text=text)] if text else []
        if kind == "input_json_delta":
            block_index = data.get("index", 0)
            tool_index = self._tools.get(block_index)
            piece = delta.get("partial_json")
            # Server tools (web search, …) stream input too; only client tool_use blocks count.
            if tool_index is None or not piece:
                return []
            self._args_seen.add(block_index)
            return [ChatChunk(tool_calls=[ToolCallDelta(index=tool_index, arguments=piece)])]
        return []  # thinking_delta, signature_delta, citations_delta

    def _block_stop(self, block_index: int) -> list[ChatChunk]:
        tool_index = self._tools.get(block_index)
        if tool_index is None or block_index in self._args_seen:
            return []
        # A tool without parameters streams no input; clients parse arguments as JSON.
        return [ChatChunk(tool_calls=[ToolCallDelta(index=tool_index, arguments="{}")])]

    def _message_delta(self, data: Mapping[str, Any]) -> list[ChatChunk]:
        # message_delta usage is cumulative: later fields replace message_start's.
        self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        delta = data.get("delta") or {}
        reason = delta.get("stop_reason")
        if reason is None:
            return []
        return [ChatChunk(finish_reason=_finish_reason(reason), stop_sequence=delta.get("stop_sequence"))]

    def _usage_chunk(self) -> list[ChatChunk]:
        if self._usage_sent or not self._started:
            return []
        self._usage_sent = True
        return [ChatChunk(usage=usage_from_wire(self._usage))]


# --------------------------------------------------------------------------- errors


def error_from_wire(status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
    """An Anthropic error (HTTP response, or ``status`` 0/200 for an in-stream event)."""
    err_type, message, code = _error_fields(payload)
    kind, type_status = _ERROR_TYPES.get(err_type or "", (None, None))
    if status < 400:
        status = type_status or 502
    if kind is None:
        kind = kind_for_status(status)
    if not message:
        message = f"Anthropic returned HTTP {status}"
    if kind == "invalid_request" and _is_context_window(message):
        kind, status = "context_window_exceeded", 400
    return GatewayError(
        kind,
        message,
        status=status,
        retry_after=retry_after_seconds(_lower_keys(headers)),
        code=code or err_type,
    )


def _error_fields(payload: Any) -> tuple[str | None, str, str | None]:
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
            return err.get("type"), str(err.get("message") or ""), details.get("error_code")
        if isinstance(err, str):
            return None, err, None
        return None, str(payload.get("message") or ""), None
    if isinstance(payload, str) and payload and not payload.startswith("<") and len(payload) <= 300:
        return None, payload, None  # plain-text body from a proxy; HTML pages are not shown
    return None, "", None


def _is_context_window(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _CONTEXT_WINDOW_MARKERS)


def _lower_keys(headers: Mapping[str, str]) -> Mapping[str, str]:
    # aiohttp headers are case-insensitive already; plain dicts (tests, other callers) are not.
    if isinstance(headers, dict):
        return {k.lower(): v for k, v in headers.items()}
    return headers
