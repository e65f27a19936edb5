"""Google AI (Gemini API, ``generativelanguage.googleapis.com`` v1beta) adapter.

Wire formats follow the v1beta REST reference and the official python-genai SDK types
(``GenerateContentRequest``, ``Content``/``Part``, ``Schema``, ``GenerationConfig``,
``GenerateContentResponse``, ``UsageMetadata``, ``BatchEmbedContentsRequest``).

Decisions worth knowing:

* Structured output uses ``responseSchema`` (the OpenAPI-subset ``Schema``) converted by the
  same code as tool parameters, not ``responseJsonSchema``: every Gemini API model accepts
  ``responseSchema``, while the raw JSON Schema field is newer and model-dependent, and one
  converter keeps tool and output schemas behaving alike.
* A prompt blocked before generation (``promptFeedback.blockReason`` and no candidates) is a
  ``GatewayError`` of kind ``content_policy`` (400), not an empty choice: nothing was generated,
  the same prompt will be blocked again (so the router must not retry it), and OpenAI-dialect
  clients get the error shape Azure OpenAI uses for a filtered prompt.
* Gemini 2.5+/3 attach an opaque ``thoughtSignature`` to function calls and Gemini 3 rejects a
  history whose function calls lost it. Canonical tool calls have no slot for it and clients
  echo only the tool call id, so the signature travels inside the id (URL-safe base64 after
  ``__ts__``) and is restored when the call comes back in the history.
* Gemini function calls carry no ids (the v1beta API matches results by order and name), so
  ids are generated as ``call_<hex>`` and never sent upstream.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from typing import Any, Iterable, Iterator, Mapping

import orjson

from sluice.providers.base import (
    SSEEvent,
    Upstream,
    WireRequest,
    decode_error_body,
    retry_after_seconds,
)
from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    kind_for_status,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
_KNOWN_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
_SIGNATURE_MARK = "__ts__"


class GeminiAdapter:
    kind = "gemini"

    def chat_request(self, req: ChatRequest, up: Upstream) -> WireRequest:
        method = "streamGenerateContent?alt=sse" if req.stream else "generateContent"
        return WireRequest(url=_model_url(up, method), headers=_headers(up), body=build_body(req, up))

    def chat_response(self, payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse:
        return parse_response(payload, up)

    def stream_decoder(self, req: ChatRequest, up: Upstream) -> "GeminiStreamDecoder":
        return GeminiStreamDecoder(up.model)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_wire(status, decode_error_body(body), headers)

    def embeddings_request(self, req: EmbeddingRequest, up: Upstream) -> WireRequest:
        return WireRequest(
            url=_model_url(up, "batchEmbedContents"), headers=_headers(up), body=build_embeddings_body(req, up)
        )

    def embeddings_response(self, payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse:
        return parse_embeddings(payload, req, up)


# --------------------------------------------------------------------------- addressing


def _model_url(up: Upstream, method: str) -> str:
    base = (up.base_url or DEFAULT_BASE_URL).rstrip("/")
    if not base.endswith(_KNOWN_VERSIONS):
        base = f"{base}/{up.api_version or DEFAULT_API_VERSION}"
    return f"{base}/{_model_path(up.model)}:{method}"


def _model_path(model: str) -> str:
    # "gemini-2.5-flash", "models/gemini-2.5-flash" and "tunedModels/x" are all valid names.
    return model if "/" in model else f"models/{model}"


def _headers(up: Upstream) -> dict[str, str]:
    # The key goes in a header, never in ``?key=``: URLs end up in logs and exception texts.
    headers: dict[str, str] = {}
    if up.api_key:
        headers["x-goog-api-key"] = up.api_key
    headers.update(up.headers)
    return headers


# --------------------------------------------------------------------------- request body

# Canonical request fields -> GenerationConfig fields.
_GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("max_tokens", "maxOutputTokens"),
    ("stop", "stopSequences"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
_GENERATION_NAMES = dict(_GENERATION_FIELDS)
# Deployment params that belong at the top of GenerateContentRequest rather than in
# generationConfig; any other unknown param is taken to be a GenerationConfig field.
_TOP_LEVEL_PARAMS = frozenset({"safetySettings", "cachedContent", "toolConfig", "labels"})
# Canonical fields Gemini has no slot for: never forwarded from deployment params.
_DROPPED_PARAMS = frozenset({"user", "parallel_tool_calls", "metadata"})


def build_body(req: ChatRequest, up: Upstream) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": build_contents(req.messages, up)}
    system = [{"text": t} for m in req.messages if m.role == "system" if (t := m.text())]
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_function_declaration(t) for t in req.tools]}]
        if req.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _tool_choice(req.tool_choice)}
    config = _generation_config(req, up.params)
    if req.response_format is not None:
        config.update(_response_format(req.response_format))
    if config:
        body["generationConfig"] = config
    _apply_params(body, up.params)
    if req.extra and getattr(req, "extra_dialect", None) in (None, "gemini"):
        _merge_extra(body, req.extra)
    return body


def _generation_config(req: ChatRequest, params: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, wire in _GENERATION_FIELDS:
        value = getattr(req, name)
        if value is None:
            value = params.get(name)  # deployment defaults fill only what the client left unset
        if value is None:
            continue
        if name == "stop":
            value = [value] if isinstance(value, str) else list(value)
            if not value:
                continue
        config[wire] = value
    return config


def _apply_params(body: dict[str, Any], params: Mapping[str, Any]) -> None:
    """Deployment params in Gemini's own names (e.g. ``thinkingConfig``, ``safetySettings``)."""
    for key, value in params.items():
        if value is None or key in _GENERATION_NAMES or key in _DROPPED_PARAMS:
            continue
        if key in _TOP_LEVEL_PARAMS:
            body.setdefault(key, value)
        else:
            body.setdefault("generationConfig", {}).setdefault(key, value)


