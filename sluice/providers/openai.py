"""OpenAI Chat Completions and Embeddings, and every server that speaks that dialect.

OpenAI-compatible servers differ from OpenAI in a handful of declared ways (a ``Dialect``):
default base URL, how the key is sent, the name of the token-limit field, whether
``stream_options`` is understood, parameter renames and parameters they reject. One
``OpenAIAdapter`` per dialect; nothing else is duplicated.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, is_not
from typing import Any, Iterable, Mapping

import msgspec
import orjson

from sluice.providers.answer_relay import decode_answer, split_at_model, usage_of
from sluice.providers.base import SSEEvent, Upstream, WireRequest, decode_error_body, retry_after_seconds
from sluice.providers.relay import OpenAIRelay
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
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    kind_for_status,
)


@dataclass(frozen=True)
class Dialect:
    kind: str
    base_url: str
    auth: str = "bearer"  # "bearer" | "api-key" (Azure) | "none"
    max_tokens_field: str = "max_tokens"
    stream_usage: bool = True  # understands stream_options.include_usage
    renames: Mapping[str, str] = field(default_factory=dict)
    unsupported: frozenset[str] = frozenset()  # canonical fields the server rejects
    tool_choice_required: str = "required"  # what the server calls "must call a tool"
    text_only: bool = False  # no image input
    json_schema: bool = True  # understands response_format {"type": "json_schema"}
    embeddings: bool = True


# Parameters that only steer best-effort behaviour or attribution: a server that lacks them is
# called without them rather than failed (OpenAI itself calls ``seed`` best effort).
_DROPPABLE = frozenset({"user", "seed"})
# Canonical fields _params() places, as the client set them or a deployment's default; other
# per-deployment params are copied as they are.
_PARAM_ORDER = ("temperature", "top_p", "stop", "n", "seed", "presence_penalty", "frequency_penalty",
                "parallel_tool_calls", "user", "metadata")
_PARAMS = frozenset(_PARAM_ORDER)
_param_values = attrgetter(*_PARAM_ORDER)

DIALECTS: dict[str, Dialect] = {
    d.kind: d
    for d in (
        # OpenAI deprecated max_tokens; reasoning models reject it.
        Dialect("openai", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens"),
        # Azure's GA inference spec (api-version 2024-10-21, Azure/azure-rest-api-specs) has only
        # max_tokens; max_completion_tokens arrived with the 2024-09-01-preview line, so the
        # field is picked per api_version in _max_tokens_field().
        Dialect("azure", "", auth="api-key", max_tokens_field="max_completion_tokens"),
        Dialect("vllm", "http://localhost:8000/v1", auth="bearer"),
        # Ollama's compatibility page lists the fields it reads: no n (it would silently answer
        # one choice), no user; stream_options.include_usage is listed.
        Dialect("ollama", "http://localhost:11434/v1", unsupported=frozenset({"n", "user"})),
        # llama-server rejects n != 1 ("Only one completion choice is allowed").
        Dialect("llamacpp", "http://localhost:8080/v1", unsupported=frozenset({"n"})),
        # Mistral's ChatCompletionRequest (mistralai/client-python): random_seed instead of seed,
        # tool_choice enum auto|none|any|required, n supported, no user or stream_options
        # (extra fields are rejected with 422); usage arrives in the last chunk unasked.
        Dialect(
            "mistral",
            "https://api.mistral.ai/v1",
            renames={"seed": "random_seed"},
            tool_choice_required="any",
            stream_usage=False,
            unsupported=frozenset({"user"}),
        ),
        # Groq's API reference: n is constrained to 1; stream_options.include_usage accepted.
        Dialect("groq", "https://api.groq.com/openai/v1", unsupported=frozenset({"n"})),
        Dialect("together", "https://api.together.xyz/v1"),
        # DeepSeek's create-chat-completion reference lists no n, seed or user and only
        # response_format text|json_object; its chat models take no image input.
        Dialect("deepseek", "https://api.deepseek.com/v1", text_only=True, json_schema=False,
                unsupported=frozenset({"n", "seed", "user"}), embeddings=False),
        # OpenRouter always reports usage; stream_options.include_usage is accepted (a no-op).
        Dialect("openrouter", "https://openrouter.ai/api/v1"),
        # Any other server that speaks the dialect, addressed only by base_url.
        Dialect("openai-compatible", "", auth="bearer"),
    )
}

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "eos": "stop",
    "model_length": "length",
    "error": "error",
    "insufficient_system_resource": "error",  # DeepSeek: generation cut off by the server
}


def _finish(reason: str | None):
    return None if reason is None else _FINISH.get(reason, "stop")


def _wire_finish(reason: str) -> str:
    """An upstream's finish reason as an OpenAI client gets it (OpenAI has no "error")."""
    finish = _finish(reason)
    return "stop" if finish == "error" else finish


