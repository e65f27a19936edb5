"""Hugging Face Text Generation Inference, native API: ``POST /generate`` and ``/generate_stream``.

TGI also serves an OpenAI-compatible ``/v1/chat/completions``; deployments that need tools or
the model's own Jinja chat template should use kind ``openai-compatible`` with base_url
``<tgi>/v1``. This adapter speaks the native API, which takes one prompt string, so chat
messages are rendered into a prompt here.

Options (``up.options``):

``chat_template``
    ``"chatml"`` (default), ``"llama3"``, ``"mistral"``, ``"zephyr"`` or ``"plain"``.
``prompt_format``
    A mapping that overrides fields of the chosen template, for models none of them fits:
    ``prefix`` (text before the first turn), ``system_prefix``/``system_suffix``,
    ``user_prefix``/``user_suffix``, ``assistant_prefix``/``assistant_suffix``,
    ``generation_prompt`` (what opens the reply, if not the assistant prefix), ``stop`` (list of
    strings) and ``system`` (``"turn"``: a turn of its own; ``"merge"``: prepended to the first
    user turn, for models trained without a system role).
``max_stop_sequences``
    The server's ``--max-stop-sequences`` (TGI's default is 4).

Rendering: every turn is ``<role prefix><text><role suffix>``; the prompt ends with the
assistant prefix, or, when the last message is from the assistant, with that message left
open so the model continues it (prefill). No BOS token is written: ``/generate`` tokenizes
the prompt with the tokenizer's special tokens added, so the server puts BOS in itself.
The template's end-of-turn markers are sent as stop sequences so a model whose EOS token is
something else still stops at the end of its turn; request stops take precedence when the
server's limit does not fit both.

Refused with ``invalid_request``: images (text-only deployment), tools and tool messages
(the native API has no tool calling), ``n`` > 1. ``response_format`` becomes TGI's
``grammar`` (JSON schema constrained decoding).
"""

from __future__ import annotations

import math
from random import getrandbits
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Mapping

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
    Usage,
)

KIND = "tgi"
DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_MAX_STOP_SEQUENCES = 4  # TGI launcher's --max-stop-sequences default

_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}

# Parameters of TGI's GenerateParameters a deployment may set in ``params``.
_NATIVE_PARAMS = ("repetition_penalty", "typical_p", "truncate", "watermark", "adapter_id", "top_n_tokens")


# ---- chat templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    system_prefix: str = ""
    system_suffix: str = ""
    user_prefix: str = ""
    user_suffix: str = ""
    assistant_prefix: str = ""
    assistant_suffix: str = ""
    stop: tuple[str, ...] = ()
    system: str = "turn"  # "turn" | "merge"
    prefix: str = ""
    generation_prompt: str | None = None  # what opens the reply; None: assistant_prefix

    @property
    def reply_prefix(self) -> str:
        return self.assistant_prefix if self.generation_prompt is None else self.generation_prompt


def _same_shape(name: str, open_: str, close: str, stop: tuple[str, ...], **kw: Any) -> ChatTemplate:
    """A template whose turns differ only by the role name put into ``open_``."""
    return ChatTemplate(
        name,
        system_prefix=open_.format(role="system"), system_suffix=close,
        user_prefix=open_.format(role="user"), user_suffix=close,
        assistant_prefix=open_.format(role="assistant"), assistant_suffix=close,
        stop=stop, **kw,
    )


TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        _same_shape("chatml", "<|im_start|>{role}\n", "<|im_end|>\n", ("<|im_end|>",)),
        _same_shape("llama3", "<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>", ("<|eot_id|>",)),
        # Mistral instruct models have no system role: the system text opens the first user turn.
        ChatTemplate(
            "mistral", user_prefix="[INST] ", user_suffix=" [/INST]", assistant_suffix="</s>",
            stop=("</s>", "[INST]"), system="merge",
        ),
        ChatTemplate(
            "zephyr",
            system_prefix="<|system|>\n", system_suffix="</s>\n",
            user_prefix="<|user|>\n", user_suffix="</s>\n",
            assistant_prefix="<|assistant|>\n", assistant_suffix="</s>\n",
            stop=("</s>", "<|user|>"),
        ),
        ChatTemplate(
            "plain",
            system_prefix="System: ", system_suffix="\n\n",
            user_prefix="User: ", user_suffix="\n\n",
            assistant_prefix="Assistant: ", assistant_suffix="\n\n",
            # No trailing space: tokenizers attach the space to the next word, and a prompt
            # ending in a bare space pushes the model into unusual tokens.
            generation_prompt="Assistant:",
            stop=("\nUser:",),
        ),
    )
}

