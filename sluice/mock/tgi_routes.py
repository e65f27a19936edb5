"""Hugging Face Text Generation Inference native routes: /generate, /generate_stream, /info.

TGI requests carry no model name, so the root routes count as model ``"tgi"``; the same
routes under ``/tgi/{model}/`` take the model (and its fault directives) from the path, so a
deployment's base URL can be ``http://mock/tgi/llama+fail=503``.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sluice.mock import replies
from sluice.mock.common import STATE, ApiError, Endpoint, error_headers, is_int, is_number, json_response, send_events, send_json, serve, sse
from sluice.mock.faults import Plan
from sluice.mock.replies import Conversation
from sluice.mock.state import MockState

DEFAULT_MODEL = "tgi"
_FINISH = {"stop": "eos_token", "tool_calls": "eos_token", "length": "length", "stop_sequence": "stop_sequence"}
_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded", 503: "overloaded"}
_FAULT_MESSAGES = {429: "Model is overloaded", 503: "Model is overloaded", 500: "Request failed during generation"}


@dataclass(slots=True)
class GenerateCtx:
    conv: Conversation
    inputs: str
    details: bool
    full_text: bool
    seed: int | None


def tgi_error(err: ApiError) -> web.Response:
    # TGI reports request validation problems as 422, not 400.
    status = 422 if err.status == 400 else err.status
    kind = _ERROR_TYPES.get(status, "generation" if status >= 500 else "validation")
    return json_response({"error": err.message, "error_type": kind}, status, error_headers(err))


def _fault_message(status: int) -> str:
    return _FAULT_MESSAGES.get(status, f"Injected mock fault (HTTP {status}).")


def _no_auth(request: web.Request) -> None:
    """TGI itself has no authentication; a gateway in front may add a bearer token."""


def _model_of(request: web.Request, body: Any) -> str:
    return request.match_info.get("model", DEFAULT_MODEL)


# The last user turn of a prompt rendered with a common chat template (ChatML, Llama 3,
# Mistral, Zephyr), so TGI replies echo what the user said, like the other formats do.
_USER_TURNS = (
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
    re.compile(r"\[INST\] (.*?) \[/INST\]", re.S),
    re.compile(r"<\|user\|>\n(.*?)</s>", re.S),
)


def last_user_turn(prompt: str) -> str:
    for pattern in _USER_TURNS:
        turns = pattern.findall(prompt)
        if turns:
            return turns[-1]
    return prompt


def _invalid(message: str) -> ApiError:
    return ApiError(422, f"Input validation error: {message}")


def _validate(request: web.Request, body: Any) -> GenerateCtx:
    if not isinstance(body, dict) or "inputs" not in body:
        raise ApiError(422, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
    inputs = body["inputs"]
    if not isinstance(inputs, str):
        raise ApiError(422, "Failed to deserialize the JSON body into the target type: inputs: invalid type, expected a string")
    if not inputs:
        raise _invalid("`inputs` cannot be empty")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(422, "Failed to deserialize the JSON body into the target type: parameters: invalid type, expected struct GenerateParameters")
    conv = Conversation(last_user_text=last_user_turn(inputs), input_chars=len(inputs))
    _check_parameters(params, conv)
    return GenerateCtx(conv, inputs, bool(params.get("details")), bool(params.get("return_full_text")), params.get("seed"))


def _check_parameters(params: dict, conv: Conversation) -> None:
    for key in ("temperature", "repetition_penalty"):
        value = params.get(key)
        if value is not None and (not is_number(value) or value <= 0):
            raise _invalid(f"`{key}` must be strictly positive")
    top_p = params.get("top_p")
    if top_p is not None and (not is_number(top_p) or not 0 < top_p < 1):
        raise _invalid("`top_p` must be > 0.0 and < 1.0")
    top_k = params.get("top_k")
    if top_k is not None and (not is_int(top_k) or top_k <= 0):
        raise _invalid("`top_k` must be strictly positive")
    max_new = params.get("max_new_tokens", 100)
    if max_new is not None and (not is_int(max_new) or max_new <= 0):
        raise _invalid("`max_new_tokens` must be strictly positive")
    conv.max_tokens = max_new
    stop = params.get("stop") or []
    if not isinstance(stop, list) or len(stop) > 4:
        raise _invalid(f"`stop` supports up to 4 stop sequences. Given: {len(stop) if isinstance(stop, list) else 1}")
    conv.stop = stop or None
    grammar = params.get("grammar")
    if isinstance(grammar, dict) and grammar.get("type") in ("json", "json_object"):
        value = grammar.get("value")
        conv.json_schema = value if isinstance(value, dict) else {"type": "object"}


def _tokens(words: list[str]) -> list[dict[str, Any]]:
    return [{"id": 1000 + i, "text": w, "logprob": -0.1, "special": False} for i, w in enumerate(words)]


async def _respond_generate(request: web.Request, ctx: GenerateCtx, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    reply = replies.generate(ctx.conv, model)
    text = ctx.inputs + reply.text if ctx.full_text else reply.text
    body: dict[str, Any] = {"generated_text": text}
    if ctx.details:
        tokens = _tokens(replies.split_words(reply.text))
        body["details"] = {
            "finish_reason": _FINISH[reply.finish],
            "generated_tokens": reply.output_tokens,
            "seed": ctx.seed,
            "prefill": [],
            "tokens": tokens,
        }
    return await send_json(request, body, plan)


async def _respond_stream(request: web.Request, ctx: GenerateCtx, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    reply = replies.generate(ctx.conv, model)
    tokens = _tokens(replies.split_words(reply.text))
    events = []
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        event: dict[str, Any] = {"index": i + 1, "token": token, "generated_text": None, "details": None}
        if last:
            event["generated_text"] = ctx.inputs + reply.text if ctx.full_text else reply.text
            event["details"] = {
                "finish_reason": _FINISH[reply.finish],
                "generated_tokens": reply.output_tokens,
                "seed": ctx.seed,
                "input_length": reply.input_tokens,
            }
        events.append(sse(event))
    return await send_events(request, events, plan)


async def info(request: web.Request) -> web.Response:
    options = request.app[STATE].options
    model = request.match_info.get("model") or (options.models[0] if options.models else DEFAULT_MODEL)
    return json_response(
        {
            "model_id": model,
            "model_sha": None,
            "model_dtype": "torch.float16",
            "model_device_type": "cpu",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": 4095,
            "max_total_tokens": 4096,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "sluice-mock",
            "sha": None,
            "docker_label": None,
        }
    )


GENERATE = Endpoint("tgi", _no_auth, _model_of, _validate, _respond_generate, tgi_error, _fault_message)
STREAM = Endpoint("tgi", _no_auth, _model_of, _validate, _respond_stream, tgi_error, _fault_message)


def add_routes(app: web.Application) -> None:
    async def generate(request: web.Request) -> web.StreamResponse:
        return await serve(request, GENERATE)

    async def generate_stream(request: web.Request) -> web.StreamResponse:
        return await serve(request, STREAM)

    for prefix in ("", "/tgi/{model}"):
        app.router.add_post(f"{prefix}/generate", generate)
        app.router.add_post(f"{prefix}/generate_stream", generate_stream)
        app.router.add_get(f"{prefix}/info", info)
