"""OpenAI's Chat Completions and Embeddings API as Sluice serves it: wire ⇄ canonical.

Pure functions, no I/O. Validation mirrors OpenAI's own so a client gets the error it would
get from OpenAI, in OpenAI's error schema, before anything is sent upstream.
"""

from __future__ import annotations

import base64
import re
import struct
import time
from typing import Any

import orjson

from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    GatewayError,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

_HANDLED = frozenset({
    "model", "messages", "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "n",
    "seed", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "user", "metadata", "stream", "stream_options", "functions", "function_call",
})


def _bad(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param, code=code)


def _number(body: dict, name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(f"Invalid type for '{name}': expected a number, but got {type(v).__name__}.", name,
                   "invalid_type")
    if not lo <= v <= hi:
        raise _bad(f"Invalid '{name}': {v} is not between {lo:g} and {hi:g}.", name, "invalid_value")
    return v


def _int(body: dict, name: str, lo: int = 0) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"Invalid type for '{name}': expected an integer, but got {type(v).__name__}.", name,
                   "invalid_type")
    if v < lo:
        raise _bad(f"Invalid '{name}': integer below minimum value. Expected a value >= {lo}, but got {v} instead.",
                   name, "integer_below_min_value")
    return v


def _n(body: dict) -> int | None:
    n = _int(body, "n", 1)
    if n is not None and n > 128:
        raise _bad(f"Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} instead.", "n",
                   "integer_above_max_value")
    return n


# ---- requests -----------------------------------------------------------------------------------


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    messages = [_message(m, i) for i, m in enumerate(raw_messages)]
    keys = body.keys()
    if keys <= _MINIMAL:  # what most SDK calls send: the rest are defaults, not checked one by one
        stream, include_usage = _stream_fields(body)
        return ChatRequest(model=model, messages=messages, stream=stream, include_usage=include_usage)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _bad("Invalid 'stop': expected a string or an array of strings.", "stop")
    # Most requests set few of the optional fields: those absent are not checked one by one.
    sampling = _sampling(body) if keys & _SAMPLING else _NO_SAMPLING
    tools, tool_choice = _tools(body) if keys & _TOOL_FIELDS else (None, None)
    stream, include_usage = _stream_fields(body)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("Invalid type for 'metadata': expected an object.", "metadata")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("Invalid type for 'user': expected a string.", "user")
    extra = {k: v for k, v in body.items() if k not in _HANDLED} if keys - _HANDLED else None
    parallel = body.get("parallel_tool_calls")
    return ChatRequest(
        model=model,
        messages=messages,
        **sampling,
        stop=stop or None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel if isinstance(parallel, bool) else None,
        response_format=_response_format(body.get("response_format")),
        user=user,
        metadata=metadata,
        stream=stream,
        include_usage=include_usage,
        extra=extra or None,
        extra_dialect="openai" if extra else None,
    )