_FORMAT_FIELDS = frozenset(
    ("prefix", "system_prefix", "system_suffix", "user_prefix", "user_suffix", "assistant_prefix",
     "assistant_suffix", "system", "generation_prompt")
)


def template_for(up: Upstream) -> ChatTemplate:
    name = up.options.get("chat_template") or "chatml"
    template = TEMPLATES.get(name)
    if template is None:
        # A configuration fault, not the client's: config validation should catch it first.
        raise GatewayError(
            "server_error",
            f"deployment '{up.provider}' names unknown chat_template '{name}' "
            f"(known: {', '.join(sorted(TEMPLATES))})",
        )
    custom = up.options.get("prompt_format")
    if not custom:
        return template
    changes: dict[str, Any] = {k: str(v) for k, v in custom.items() if k in _FORMAT_FIELDS and v is not None}
    if changes.get("system", "turn") not in ("turn", "merge"):
        raise GatewayError("server_error", f"deployment '{up.provider}': prompt_format.system must be "
                           "'turn' or 'merge'")
    if "stop" in custom:
        changes["stop"] = tuple(str(s) for s in (custom["stop"] or ()))
    return replace(template, name="custom", **changes)


def render_prompt(messages: list[Message], template: ChatTemplate) -> str:
    """The conversation as one prompt string, ending where the assistant's reply begins."""
    turns = _turns(messages, template)
    out = [template.prefix]
    for i, (role, text) in enumerate(turns):
        prefix, suffix = _affixes(template, role)
        out.append(prefix)
        out.append(text)
        if role == "assistant" and i == len(turns) - 1:
            return "".join(out)  # an open assistant turn: the model continues it
        out.append(suffix)
    out.append(template.reply_prefix)
    return "".join(out)


def _turns(messages: list[Message], template: ChatTemplate) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    pending_system: list[str] = []
    for m in messages:
        text = _message_text(m)
        if m.role == "system" and template.system == "merge":
            pending_system.append(text)
            continue
        if m.role == "user" and pending_system:
            text = "\n\n".join(pending_system + [text])
            pending_system = []
        turns.append((m.role, text))
    if pending_system:  # only system text, or system after the last user turn
        turns.append(("user", "\n\n".join(pending_system)))
    return turns


def _message_text(m: Message) -> str:
    if m.role == "tool" or m.tool_calls:
        raise GatewayError(
            "invalid_request",
            "tool calls need TGI's OpenAI-compatible endpoint; this deployment uses the native "
            "/generate API (configure kind 'openai-compatible' with base_url '<tgi>/v1')",
            param="messages",
        )
    parts: list[str] = []
    for p in m.content:
        if isinstance(p, ImagePart):
            raise GatewayError("invalid_request", "this deployment takes text only", param="messages")
        if isinstance(p, TextPart):
            parts.append(p.text)
    return "".join(parts)


def _affixes(template: ChatTemplate, role: str) -> tuple[str, str]:
    if role == "system":
        return template.system_prefix, template.system_suffix
    if role == "assistant":
        return template.assistant_prefix, template.assistant_suffix
    return template.user_prefix, template.user_suffix


# ---- request --------------------------------------------------------------------------------


def _check_supported(req: ChatRequest) -> None:
    if req.tools:
        raise GatewayError(
            "invalid_request",
            "tools need TGI's OpenAI-compatible endpoint; this deployment uses the native /generate "
            "API (configure kind 'openai-compatible' with base_url '<tgi>/v1')",
            param="tools",
        )
    if req.n is not None and req.n > 1:
        raise GatewayError("invalid_request", "this deployment returns one choice per request (n must be 1)",
                           param="n")


