"""OpenAI (and Azure OpenAI) routes: chat completions (JSON and SSE), embeddings, moderations, models."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from sluice.mock import moderation, replies
from sluice.mock.common import STATE, ApiError, Endpoint, error_headers, json_response, send_events, send_json, serve, sse
from sluice.mock.faults import Plan
from sluice.mock.openai_wire import ChatCtx, parse_chat, parse_embeddings
from sluice.mock.state import MockState

_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}
_ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error", 429: "requests"}
_FAULT_MESSAGES = {
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_AZURE_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)


# --- errors and auth -------------------------------------------------------------------------


def openai_error(err: ApiError) -> web.Response:
    kind = _ERROR_TYPES.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    code = err.code if err.code is not None or err.status != 429 else "rate_limit_exceeded"
    payload = {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}
    return json_response(payload, err.status, error_headers(err))


def azure_error(err: ApiError) -> web.Response:
    if err.code in ("401", "404"):
        return json_response({"error": {"code": err.code, "message": err.message}}, err.status)
    return openai_error(err)


def _fault_message(status: int) -> str:
    return _FAULT_MESSAGES.get(status, f"Injected mock fault (HTTP {status}).")


def openai_auth(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(401, _NO_KEY)


def azure_auth(request: web.Request) -> None:
    if not request.query.get("api-version"):
        raise ApiError(404, "Resource not found", code="404")
    bearer = request.headers.get("Authorization", "")
    if not request.headers.get("api-key") and not (bearer.startswith("Bearer ") and bearer[7:].strip()):
        raise ApiError(401, _AZURE_DENIED, code="401")


def _body_model(request: web.Request, body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def _deployment(request: web.Request, body: Any) -> str:
    return request.match_info["deployment"]


def _known_model(request: web.Request, model: str) -> None:
    options = request.app[STATE].options
    if options.require_known_model and model not in options.models:
        raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.", param="model", code="model_not_found")


# --- chat ----------------------------------------------------------------------------------


def _validate_chat(request: web.Request, body: Any) -> ChatCtx:
    ctx = parse_chat(body)
    _known_model(request, body["model"])
    return ctx


def _validate_azure_chat(request: web.Request, body: Any) -> ChatCtx:
    if isinstance(body, dict) and "model" not in body:
        body = {**body, "model": request.match_info["deployment"]}
    return parse_chat(body)


def _message(reply: replies.Reply, call_id: str) -> dict[str, Any]:
    if reply.is_tool_call:
        call = {"id": call_id, "type": "function", "function": {"name": reply.tool_name, "arguments": reply.tool_arguments}}
        return {"role": "assistant", "content": None, "refusal": None, "annotations": [], "tool_calls": [call]}
    return {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}


def _usage(reply: replies.Reply, n: int) -> dict[str, Any]:
    out = reply.output_tokens * n
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": out,
        "total_tokens": reply.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


async def _respond_chat(request: web.Request, ctx: ChatCtx, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    reply = replies.generate(ctx.conv, model)
    rid = state.next_id()
    head = {"id": f"chatcmpl-mock{rid}", "created": int(time.time()), "model": model, "system_fingerprint": "fp_mock"}
    headers = {"x-request-id": f"req_mock{rid}"}
    if state.options.edge_cookie:
        headers["set-cookie"] = f"__cf_bm=mock{rid}; path=/; HttpOnly; SameSite=None"
    if ctx.stream:
        return await send_events(request, _chat_events(head, reply, ctx, rid), plan, headers)
    choices = [
        {"index": i, "message": _message(reply, f"call_mock{rid}_{i}"), "logprobs": None, "finish_reason": _FINISH[reply.finish]}
        for i in range(ctx.n)
    ]
    body = {**head, "object": "chat.completion", "choices": choices, "usage": _usage(reply, ctx.n), "service_tier": "default"}
    return await send_json(request, body, plan, headers)


def _chat_events(head: dict, reply: replies.Reply, ctx: ChatCtx, rid: int) -> list[bytes]:
    base = {**head, "object": "chat.completion.chunk"}
    if ctx.include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    events: list[bytes] = []
    for i in range(ctx.n):
        if reply.is_tool_call:
            events.extend(_tool_call_chunks(chunk, i, reply, f"call_mock{rid}_{i}"))
        else:
            events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
            events.extend(chunk(i, {"content": piece}) for piece in replies.split_words(reply.text) if piece)
        events.append(chunk(i, {}, _FINISH[reply.finish]))
    if ctx.include_usage:
        events.append(sse({**base, "choices": [], "usage": _usage(reply, ctx.n)}))
    events.append(b"data: [DONE]\n\n")
    return events


def _tool_call_chunks(chunk: Any, index: int, reply: replies.Reply, call_id: str) -> list[bytes]:
    first = {"index": 0, "id": call_id, "type": "function", "function": {"name": reply.tool_name, "arguments": ""}}
    out = [chunk(index, {"role": "assistant", "content": None, "refusal": None, "tool_calls": [first]})]
    for piece in replies.split_pieces(reply.tool_arguments):
        out.append(chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    return out


# --- embeddings and models ---------------------------------------------------------------------


def _validate_embeddings(request: web.Request, body: Any) -> tuple[list[str], int, str]:
    if isinstance(body, dict) and "model" not in body and "deployment" in request.match_info:
        body = {**body, "model": request.match_info["deployment"]}
    return parse_embeddings(body, request.app[STATE].options.embedding_dims)


async def _respond_embeddings(request: web.Request, ctx: tuple, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    texts, dims, encoding = ctx
    data = []
    for i, text in enumerate(texts):
        vec = replies.embedding(text, dims)
        value: Any = replies.embedding_base64(vec) if encoding == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(replies.count_input_tokens(len(t)) for t in texts)
    body = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return await send_json(request, body, plan)


async def list_models(request: web.Request) -> web.Response:
    try:
        openai_auth(request)
    except ApiError as err:
        return openai_error(err)
    models = request.app[STATE].options.models
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "sluice-mock"} for m in models]
    return json_response({"object": "list", "data": data})


CHAT = Endpoint("openai", openai_auth, _body_model, _validate_chat, _respond_chat, openai_error, _fault_message)
EMBEDDINGS = Endpoint("openai", openai_auth, _body_model, _validate_embeddings, _respond_embeddings, openai_error, _fault_message)
MODERATIONS = Endpoint("openai", openai_auth, moderation.model_of, moderation.validate_moderation,
                       moderation.respond_moderation, openai_error, _fault_message)
AZURE_CHAT = Endpoint("azure", azure_auth, _deployment, _validate_azure_chat, _respond_chat, azure_error, _fault_message)
AZURE_EMBEDDINGS = Endpoint("azure", azure_auth, _deployment, _validate_embeddings, _respond_embeddings, azure_error, _fault_message)


def add_routes(app: web.Application) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        return await serve(request, CHAT)

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await serve(request, EMBEDDINGS)

    async def moderations(request: web.Request) -> web.StreamResponse:
        return await serve(request, MODERATIONS)

    async def azure_chat(request: web.Request) -> web.StreamResponse:
        return await serve(request, AZURE_CHAT)

    async def azure_embeddings(request: web.Request) -> web.StreamResponse:
        return await serve(request, AZURE_EMBEDDINGS)

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/moderations", moderations)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", azure_embeddings)