def _merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    # One level deep, so extra={"generationConfig": {"thinkingConfig": ...}} keeps temperature.
    for key, value in extra.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            body[key] = {**current, **value}
        else:
            body[key] = value


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type == "json_object":
        return {"responseMimeType": "application/json"}
    if fmt.type == "json_schema":
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if fmt.schema:
            out["responseSchema"] = convert_schema(fmt.schema, order_properties=True)
        return out
    return {}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    if isinstance(choice, dict):
        # Canonical {"name": ...}; the OpenAI shape {"type": "function", "function": {...}} too.
        fn = choice.get("function")
        name = choice.get("name") or (fn.get("name") if isinstance(fn, dict) else None)
        if name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise GatewayError("invalid_request", f"unsupported tool_choice: {choice!r}", param="tool_choice")


def _function_declaration(tool: Tool) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    params = convert_schema(tool.parameters) if tool.parameters else None
    # Gemini rejects an OBJECT with empty properties; a function without arguments simply
    # declares no parameters.
    if params and not (params.get("type") == "OBJECT" and not params.get("properties")):
        decl["parameters"] = params
    return decl


# --------------------------------------------------------------------------- contents


def build_contents(messages: list[Message], up: Upstream) -> list[dict[str, Any]]:
    """Gemini turns: user/model roles alternate, tool results are user turns, same roles merged."""
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    fallback_signature = up.options.get("missing_thought_signature")
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant":
            role, parts = "model", _model_parts(m, call_names, fallback_signature)
        elif m.role == "tool":
            role, parts = "user", [_function_response(m, call_names)]
        else:
            role, parts = "user", [_content_part(p) for p in m.content]
        if not parts:
            continue  # Gemini rejects a turn without parts
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _model_parts(m: Message, call_names: dict[str, str], fallback_signature: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": p.text} for p in m.content if isinstance(p, TextPart) and p.text]
    for i, call in enumerate(m.tool_calls or ()):
        call_names[call.id] = call.name
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": _parse_arguments(call)}}
        signature = signature_from_id(call.id)
        # Only the first call of a parallel batch carries a signature; an opt-in placeholder
        # (deployment option) lets histories from other providers pass Gemini 3's validation.
        if signature is None and i == 0 and isinstance(fallback_signature, str):
            signature = fallback_signature
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _parse_arguments(call: ToolCall) -> dict[str, Any]:
    if not call.arguments or not call.arguments.strip():
        return {}
    try:
        args = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise GatewayError(
            "invalid_request",
            f"arguments of tool call '{call.id}' ({call.name}) are not a JSON object",
            param="messages",
        )
    return args


def _function_response(m: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    name = call_names.get(m.tool_call_id or "") or m.name
    if not name:
        raise GatewayError(
            "invalid_request",
            f"tool result '{m.tool_call_id}' does not answer any earlier tool call",
            param="messages",
        )
    text = m.text()
    response: dict[str, Any] | None = None
    if text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            response = parsed
    if m.is_error:
        response = {"error": response if response is not None else text}
    elif response is None:
        response = {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
}


def _content_part(p: Any) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"text": p.text}
    if isinstance(p, ImagePart):
        if p.data is not None:
            return {"inlineData": {"mimeType": p.media_type or "image/jpeg", "data": p.data}}
        url = p.url or ""
        return {"fileData": {"mimeType": p.media_type or guess_image_type(url), "fileUri": url}}
    raise GatewayError("invalid_request", f"unsupported content part {type(p).__name__}", param="messages")


def guess_image_type(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _IMAGE_TYPES.get(ext, "image/jpeg")


# --------------------------------------------------------------------------- thought signatures


def id_with_signature(call_id: str, signature: str | None) -> str:
    if not signature:
        return call_id
    # URL-safe and unpadded so the id stays within [A-Za-z0-9_-] (Anthropic's tool id pattern).
    safe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return f"{call_id}{_SIGNATURE_MARK}{safe}"


def signature_from_id(call_id: str) -> str | None:
    _, mark, safe = call_id.partition(_SIGNATURE_MARK)
    if not mark or not safe:
        return None
    standard = safe.replace("-", "+").replace("_", "/")
    return standard + "=" * (-len(standard) % 4)


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- schema conversion

# Fields of Gemini's OpenAPI-subset ``Schema`` kept as they are. Everything else
# ($schema, additionalProperties, default, examples, title, strict, const, not, ...) is dropped:
# the v1beta endpoint answers 400 to unknown fields.
_SCHEMA_SCALARS = frozenset({
    "format", "description", "nullable", "minItems", "maxItems", "minLength", "maxLength",
    "minProperties", "maxProperties", "minimum", "maximum", "pattern", "propertyOrdering",
})
_TYPES = {
    "string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN",
    "array": "ARRAY", "object": "OBJECT", "null": "NULL",
}


def convert_schema(schema: Mapping[str, Any], *, order_properties: bool = False) -> dict[str, Any]:
    """JSON Schema -> Gemini ``Schema``: local ``$ref`` inlined, unions made ``nullable``/``anyOf``.

    ``order_properties`` adds ``propertyOrdering`` in declaration order: without it Gemini
    orders structured-output keys alphabetically.
    """
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _SchemaConverter(schema, defs, order_properties).convert(schema, ())


class _SchemaConverter:
    __slots__ = ("root", "defs", "order")

    def __init__(self, root: Mapping[str, Any], defs: Mapping[str, Any], order: bool) -> None:
        self.root = root
        self.defs = defs
        self.order = order

    def convert(self, node: Any, seen: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            return {}  # `true` / `{}` schemas: anything goes
        if "$ref" in node:
            return self._ref(node, seen)
        if "allOf" in node:
            node = _merge_all_of(node)
        out: dict[str, Any] = {k: node[k] for k in _SCHEMA_SCALARS if k in node}
        self._type(node, out)
        if "enum" in node:
            _enum(node["enum"], out)
        elif "const" in node and isinstance(node["const"], str):
            out.setdefault("type", "STRING")
            out["enum"] = [node["const"]]
        union = node.get("anyOf") or node.get("oneOf")
        if union:
            self._union(union, out, seen)
        if "items" in node:
            self._items(node["items"], out, seen)
        if isinstance(node.get("properties"), Mapping):
            self._properties(node, out, seen)
        return out

    def _ref(self, node: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
        ref = node["$ref"]
        if ref in seen:
            # A recursive type cannot be inlined; cut the cycle with an untyped object.
            return {"type": "OBJECT", "description": node.get("description") or "(recursive)"}
        target = self._resolve(ref)
        out = self.convert(target, seen + (ref,))
        if "description" in node:  # a description next to $ref describes this use of it
            out["description"] = node["description"]
        return out

    def _resolve(self, ref: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise GatewayError("invalid_request", f"only local schema references are supported, got {ref!r}",
                               param="tools")
        node: Any = self.root
        for key in (k.replace("~1", "/").replace("~0", "~") for k in ref[1:].split("/") if k):
            if not isinstance(node, Mapping) or key not in node:
                raise GatewayError("invalid_request", f"unresolvable schema reference {ref!r}", param="tools")
            node = node[key]
        return node

    def _type(self, node: Mapping[str, Any], out: dict[str, Any]) -> None:
        t = node.get("type")
        if isinstance(t, str):
            if t in _TYPES:
                out["type"] = _TYPES[t]
            return
        if not isinstance(t, list):
            return
        names = [x for x in t if x != "null"]
        if len(names) < len(t):
            out["nullable"] = True
        if len(names) == 1 and names[0] in _TYPES:
            out["type"] = _TYPES[names[0]]
        elif names:
            out["anyOf"] = [{"type": _TYPES[x]} for x in names if x in _TYPES]

    def _union(self, union: list[Any], out: dict[str, Any], seen: tuple[str, ...]) -> None:
        branches = []
        for branch in union:
            if isinstance(branch, Mapping) and branch.get("type") == "null":
                out["nullable"] = True
            else:
                branches.append(self.convert(branch, seen))
        if len(branches) == 1:
            # Optional[X] in pydantic: {"anyOf": [X, {"type": "null"}]} -> X with nullable.
            merged = {**branches[0], **out}
            out.clear()
            out.update(merged)
        elif branches:
            out["anyOf"] = branches

    def _items(self, items: Any, out: dict[str, Any], seen: tuple[str, ...]) -> None:
        if isinstance(items, list):  # tuple validation has no Gemini form: accept any listed type
            out["items"] = {"anyOf": [self.convert(i, seen) for i in items]} if items else {}
        else:
            out["items"] = self.convert(items, seen)
        out.setdefault("type", "ARRAY")

    def _properties(self, node: Mapping[str, Any], out: dict[str, Any], seen: tuple[str, ...]) -> None:
        props = {name: self.convert(sub, seen) for name, sub in node["properties"].items()}
        out.setdefault("type", "OBJECT")
        if props:
            out["properties"] = props
            if self.order and "propertyOrdering" not in out:
                out["propertyOrdering"] = list(props)
        required = [r for r in node.get("required") or () if r in props]
        if required:
            out["required"] = required


def _merge_all_of(node: Mapping[str, Any]) -> dict[str, Any]:
    # The common allOf is pydantic's single-element wrapper or a mixin of object parts:
    # merging properties and required lists covers both.
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf") or ():
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**(merged.get("properties") or {}), **value}
            elif key == "required":
                merged["required"] = [*(merged.get("required") or []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _enum(values: Any, out: dict[str, Any]) -> None:
    if not isinstance(values, list):
        return
    if None in values:
        out["nullable"] = True
    # Gemini enums are strings (also for INTEGER, e.g. enum: ["101", "201"]).
    out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values if v is not None]
    out.setdefault("type", "STRING")


# --------------------------------------------------------------------------- response

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}


def map_finish_reason(reason: str | None, has_tool_calls: bool) -> str | None:
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    mapped = _FINISH_REASONS.get(reason, "stop")
    # Gemini says STOP after a function call; OpenAI/Anthropic clients wait for tool_calls.
    return "tool_calls" if mapped == "stop" and has_tool_calls else mapped


def parse_usage(meta: Any) -> Usage | None:
    if not isinstance(meta, Mapping):
        return None
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        # Tool-use prompt tokens (e.g. search results fed back) are billed as input.
        input_tokens=int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0),
        # candidatesTokenCount excludes thinking, which is billed as output.
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def check_prompt_blocked(payload: Mapping[str, Any]) -> None:
    feedback = payload.get("promptFeedback")
    if payload.get("candidates") or not isinstance(feedback, Mapping):
        return
    reason = feedback.get("blockReason")
    if reason:
        raise GatewayError(
            "content_policy",
            f"the prompt was blocked by the provider's safety filters ({reason})",
            status=400,
            code=str(reason),
        )


def parse_response(payload: Any, up: Upstream) -> ChatResponse:
    if not isinstance(payload, Mapping):
        raise GatewayError("upstream_unavailable", "Gemini sent a response that is not an object", status=502)
    if "error" in payload:
        raise error_from_wire(0, payload, {})
    check_prompt_blocked(payload)
    choices = [_choice(c) for c in payload.get("candidates") or ()]
    return ChatResponse(
        id=payload.get("responseId") or _new_response_id(),
        model=payload.get("modelVersion") or up.model,
        choices=choices,
        usage=parse_usage(payload.get("usageMetadata")),
        created=int(time.time()),
    )


def _choice(candidate: Mapping[str, Any]) -> Choice:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if part.get("thought"):
            continue  # thought summaries are not part of the answer
        if "functionCall" in part:
            calls.append(_tool_call(part))
        elif "text" in part:
            texts.append(part["text"])
    text = "".join(texts)
    message = Message(role="assistant", content=[TextPart(text=text)] if text else [], tool_calls=calls or None)
    return Choice(
        index=int(candidate.get("index") or 0),
        message=message,
        finish_reason=map_finish_reason(candidate.get("finishReason"), bool(calls)),
    )


def _tool_call(part: Mapping[str, Any]) -> ToolCall:
    fc = part["functionCall"]
    call_id = id_with_signature(fc.get("id") or _new_call_id(), part.get("thoughtSignature"))
    return ToolCall(id=call_id, name=fc.get("name") or "", arguments=orjson.dumps(fc.get("args") or {}).decode())


def _new_response_id() -> str:
    return f"gemini-{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- streaming


class GeminiStreamDecoder:
    """Each SSE event of ``streamGenerateContent?alt=sse`` is a whole GenerateContentResponse."""

    __slots__ = ("_model", "_id", "_started", "_tool_counts", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id: str | None = None
        self._started: set[int] = set()
        self._tool_counts: dict[int, int] = {}
        self._usage: Any = None

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        data = event.data.strip()
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError("upstream_unavailable", "Gemini sent a stream event that is not JSON",
                               status=502) from exc
        if isinstance(payload, list):  # a JSON-array error body sent on the stream
            payload = payload[0] if payload else {}
        if not isinstance(payload, Mapping):
            return []
        if "error" in payload:
            raise error_from_wire(0, payload, {})
        check_prompt_blocked(payload)
        if payload.get("usageMetadata"):
            self._usage = payload["usageMetadata"]  # cumulative: the last one is the total
        if self._id is None:
            self._id = payload.get("responseId") or _new_response_id()
            self._model = payload.get("modelVersion") or self._model
        return list(self._chunks(payload))

    def _chunks(self, payload: Mapping[str, Any]) -> Iterator[ChatChunk]:
        for candidate in payload.get("candidates") or ():
            index = int(candidate.get("index") or 0)
            if index not in self._started:
                self._started.add(index)
                yield ChatChunk(index=index, role="assistant", id=self._id, model=self._model)
            for part in (candidate.get("content") or {}).get("parts") or ():
                if part.get("thought"):
                    continue
                if "functionCall" in part:
                    yield self._tool_chunk(index, part)
                elif part.get("text"):
                    yield ChatChunk(index=index, text=part["text"])
            reason = map_finish_reason(candidate.get("finishReason"), index in self._tool_counts)
            if reason is not None:
                yield ChatChunk(index=index, finish_reason=reason)

    def _tool_chunk(self, index: int, part: Mapping[str, Any]) -> ChatChunk:
        # Gemini streams a function call whole, so one delta carries id, name and arguments.
        call = _tool_call(part)
        n = self._tool_counts.get(index, 0)
        self._tool_counts[index] = n + 1
        delta = ToolCallDelta(index=n, id=call.id, name=call.name, arguments=call.arguments)
        return ChatChunk(index=index, tool_calls=[delta])

    def finish(self) -> Iterable[ChatChunk]:
        usage = parse_usage(self._usage)
        return [ChatChunk(usage=usage)] if usage is not None else []


# --------------------------------------------------------------------------- errors

# google.rpc.Code names -> (kind, status). The HTTP status usually agrees; the name wins.
_STATUS_CODES: dict[str, tuple[str, int]] = {
    "INVALID_ARGUMENT": ("invalid_request", 400),
    "FAILED_PRECONDITION": ("invalid_request", 400),
    "OUT_OF_RANGE": ("invalid_request", 400),
    "UNAUTHENTICATED": ("authentication", 401),
    "PERMISSION_DENIED": ("permission", 403),
    "NOT_FOUND": ("not_found", 404),
    "RESOURCE_EXHAUSTED": ("rate_limit", 429),
    "INTERNAL": ("server_error", 500),
    "UNKNOWN": ("server_error", 500),
    "UNAVAILABLE": ("overloaded", 503),
    "DEADLINE_EXCEEDED": ("timeout", 504),
}
_API_KEY_RE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def error_from_wire(status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
    """A Google error (HTTP response, or ``status`` 0 for an error object inside a stream)."""
    err = _error_object(payload)
    code_name = str(err.get("status") or "")
    message = _API_KEY_RE.sub("[redacted]", str(err.get("message") or "")).strip()
    if status < 400:
        status = int(err.get("code") or 0) or 502
    kind, status = _STATUS_CODES.get(code_name) or (kind_for_status(status), status)
    if not message:
        message = f"Gemini returned HTTP {status}"
    details = err.get("details") if isinstance(err.get("details"), list) else []
    if _is_invalid_key(message, details):
        # Gemini answers a bad key with 400 INVALID_ARGUMENT; clients expect 401.
        kind, status = "authentication", 401
    elif kind == "invalid_request" and "exceeds the maximum number of tokens" in message:
        kind = "context_window_exceeded"
    return GatewayError(
        kind,
        message,
        status=status,
        retry_after=_retry_after(headers, details),
        code=code_name or None,
    )


def _error_object(payload: Any) -> Mapping[str, Any]:
    if isinstance(payload, list) and payload:  # some Google front ends wrap errors in an array
        payload = payload[0]
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        return payload["error"]
    if isinstance(payload, str) and payload:
        return {"message": payload[:500]}
    return {}


def _is_invalid_key(message: str, details: list[Any]) -> bool:
    if "API key not valid" in message or "API key expired" in message:
        return True
    return any(isinstance(d, Mapping) and d.get("reason") in ("API_KEY_INVALID", "API_KEY_EXPIRED") for d in details)


def _retry_after(headers: Mapping[str, str], details: list[Any]) -> float | None:
    from_header = retry_after_seconds({k.lower(): v for k, v in headers.items()})
    if from_header is not None:
        return from_header
    for d in details:
        if isinstance(d, Mapping) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION_RE.match(str(d.get("retryDelay") or ""))
            if match:
                return float(match.group(1))
    return None


# --------------------------------------------------------------------------- embeddings


def build_embeddings_body(req: EmbeddingRequest, up: Upstream) -> dict[str, Any]:
    model = _model_path(up.model)
    requests = []
    for text in req.input:
        item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
        if req.dimensions is not None:
            item["outputDimensionality"] = req.dimensions
        if req.task_type:
            item["taskType"] = req.task_type.upper()
        requests.append(item)
    return {"requests": requests}


def parse_embeddings(payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("embeddings"), list):
        raise GatewayError("upstream_unavailable", "Gemini sent an embeddings response without embeddings",
                           status=502)
    vectors = [list(e.get("values") or ()) for e in payload["embeddings"]]
    meta = payload.get("usageMetadata")
    tokens = int(meta.get("promptTokenCount") or 0) if isinstance(meta, Mapping) else 0
    if not tokens:
        # batchEmbedContents reports no token count; usage, limits and cost still need one,
        # so estimate with the ~4 characters per token rule of thumb Google itself documents.
        tokens = sum(math.ceil(len(text) / 4) for text in req.input)
    return EmbeddingResponse(model=up.model, vectors=vectors, usage=EmbeddingUsage(input_tokens=tokens))


ADAPTER = GeminiAdapter()