def stop_sequences(req: ChatRequest, up: Upstream, template: ChatTemplate) -> list[str]:
    """Request stops first, then the template's, within the server's limit."""
    limit = int(up.options.get("max_stop_sequences") or DEFAULT_MAX_STOP_SEQUENCES)
    requested = list(dict.fromkeys(s for s in (req.stop or ()) if s))
    if len(requested) > limit:
        raise GatewayError("invalid_request", f"this deployment supports up to {limit} stop sequences",
                           param="stop")
    # A template stop dropped here is usually also the model's EOS token, which ends generation anyway.
    extra = [s for s in template.stop if s not in requested]
    return requested + extra[: limit - len(requested)]


def _sampling(req: ChatRequest, up: Upstream) -> dict[str, Any]:
    p = up.params
    out: dict[str, Any] = {}
    temperature = req.temperature if req.temperature is not None else p.get("temperature")
    if temperature is not None:
        # TGI rejects temperature <= 0; "0" means greedy decoding, which is sampling switched off.
        if temperature <= 0:
            out["do_sample"] = False
        else:
            out["temperature"] = temperature
            out["do_sample"] = True
    # TGI samples whenever a warper (top_p, top_k) is set, so greedy decoding sends none.
    greedy = out.get("do_sample") is False
    top_p = req.top_p if req.top_p is not None else p.get("top_p")
    if top_p is not None and 0 < top_p < 1 and not greedy:  # TGI wants 0 < top_p < 1; 1.0 is "no filter"
        out["top_p"] = top_p
    top_k = req.top_k if req.top_k is not None else p.get("top_k")
    if top_k is not None and top_k > 0 and not greedy:
        out["top_k"] = top_k
    seed = req.seed if req.seed is not None else p.get("seed")
    if seed is not None and seed >= 0:  # TGI's seed is unsigned
        out["seed"] = seed
    freq = req.frequency_penalty if req.frequency_penalty is not None else p.get("frequency_penalty")
    if freq is not None:
        out["frequency_penalty"] = freq
    # presence_penalty has no counterpart in the native API and is dropped.
    for name in _NATIVE_PARAMS:
        if name in p:
            out[name] = p[name]
    return out


def _grammar(req: ChatRequest) -> dict[str, Any] | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_schema" and rf.schema:
        return {"type": "json", "value": rf.schema}
    return {"type": "json", "value": {"type": "object"}}


def _max_new_tokens(req: ChatRequest, up: Upstream) -> int:
    if req.max_tokens is not None:
        return req.max_tokens
    for key in ("max_tokens", "max_new_tokens"):
        if up.params.get(key) is not None:
            return int(up.params[key])
    return DEFAULT_MAX_NEW_TOKENS


def build_body(req: ChatRequest, up: Upstream) -> dict[str, Any]:
    _check_supported(req)
    template = template_for(up)
    params: dict[str, Any] = {"max_new_tokens": _max_new_tokens(req, up), **_sampling(req, up)}
    stops = stop_sequences(req, up, template)
    if stops:
        params["stop"] = stops
    grammar = _grammar(req)
    if grammar is not None:
        params["grammar"] = grammar
    # details: finish reason and token counts; prefill logprobs would cost a full pass over the prompt.
    params.update(details=True, decoder_input_details=False, return_full_text=False)
    if req.extra and getattr(req, "extra_dialect", None) in (None, KIND):
        # Every knob of the native API lives in ``parameters``; a top-level key would be ignored.
        params.update(req.extra)
    return {"inputs": render_prompt(req.messages, template), "parameters": params}


def _headers(up: Upstream) -> dict[str, str]:
    headers: dict[str, str] = {}
    if up.api_key:
        headers["authorization"] = f"Bearer {up.api_key}"
    headers.update(up.headers)
    return headers


# ---- response -------------------------------------------------------------------------------


def _new_id() -> str:
    return f"chatcmpl-{getrandbits(96):024x}"


def estimate_tokens(text: str) -> int:
    # The native API reports the prompt's token count only as per-token prefill details (which
    # cost a logprob pass over the whole prompt) or, in newer servers, in the stream's final
    # details; when neither is there, ~4 characters per token is the usual rough measure.
    return math.ceil(len(text) / 4)