class OpenAIAdapter:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.kind = dialect.kind
        self.family = "openai"

    # ---- requests -------------------------------------------------------------------------

    def _url(self, up: Upstream, path: str) -> str:
        if self.dialect.auth == "api-key":  # Azure: deployment in the path, version in the query
            if not up.api_version:
                raise GatewayError("invalid_request", f"Azure deployment '{up.provider}' needs api_version")
            base = up.base_url.rstrip("/")
            if not base.endswith("/openai"):
                base += "/openai"
            return f"{base}/deployments/{up.model}{path}?api-version={up.api_version}"
        base = (up.base_url or self.dialect.base_url).rstrip("/")
        return base + path

    def _headers(self, up: Upstream) -> dict[str, str]:
        headers: dict[str, str] = {}
        if up.api_key:
            if self.dialect.auth == "api-key":
                headers["api-key"] = up.api_key
            elif self.dialect.auth == "bearer":
                headers["authorization"] = f"Bearer {up.api_key}"
        org = up.options.get("organization")
        if org:
            headers["openai-organization"] = org
        if up.headers:
            headers.update(up.headers)
        return headers

    def chat_request(self, req: ChatRequest, up: Upstream) -> WireRequest:
        d = self.dialect
        body: dict[str, Any] = {"model": up.model, "messages": [self._message(m) for m in req.messages]}
        if d.text_only and any(isinstance(p, ImagePart) for m in req.messages for p in m.content):
            raise GatewayError("invalid_request", f"model '{req.model}' does not accept image input", param="messages")
        self._params(req, up, body)
        max_tokens = req.max_tokens
        if max_tokens is None:
            max_tokens = up.params.get("max_tokens", up.params.get("max_completion_tokens"))
        if max_tokens is not None:
            body[self._max_tokens_field(up)] = max_tokens
        if req.tools:
            body["tools"] = [_tool(t) for t in req.tools]
            if req.tool_choice is not None:
                body["tool_choice"] = self._tool_choice(req.tool_choice)
        else:
            body.pop("parallel_tool_calls", None)  # OpenAI rejects it without tools
        if req.response_format is not None and req.response_format.type != "text":
            if req.response_format.type == "json_schema" and not d.json_schema:
                raise GatewayError("invalid_request", f"provider kind '{d.kind}' does not support response_format "
                                   "'json_schema'", param="response_format")
            body["response_format"] = _response_format(req.response_format)
        if req.stream:
            body["stream"] = True
            if d.stream_usage:
                body["stream_options"] = {"include_usage": True}
        for name, value in up.params.items():
            if name not in body and name not in _PARAMS and name not in ("max_tokens", "max_completion_tokens"):
                body[name] = value
        if req.extra:
            body.update(req.extra)
        return WireRequest(url=self._url(up, "/chat/completions"), headers=self._headers(up), body=body)

    def _params(self, req: ChatRequest, up: Upstream, body: dict[str, Any]) -> None:
        """Sampling and attribution fields: the client's value, else the deployment's default."""
        d = self.dialect
        values = _param_values(req)
        if up.params:
            defaults = up.params
            params = [(name, defaults.get(name) if value is None or (name == "metadata" and not value) else value)
                      for name, value in zip(_PARAM_ORDER, values)]
        else:  # the usual deployment: only what the client set, picked out in C
            params = compress(zip(_PARAM_ORDER, values), map(is_not, values, repeat(None)))
        for name, value in params:
            if value is None or (name == "metadata" and not value):
                continue
            if name in d.unsupported:
                if (name == "n" and value == 1) or name in _DROPPABLE:
                    continue
                raise GatewayError("invalid_request", f"'{name}' is not supported by provider kind '{d.kind}'",
                                   param=name)
            body[d.renames.get(name, name)] = value
        if "metadata" in body and (d.kind != "openai" or not _store_enabled(req, up)):
            # OpenAI answers 400 "The 'metadata' parameter is only allowed when 'store' is
            # enabled"; gateway metadata is for Sluice's ledger, so it goes upstream only with
            # store, and only to OpenAI itself (compatible servers reject or ignore it).
            del body["metadata"]

    def _max_tokens_field(self, up: Upstream) -> str:
        if self.dialect.auth == "api-key" and not _azure_has_max_completion_tokens(up.api_version or ""):
            return "max_tokens"
        return self.dialect.max_tokens_field

    def _message(self, m: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": m.role}
        parts = m.content
        if m.role == "tool":
            out["tool_call_id"] = m.tool_call_id or ""
            out["content"] = m.text()
            return out
        if len(parts) == 1 and isinstance(parts[0], TextPart) or m.role in ("system", "assistant"):
            # Plain strings are what every compatible server accepts; assistant and system
            # content may only be text anyway.
            text = m.text()
            out["content"] = text if (text or not m.tool_calls) else None
        elif parts:
            out["content"] = [_part(p) for p in parts]
        else:
            out["content"] = ""
        if m.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
        if m.name:
            out["name"] = m.name
        return out

    def _tool_choice(self, choice: Any) -> Any:
        if choice == "required":
            return self.dialect.tool_choice_required
        if isinstance(choice, dict):
            return {"type": "function", "function": {"name": choice["name"]}}
        return choice

    # ---- responses ------------------------------------------------------------------------

    def chat_response(self, payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse:
        if isinstance(payload, dict) and "choices" not in payload and _is_error_event(payload):
            # Some compatible servers answer 200 with an error object.
            raise _stream_error(payload)
        if not isinstance(payload, dict) or "choices" not in payload:
            raise GatewayError("upstream_unavailable", f"upstream '{up.provider}' sent an unexpected response",
                               status=502)
        choices = []
        for i, c in enumerate(payload.get("choices") or ()):
            msg = c.get("message") or {}
            content: list = []
            text = msg.get("content")
            if isinstance(text, str) and text:
                content.append(TextPart(text=text))
            elif isinstance(text, list):  # some servers return parts
                content.extend(TextPart(text=p.get("text", "")) for p in text if p.get("type") == "text")
            refusal = msg.get("refusal")
            if refusal and not content:
                content.append(TextPart(text=refusal))
            calls = [
                ToolCall(id=t.get("id") or _call_id(), name=t["function"]["name"],
                         arguments=t["function"].get("arguments") or "{}")
                for t in msg.get("tool_calls") or ()
                if isinstance(t.get("function"), dict) and t["function"].get("name")
            ]
            finish = _finish(c.get("finish_reason"))
            if refusal and finish == "stop":
                finish = "content_filter"
            choices.append(Choice(index=c.get("index", i),
                                  message=Message(role="assistant", content=content, tool_calls=calls or None),
                                  finish_reason=finish))
        return ChatResponse(
            id=payload.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
            model=payload.get("model") or up.model,
            choices=choices,
            usage=usage_from_wire(payload.get("usage")),
            created=payload.get("created") or int(time.time()),
            system_fingerprint=payload.get("system_fingerprint"),
        )

    def stream_decoder(self, req: ChatRequest, up: Upstream) -> "OpenAIStreamDecoder":
        return OpenAIStreamDecoder(up.provider)

    def relay_response(self, dialect: str, body: bytes, up: Upstream) -> ChatResponse | None:
        """This upstream's answer as it is, for a client of ``dialect`` that can take it."""
        return relayed_answer(body) if dialect == "openai" else None

    def relay(self, dialect: str, req: ChatRequest, up: Upstream) -> OpenAIRelay | None:
        """A relay of this upstream's events to a client of ``dialect``, when it can take them."""
        if dialect != "openai":
            return None
        return OpenAIRelay(OpenAIStreamDecoder(up.provider), _wire_finish, req.n or 1, keep_usage=req.include_usage)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_wire(status, decode_error_body(body), headers)

    # ---- embeddings -----------------------------------------------------------------------

    def embeddings_request(self, req: EmbeddingRequest, up: Upstream) -> WireRequest:
        if not self.dialect.embeddings:
            raise GatewayError("invalid_request", f"provider kind '{self.kind}' does not support embeddings")
        body: dict[str, Any] = {"model": up.model, "input": req.input, "encoding_format": "float"}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        if req.user is not None and "user" not in self.dialect.unsupported:
            body["user"] = req.user
        return WireRequest(url=self._url(up, "/embeddings"), headers=self._headers(up), body=body)

    def moderations_request(self, payload: dict[str, Any], up: Upstream) -> WireRequest:
        """OpenAI's ``POST /moderations``: ``payload`` is its body, with the deployment's model."""
        body = {**payload, "model": up.model}
        return WireRequest(url=self._url(up, "/moderations"), headers=self._headers(up), body=body)

    def embeddings_response(self, payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse:
        try:
            rows = sorted(payload["data"], key=lambda r: r.get("index", 0))
            vectors = [r["embedding"] for r in rows]
        except (KeyError, TypeError) as exc:
            raise GatewayError("upstream_unavailable", f"upstream '{up.provider}' sent an unexpected embeddings "
                               "response", status=502) from exc
        usage = payload.get("usage") or {}
        return EmbeddingResponse(model=payload.get("model") or up.model, vectors=vectors,
                                 usage=EmbeddingUsage(input_tokens=usage.get("prompt_tokens", 0)))


class _WireDelta(msgspec.Struct, forbid_unknown_fields=True):
    content: str | None = None


class _WireChoice(msgspec.Struct):
    index: int = 0
    delta: _WireDelta | None = None
    finish_reason: str | None = None


class _WireChunk(msgspec.Struct):
    """The common content-delta chunk, decoded straight into a typed shape: no dicts per event.

    Strict on purpose: a chunk with anything more (a role, tool calls, usage, refusal, an
    error) fails this decoder and takes the general path, which handles every field.
    """

    choices: list[_WireChoice]
    usage: None = None
    x_groq: None = None  # Groq's usage rides here

_FAST = msgspec.json.Decoder(_WireChunk)


class OpenAIStreamDecoder:
    __slots__ = ("provider", "_started", "_roles")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._started = False
        self._roles: set[int] = set()  # choices whose first delta went out (it carries the role)

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        data = event.data
        if data == "[DONE]":
            return ()
        if self._started:
            fast = self._fast(data)
            if fast is not None:
                return fast
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError("upstream_unavailable", f"upstream '{self.provider}' sent a malformed stream event",
                               status=502) from exc
        if not isinstance(obj, dict):
            raise GatewayError("upstream_unavailable", f"upstream '{self.provider}' sent a malformed stream event",
                               status=502)
        if "choices" not in obj and _is_error_event(obj):
            raise _stream_error(obj)
        out: list[ChatChunk] = []
        first = not self._started
        self._started = True
        for c in obj.get("choices") or ():
            out.append(self._chunk(c, obj if first else None))
        # Groq reports stream usage under x_groq.usage on the last chunk.
        usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
        if usage:
            out.append(ChatChunk(usage=usage_from_wire(usage)))
        return out

    def _fast(self, data: str) -> list[ChatChunk] | None:
        try:
            wire = _FAST.decode(data)
        except msgspec.DecodeError:
            return None
        out = []
        for c in wire.choices:
            if c.index not in self._roles:
                return None  # a choice's first delta also announces its role: general path
            text = c.delta.content if c.delta is not None else None
            out.append(ChatChunk(index=c.index, text=text or None, finish_reason=_finish(c.finish_reason)))
        return out

    def _chunk(self, c: dict, envelope: dict | None) -> ChatChunk:
        delta = c.get("delta") or {}
        index = c.get("index", 0)
        role = delta.get("role")
        if index not in self._roles:
            self._roles.add(index)
            role = role or "assistant"
        calls = delta.get("tool_calls")
        return ChatChunk(
            index=index,
            role=role,
            text=delta.get("content") or delta.get("refusal") or None,
            tool_calls=[
                ToolCallDelta(index=t.get("index", 0), id=t.get("id"),
                              name=(t.get("function") or {}).get("name"),
                              arguments=(t.get("function") or {}).get("arguments") or "")
                for t in calls
            ] if calls else None,
            finish_reason=_finish(c.get("finish_reason")),
            id=envelope.get("id") if envelope else None,
            model=envelope.get("model") if envelope else None,
        )

    def finish(self) -> Iterable[ChatChunk]:
        return ()


def _is_error_event(obj: dict) -> bool:
    # OpenAI: {"error": {...}}; vLLM and some others: {"object": "error", "message": ...}.
    return "error" in obj or obj.get("object") == "error"


# In-stream errors carry no HTTP status; their type tells what the status would have been.
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "BadRequestError": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "tokens": 429,
    "requests": 429,
    "overloaded_error": 503,
}


def _stream_error(obj: dict) -> GatewayError:
    err = obj.get("error", obj)
    status = 500
    if isinstance(err, dict):
        code = err.get("code")
        if isinstance(code, int) and 400 <= code < 600:
            status = code
        else:
            status = _STATUS_BY_TYPE.get(str(err.get("type")), 500)
        payload: Any = {"error": err}
    else:
        payload = {"error": str(err)}
    return error_from_wire(status, payload, {})


def relayed_answer(body: bytes) -> ChatResponse | None:
    """An answer an OpenAI client can take as the upstream sent it, or None when the decoding
    path (``chat_response``) must normalise it first.

    Decoding an answer into canonical choices and rendering it back costs a non-streaming call
    some 350 Python opcodes, for the same content in the common case. Here the answer is checked
    against the shape the decoding path leaves as it is (``answer_relay.Answer``, in C); only its
    usage is read (the ledger and the limits need it), and its bytes go to the client with the
    model renamed to the client's alias. Fields Sluice does not model (``logprobs``,
    ``annotations``, usage details, ``service_tier``) reach the client as OpenAI sent them.
    """
    try:
        answer = decode_answer(body)
    except msgspec.DecodeError:  # not that shape (or not JSON): the decoding path deals with it
        return None
    around = split_at_model(body)
    if around is None:
        return None
    return ChatResponse(id=answer.id, model=answer.model, choices=[], usage=usage_of(answer.usage), raw=around)


def usage_from_wire(u: Any) -> Usage | None:
    if not u:
        return None
    prompt_details = u.get("prompt_tokens_details") or {}
    completion_details = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        # DeepSeek also reports cache hits as prompt_cache_hit_tokens.
        cached_tokens=prompt_details.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def error_from_wire(status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
    err = payload.get("error") if isinstance(payload, dict) else None
    if err is None and isinstance(payload, dict) and ("message" in payload or "detail" in payload):
        err = payload  # vLLM's {"object": "error", "message": ...}; FastAPI-style {"detail": ...}
    if isinstance(err, dict):
        detail = err.get("detail")
        message = err.get("message") or (detail if isinstance(detail, str) else "") or f"upstream error {status}"
        code = err.get("code") if isinstance(err.get("code"), str) else None
        param = err.get("param") if isinstance(err.get("param"), str) else None
    else:
        message = (err if isinstance(err, str) else payload if isinstance(payload, str) else "") or \
                  f"upstream error {status}"
        code = param = None
    message = _redact(str(message))
    kind = kind_for_status(status)
    text = message.lower()
    if code == "context_length_exceeded" or "maximum context length" in text or "context window" in text:
        kind = "context_window_exceeded"
    elif code in ("content_policy_violation", "content_filter") or "content management policy" in text:
        kind = "content_policy"
    return GatewayError(kind, message, status=status, retry_after=retry_after_seconds(headers), param=param,
                        code=code)


# OpenAI's 401 text quotes part of the key ("Incorrect API key provided: sk-proj-***abcd");
# that is the gateway's secret, not the client's, so it never reaches a client.
_KEY_QUOTED = re.compile(r"(API key provided: )\S+", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\b(?:sk|gsk)[-_][A-Za-z0-9*_\-]{6,}")


def _redact(message: str) -> str:
    if "key" not in message.lower() and "sk" not in message:
        return message
    return _KEY_LIKE.sub("[redacted]", _KEY_QUOTED.sub(r"\1[redacted]", message))


def _store_enabled(req: ChatRequest, up: Upstream) -> bool:
    store = (req.extra or {}).get("store")
    return (store if store is not None else up.params.get("store")) is True


def _azure_has_max_completion_tokens(api_version: str) -> bool:
    """Whether an Azure api-version's chat schema has ``max_completion_tokens``.

    It appeared in 2024-09-01-preview; the GA spec 2024-10-21 does not list it. Later GA
    versions and the version-less v1 API ("v1", "preview") have it.
    """
    if not api_version[:4].isdigit():
        return True
    date = api_version[:10]
    if api_version.endswith("-preview"):
        return date >= "2024-09-01"
    return date > "2024-10-21"


def _part(p) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    image: dict[str, Any] = {"url": p.as_url()}
    if p.detail:
        image["detail"] = p.detail
    return {"type": "image_url", "image_url": image}


def _tool(t) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name}
    if t.description:
        fn["description"] = t.description
    fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _response_format(rf) -> dict[str, Any]:
    if rf.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
    if rf.strict is not None:
        schema["strict"] = rf.strict
    return {"type": "json_schema", "json_schema": schema}


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


ADAPTERS: dict[str, OpenAIAdapter] = {kind: OpenAIAdapter(d) for kind, d in DIALECTS.items()}