def _stream_fields(body: dict) -> tuple[bool, bool]:
    """``stream`` and whether ``stream_options`` asks for the usage chunk."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"Invalid type for 'stream': expected a boolean, but got {type(stream).__name__}.", "stream",
                   "invalid_type")
    stream_options = body.get("stream_options")
    if stream_options is None:
        return stream is True, False
    if not stream:
        raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    return True, bool(isinstance(stream_options, dict) and stream_options.get("include_usage"))


_MINIMAL = frozenset({"model", "messages", "stream", "stream_options"})
_SAMPLING = frozenset({"temperature", "top_p", "top_k", "max_completion_tokens", "max_tokens", "n", "seed",
                       "presence_penalty", "frequency_penalty"})
_NO_SAMPLING: dict[str, Any] = dict.fromkeys(("temperature", "top_p", "top_k", "max_tokens", "n", "seed",
                                              "presence_penalty", "frequency_penalty"))
_TOOL_FIELDS = frozenset({"tools", "functions", "tool_choice", "function_call"})


def _sampling(body: dict) -> dict[str, Any]:
    max_tokens = _int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1)
    return {
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
        "top_k": _int(body, "top_k", 0),
        "max_tokens": max_tokens,
        "n": _n(body),
        "seed": _int(body, "seed", -(2**63)),
        "presence_penalty": _number(body, "presence_penalty", -2, 2),
        "frequency_penalty": _number(body, "frequency_penalty", -2, 2),
    }


def _message(m: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _bad(f"Invalid type for '{where}': expected an object.", where)
    role = m.get("role")
    if role == "developer":
        role = "system"
    if role == "function":  # legacy function result: a tool result keyed by name
        return Message(role="tool", content=_content(m.get("content"), where, text_only=True),
                       tool_call_id=m.get("name"), name=m.get("name"))
    if role not in ("system", "user", "assistant", "tool"):
        raise _bad(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool', "
                   f"'function' and 'developer'.", f"{where}.role", "invalid_value")
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id",
                       "missing_required_parameter")
        return Message(role="tool", content=_content(m.get("content"), where, text_only=True), tool_call_id=call_id)
    content = m.get("content")
    calls = None
    if role == "assistant":
        calls = _tool_calls(m, where)
        if content is None and not calls:
            raise _bad(f"Missing required parameter: '{where}.content'.", f"{where}.content",
                       "missing_required_parameter")
    elif content is None:
        raise _bad(f"Missing required parameter: '{where}.content'.", f"{where}.content",
                   "missing_required_parameter")
    parts = _content(content, where, text_only=role != "user")
    return Message(role=role, content=parts, tool_calls=calls or None,
                   name=m.get("name") if isinstance(m.get("name"), str) else None)


def _content(content: Any, where: str, text_only: bool) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)] if content else []
    if not isinstance(content, list):
        raise _bad(f"Invalid type for '{where}.content': expected a string or an array of content parts.",
                   f"{where}.content", "invalid_type")
    parts: list = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text" and isinstance(p.get("text"), str):
            parts.append(TextPart(text=p["text"]))
        elif kind == "refusal" and isinstance(p.get("refusal"), str):
            parts.append(TextPart(text=p["refusal"]))
        elif kind == "image_url" and not text_only:
            image = p.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image if isinstance(image, str) else None
            if not isinstance(url, str) or not url:
                raise _bad(f"Missing required parameter: '{where}.content[{j}].image_url.url'.",
                           f"{where}.content[{j}].image_url.url", "missing_required_parameter")
            parts.append(ImagePart.from_url(url, image.get("detail") if isinstance(image, dict) else None))
        elif kind in ("input_audio", "file"):
            raise _bad(f"Content part type '{kind}' is not supported by this gateway yet.",
                       f"{where}.content[{j}].type", "unsupported_content")
        else:
            raise _bad(f"Invalid content part at '{where}.content[{j}]' (type {kind!r}).",
                       f"{where}.content[{j}].type", "invalid_value")
    return parts


def _tool_calls(m: dict, where: str) -> list[ToolCall]:
    raw = m.get("tool_calls")
    if raw is None and isinstance(m.get("function_call"), dict):  # legacy single call
        fc = m["function_call"]
        raw = [{"id": fc.get("name"), "type": "function", "function": fc}]
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad(f"Invalid type for '{where}.tool_calls': expected an array.", f"{where}.tool_calls")
    calls = []
    for j, c in enumerate(raw):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Missing required parameter: '{where}.tool_calls[{j}].function.name'.",
                       f"{where}.tool_calls[{j}].function")
        args = fn.get("arguments")
        calls.append(ToolCall(id=str(c.get("id") or f"call_{j}"), name=fn["name"],
                              arguments=args if isinstance(args, str) else orjson.dumps(args or {}).decode()))
    return calls


def _tools(body: dict) -> tuple[list[Tool] | None, Any]:
    raw = body.get("tools")
    if raw is None and isinstance(body.get("functions"), list):  # legacy functions API
        raw = [{"type": "function", "function": f} for f in body["functions"]]
    choice = body.get("tool_choice", body.get("function_call"))
    if raw is None:
        if choice is not None:
            name = "tool_choice" if "tool_choice" in body else "function_call"
            raise _bad(f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified.", name)
        return None, None
    if not isinstance(raw, list):
        raise _bad("Invalid type for 'tools': expected an array.", "tools")
    tools = []
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad(f"Invalid 'tools[{i}]': only tools of type 'function' are supported.", f"tools[{i}]")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"Missing required parameter: 'tools[{i}].function.name'.", f"tools[{i}].function.name",
                       "missing_required_parameter")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad(f"Invalid type for 'tools[{i}].function.parameters': expected an object.",
                       f"tools[{i}].function.parameters")
        tools.append(Tool(name=name, description=fn.get("description"), parameters=params,
                          strict=fn.get("strict") if isinstance(fn.get("strict"), bool) else None))
    return tools or None, _tool_choice(choice, {t.name for t in tools})


def _tool_choice(choice: Any, names: set[str]) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        fn = choice.get("function") if "function" in choice else choice
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            if name not in names:
                raise _bad(f"Invalid 'tool_choice': function '{name}' is not among the tools.", "tool_choice")
            return {"name": name}
    raise _bad("Invalid 'tool_choice': expected 'none', 'auto', 'required' or a named function.", "tool_choice")


def _response_format(rf: Any) -> ResponseFormat | None:
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise _bad("Missing required parameter: 'response_format.json_schema.name'.",
                       "response_format.json_schema.name", "missing_required_parameter")
        return ResponseFormat(type="json_schema", name=js["name"], schema=js.get("schema") or {},
                              strict=js.get("strict") if isinstance(js.get("strict"), bool) else None)
    raise _bad("Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
               "response_format.type", "invalid_value")


def parse_embeddings_request(body: Any) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(s, str) for s in raw):
        inputs = raw
    elif isinstance(raw, list) and raw and all(isinstance(s, int) for s in raw) or (
            isinstance(raw, list) and raw and all(isinstance(s, list) for s in raw)):
        raise _bad("Token-array inputs are not supported by this gateway; send text.", "input", "invalid_type")
    else:
        raise _bad("'input' must be a non-empty string or array of strings.", "input", "invalid_type")
    if any(not s for s in inputs):
        raise _bad("'input' cannot contain an empty string.", "input", "invalid_value")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _bad("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format", "invalid_value")
    user = body.get("user")
    return EmbeddingRequest(model=model, input=inputs, dimensions=_int(body, "dimensions", 1),
                            user=user if isinstance(user, str) else None, encoding_format=fmt)


# ---- responses ----------------------------------------------------------------------------------

_FINISH = {"error": "stop"}  # OpenAI has no "error" finish reason
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def _usage(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def relayed_answer_body(resp: ChatResponse, model: str) -> bytes:
    """A relayed answer's bytes (``ChatResponse.raw``) under the model name the client used."""
    head, tail = resp.raw  # type: ignore[misc]
    return b"".join((head, b'"model":', orjson.dumps(model), tail))