def strip_stop(text: str, stops: Iterable[str]) -> tuple[str, str | None]:
    """``text`` without the stop sequence TGI leaves at its end, and which one that was."""
    best: str | None = None
    for s in stops:
        if s and text.endswith(s) and (best is None or len(s) > len(best)):
            best = s
    return (text[: -len(best)], best) if best else (text, None)


def _user_stop(matched: str | None, req: ChatRequest) -> str | None:
    # Only a stop the client asked for is reported; a template stop is an ordinary end of turn.
    return matched if matched is not None and matched in (req.stop or ()) else None


def parse_response(payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse:
    if isinstance(payload, list) and payload:
        payload = payload[0]  # the compat route ``POST /`` answers with a one-item list
    if not isinstance(payload, dict) or not isinstance(payload.get("generated_text"), str):
        raise GatewayError("upstream_unavailable", f"upstream '{up.provider}' sent an unexpected response",
                           status=502)
    details = payload.get("details") or {}
    template = template_for(up)
    raw = details.get("finish_reason")
    finish = _FINISH.get(raw, "stop") if raw else "stop"
    text, matched = payload["generated_text"], None
    if raw == "stop_sequence":
        text, matched = strip_stop(text, stop_sequences(req, up, template))
    prefill = details.get("prefill") or ()
    input_tokens = len(prefill) or estimate_tokens(render_prompt(req.messages, template))
    return ChatResponse(
        id=_new_id(),
        model=up.model,
        created=int(time.time()),
        choices=[Choice(
            message=Message(role="assistant", content=[TextPart(text=text)]),
            finish_reason=finish,
            stop_sequence=_user_stop(matched, req),
        )],
        usage=Usage(input_tokens=input_tokens, output_tokens=int(details.get("generated_tokens") or 0)),
    )


# ---- stream ---------------------------------------------------------------------------------


def _held_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that could be the start of a stop sequence."""
    longest = 0
    for s in stops:
        for k in range(min(len(s), len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class TGIStreamDecoder:
    """Reads ``/generate_stream`` events: one token each, details on the last.

    TGI streams a stop sequence's tokens before it notices the match, so text that could be
    the start of a stop sequence is held back until the next token shows whether it was.
    """

    __slots__ = ("req", "up", "stops", "id", "started", "finished", "pending", "prompt_tokens")

    def __init__(self, req: ChatRequest, up: Upstream, stops: list[str], prompt_tokens: int) -> None:
        self.req = req
        self.up = up
        self.stops = stops
        self.id = _new_id()
        self.started = False
        self.finished = False
        self.pending = ""
        self.prompt_tokens = prompt_tokens  # estimate, for servers that do not report input_length

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        data = event.data.strip()
        if not data or data == "[DONE]" or self.finished:
            return ()
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError("upstream_unavailable", f"upstream '{self.up.provider}' sent a malformed stream "
                               "event", status=502) from exc
        if not isinstance(obj, dict):
            return ()
        if "error" in obj:
            raise error_from_type(obj.get("error_type"), str(obj.get("error") or "generation failed"))
        return list(self._chunks(obj))

    def _chunks(self, obj: dict[str, Any]) -> Iterator[ChatChunk]:
        if not self.started:
            self.started = True
            yield ChatChunk(role="assistant", id=self.id, model=self.up.model)
        token = obj.get("token") or {}
        if not token.get("special"):
            self.pending += token.get("text") or ""
        details = obj.get("details")
        if details is None:
            keep = _held_suffix(self.pending, self.stops)
            ready, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep:]
            if ready:
                yield ChatChunk(text=ready)
            return
        yield from self._final(details)

    def _final(self, details: dict[str, Any]) -> Iterator[ChatChunk]:
        self.finished = True
        raw = details.get("finish_reason")
        matched = None
        if raw == "stop_sequence":
            self.pending, matched = strip_stop(self.pending, self.stops)
        if self.pending:
            yield ChatChunk(text=self.pending)
            self.pending = ""
        yield ChatChunk(finish_reason=_FINISH.get(raw, "stop"), stop_sequence=_user_stop(matched, self.req))
        # Newer servers report the prompt's token count as ``input_length``.
        input_tokens = details.get("input_length") or self.prompt_tokens
        yield ChatChunk(usage=Usage(input_tokens=int(input_tokens),
                                    output_tokens=int(details.get("generated_tokens") or 0)))

    def finish(self) -> Iterable[ChatChunk]:
        if self.finished:
            return ()
        raise GatewayError("upstream_unavailable", f"upstream '{self.up.provider}' ended the stream before "
                           "generation finished", status=502)


# ---- errors ---------------------------------------------------------------------------------

_CONTEXT = re.compile(r"must have less than \d+ tokens|tokens \+ `?max_new_tokens`? must be <=")


def error_from_type(error_type: str | None, message: str, status: int | None = None,
                    retry_after: float | None = None) -> GatewayError:
    """A TGI error (by ``error_type``, else by HTTP status) as the error an OpenAI client expects."""
    kind, out_status = _classify(error_type, status, message)
    return GatewayError(kind, message, status=out_status, retry_after=retry_after, code=error_type or None)


def _classify(error_type: str | None, status: int | None, message: str) -> tuple[str, int]:
    if error_type == "validation" or status == 422 or error_type in ("template_error", "tool_error"):
        if _CONTEXT.search(message):
            return "context_window_exceeded", 400
        # OpenAI-dialect clients treat 400 as "fix the request"; TGI's 422 means the same thing.
        return "invalid_request", 400
    if error_type == "overloaded" or status == 429:
        # TGI answers 429 when its concurrent-request limit is reached: back off and retry.
        return "rate_limit", 429
    if error_type == "generation" or status == 424:
        # The model server failed mid-generation (e.g. out of memory): the upstream failed, not
        # the request, so it is a retryable bad gateway.
        return "server_error", 502
    if error_type == "incomplete_generation":
        return "server_error", 502
    if status is None:
        return "server_error", 502
    if status == 413:
        return "payload_too_large", 413
    if status in (401, 403, 404, 408):
        return {401: "authentication", 403: "permission", 404: "not_found", 408: "timeout"}[status], status
    if status == 503:
        return "overloaded", 503  # loading, scaling from zero or unhealthy
    if status == 504:
        return "timeout", 504
    if status >= 500:
        return "server_error", 502
    return "invalid_request", 400


def error_from_wire(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    payload = decode_error_body(body)
    error_type: str | None = None
    if isinstance(payload, dict):
        message = payload.get("error")
        error_type = payload.get("error_type") if isinstance(payload.get("error_type"), str) else None
        if isinstance(message, dict):  # proxies in front of TGI (e.g. Inference Endpoints) nest it
            message = message.get("message")
        message = str(message) if message else ""
    else:
        message = payload if isinstance(payload, str) else ""
    message = message[:2000] or f"upstream error {status}"
    retry_after = retry_after_seconds(headers)
    if retry_after is None and isinstance(payload, dict) and isinstance(payload.get("estimated_time"), (int, float)):
        # Hugging Face's hosted endpoints answer 503 with the model's remaining load time.
        retry_after = max(0.0, float(payload["estimated_time"]))
    return error_from_type(error_type, message, status, retry_after)


# ---- adapter --------------------------------------------------------------------------------


class TGIAdapter:
    kind = KIND

    def chat_request(self, req: ChatRequest, up: Upstream) -> WireRequest:
        path = "/generate_stream" if req.stream else "/generate"
        return WireRequest(url=up.base_url.rstrip("/") + path, headers=_headers(up), body=build_body(req, up))

    def chat_response(self, payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse:
        return parse_response(payload, req, up)

    def stream_decoder(self, req: ChatRequest, up: Upstream) -> TGIStreamDecoder:
        template = template_for(up)
        prompt = render_prompt(req.messages, template)
        return TGIStreamDecoder(req, up, stop_sequences(req, up, template), estimate_tokens(prompt))

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_wire(status, body, headers)

    def embeddings_request(self, req: EmbeddingRequest, up: Upstream) -> WireRequest:
        raise unsupported(KIND, "embeddings")

    def embeddings_response(self, payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse:
        raise unsupported(KIND, "embeddings")


ADAPTER = TGIAdapter()