def render_chat_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    choices = []
    for c in resp.choices:
        m = c.message
        msg: dict[str, Any] = {"role": "assistant", "content": m.text() or None, "refusal": None}
        if m.tool_calls:
            msg["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in m.tool_calls
            ]
        choices.append({"index": c.index, "message": msg, "logprobs": None,
                        "finish_reason": _FINISH.get(c.finish_reason, c.finish_reason) or "stop"})
    out: dict[str, Any] = {
        "id": resp.id if resp.id.startswith("chatcmpl") else f"chatcmpl-{resp.id}",
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(resp.usage),
    }
    if resp.system_fingerprint:
        out["system_fingerprint"] = resp.system_fingerprint
    return out


class ChunkEncoder:
    """Canonical chunks → ``data: {chat.completion.chunk}`` lines, ending with ``data: [DONE]``.

    Usage is held back and sent by ``close()`` as OpenAI's last chunk (empty ``choices``) when
    the client asked for ``stream_options.include_usage``: upstreams report it at different
    points (with the finish chunk, after it, cumulatively), OpenAI clients expect it once, last.
    """

    __slots__ = ("_id", "_created", "_prefix", "_suffix", "_text_head", "_text_tail", "include_usage", "_usage",
                 "_roles_sent", "_model_name", "_model", "_upstream_model", "_relayed", "_done_sent")

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        self._id, self._created, self._model_name = completion_id, int(time.time()), model
        self._prefix = self._suffix = self._text_head = self._text_tail = b""  # see _templates
        self.include_usage = include_usage
        self._usage: Usage | None = None
        self._roles_sent: set[int] = set()
        self._model = b'"model":' + orjson.dumps(model)
        self._upstream_model: bytes | None = None  # the upstream's exact '"model":"…"' bytes
        self._relayed = False
        self._done_sent = False

    def _templates(self) -> None:
        """The envelope every encoded chunk shares, built at the first one (a relayed stream,
        passed through as the upstream's own events, never needs it)."""
        head = {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model_name}
        envelope = orjson.dumps(head)
        self._prefix = b"data: " + envelope[:-1] + b',"choices":'
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        self._suffix = b',"usage":null}\n\n' if self.include_usage else b"}\n\n"
        # Most chunks are one piece of text for choice 0: spliced into a ready template.
        self._text_head = self._prefix + b'[{"index":0,"delta":{"content":'
        self._text_tail = b'},"logprobs":null,"finish_reason":null}]' + self._suffix

    def encode(self, chunk: ChatChunk) -> bytes:
        if chunk.raw is not None:
            return self._relay(chunk)
        if (chunk.text is not None and chunk.index == 0 and chunk.usage is None and chunk.finish_reason is None
                and not chunk.tool_calls and 0 in self._roles_sent):  # a role went out: templates are built
            return self._text_head + orjson.dumps(chunk.text) + self._text_tail
        if not self._prefix:
            self._templates()
        if chunk.usage is not None:
            self._usage = chunk.usage  # the latest report wins: some upstreams send running totals
        delta: dict[str, Any] = {}
        if chunk.text is None and not chunk.tool_calls and chunk.finish_reason is None:
            if chunk.usage is not None or chunk.index in self._roles_sent:
                return b""
        if chunk.index not in self._roles_sent:
            self._roles_sent.add(chunk.index)
            delta["role"] = "assistant"
            if chunk.text is None and not chunk.tool_calls:
                delta["content"] = ""
        if chunk.text is not None:
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = [_tool_call_delta(t) for t in chunk.tool_calls]
        finish = _FINISH.get(chunk.finish_reason, chunk.finish_reason)
        choice = {"index": chunk.index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._prefix + b"[" + orjson.dumps(choice) + b"]" + self._suffix

    def _relay(self, chunk: ChatChunk) -> bytes:
        """The upstream's own events (same-dialect relay) with the alias the client named as the
        model. (Usage events the client did not ask for are already gone: the relay cut them
        where it found the report, see ``sluice.providers.relay``.)"""
        raw = chunk.raw
        self._relayed = True
        if self._upstream_model is None:
            found = _MODEL_FIELD.search(raw)
            if found is not None and found.end() - found.start() > len(b'"model":""'):
                self._upstream_model = found.group(0)
            else:  # no model named yet (an empty one, as Azure's first event has): event by event
                raw = _MODEL_FIELD.sub(lambda _: self._model, raw)  # a function: no template escapes
        if self._upstream_model is not None and self._upstream_model != self._model:
            raw = self._model.join(raw.split(self._upstream_model))  # one pass fewer than replace
        if chunk.usage is not None:
            self._usage = chunk.usage
        if raw.endswith(b"data: [DONE]\n\n"):
            self._done_sent = True
        return raw

    def ended(self) -> bool:
        """The relayed events so far include the stream's final ``[DONE]``."""
        return self._done_sent

    def close(self) -> bytes:
        done = b"data: [DONE]\n\n"
        if self._relayed:
            return b"" if self._done_sent else done  # the relayed events carried the usage report
        if not self.include_usage or self._usage is None:
            return done
        if not self._prefix:
            self._templates()
        return self._prefix + b'[],"usage":' + orjson.dumps(_usage(self._usage)) + b"}\n\n" + done


def _tool_call_delta(t) -> dict[str, Any]:
    call: dict[str, Any] = {"index": t.index}
    if t.id is not None:  # the first piece of a call: OpenAI sends id, type and name once
        call["id"] = t.id
        call["type"] = "function"
    fn: dict[str, Any] = {"arguments": t.arguments}
    if t.name is not None:
        fn["name"] = t.name
    call["function"] = fn
    return call


def render_embeddings(resp: EmbeddingResponse, model: str, encoding_format: str) -> dict[str, Any]:
    data = []
    for i, vec in enumerate(resp.vectors):
        emb: Any = vec
        if encoding_format == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = resp.usage.input_tokens
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# ---- errors -------------------------------------------------------------------------------------

_ERROR_TYPE = {
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "server_error": "server_error",
    "overloaded": "server_error",
    "upstream_unavailable": "server_error",
    "timeout": "timeout_error",
}


def render_error(err: GatewayError) -> tuple[int, dict[str, Any]]:
    status = 503 if err.status == 529 else err.status  # 529 is Anthropic's own; OpenAI clients know 503
    code = err.code
    if code is None and err.kind == "context_window_exceeded":
        code = "context_length_exceeded"
    elif code is None and err.kind == "content_policy":
        code = "content_policy_violation"
    body = {"error": {"message": err.message, "type": _ERROR_TYPE.get(err.kind, "invalid_request_error"),
                      "param": err.param, "code": code}}
    return status, body


def stream_error(err: GatewayError) -> bytes:
    """An error after the stream started: an ``error`` object as one more data line."""
    return b"data: " + orjson.dumps(render_error(err)[1]) + b"\n\n"
