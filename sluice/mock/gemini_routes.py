"""Gemini routes: ``models/{model}:generateContent``, ``:streamGenerateContent``,
``:embedContent`` and ``:batchEmbedContents`` under ``/v1beta`` (and ``/v1``)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sluice.mock import replies
from sluice.mock.common import STATE, ApiError, Endpoint, error_headers, json_response, send_events, send_json, serve, sse
from sluice.mock.faults import Plan
from sluice.mock.gemini_wire import GenerateCtx, bad, parse_embed_request, parse_generate
from sluice.mock.state import MockState

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}


def gemini_error(err: ApiError) -> web.Response:
    status = _STATUS.get(err.status, "INTERNAL" if err.status >= 500 else "FAILED_PRECONDITION")
    payload = {"error": {"code": err.status, "message": err.message, "status": status}}
    return json_response(payload, err.status, error_headers(err))


def _fault_message(status: int) -> str:
    return _FAULT_MESSAGES.get(status, f"Injected mock fault (HTTP {status}).")


def gemini_auth(request: web.Request) -> None:
    if not request.headers.get("x-goog-api-key") and not request.query.get("key"):
        raise ApiError(403, _NO_KEY)


def _model_of(request: web.Request, body: Any) -> str:
    return request.match_info["target"].rpartition(":")[0]


def _check_model(request: web.Request) -> None:
    options = request.app[STATE].options
    model = _model_of(request, None)
    if options.require_known_model and model not in options.models:
        raise ApiError(404, f"models/{model} is not found for API version v1beta, or is not supported for generateContent.")


# --- generateContent -------------------------------------------------------------------------


def _validate_generate(request: web.Request, body: Any) -> GenerateCtx:
    _check_model(request)
    return parse_generate(body)


def _parts(reply: replies.Reply) -> list[dict[str, Any]]:
    if reply.is_tool_call:
        return [{"functionCall": {"name": reply.tool_name, "args": orjson.loads(reply.tool_arguments)}}]
    return [{"text": reply.text}]


def _usage(reply: replies.Reply, candidates: int) -> dict[str, Any]:
    out = reply.output_tokens * candidates
    return {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": reply.input_tokens + out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.input_tokens}],
    }


async def _respond_generate(request: web.Request, ctx: GenerateCtx, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    reply = replies.generate(ctx.conv, model)
    head = {"modelVersion": model, "responseId": f"mock{state.next_id()}"}
    method = request.match_info["target"].rpartition(":")[2]
    if method == "streamGenerateContent":
        chunks = _stream_chunks(head, reply, ctx.candidates)
        if request.query.get("alt") == "sse":
            return await send_events(request, [sse(c) for c in chunks], plan)
        return await send_json(request, chunks, plan)  # without alt=sse the API streams one JSON array
    candidates = [
        {"content": {"parts": _parts(reply), "role": "model"}, "finishReason": _FINISH[reply.finish], "index": i}
        for i in range(ctx.candidates)
    ]
    return await send_json(request, {"candidates": candidates, "usageMetadata": _usage(reply, ctx.candidates), **head}, plan)


def _stream_chunks(head: dict, reply: replies.Reply, count: int) -> list[dict]:
    # Every chunk carries usageMetadata (prompt so far), the last one the full counts, as Gemini does.
    partial = {"promptTokenCount": reply.input_tokens, "totalTokenCount": reply.input_tokens}
    chunks: list[dict] = []
    for i in range(count):
        pieces: list[list[dict]] = [[p] for p in _parts(reply)] if reply.is_tool_call else [
            [{"text": w}] for w in replies.split_words(reply.text)
        ]
        for parts in pieces:
            candidate = {"content": {"parts": parts, "role": "model"}, "index": i}
            chunks.append({"candidates": [candidate], "usageMetadata": partial, **head})
        chunks[-1]["candidates"][0]["finishReason"] = _FINISH[reply.finish]
    chunks[-1]["usageMetadata"] = _usage(reply, count)
    return chunks


# --- embeddings ------------------------------------------------------------------------------


def _validate_embed(request: web.Request, body: Any) -> list[tuple[str, int | None]]:
    _check_model(request)
    return [parse_embed_request(body, "")]


def _validate_batch_embed(request: web.Request, body: Any) -> list[tuple[str, int | None]]:
    _check_model(request)
    if not isinstance(body, dict) or set(body) - {"requests"}:
        extra = next(iter(set(body) - {"requests"})) if isinstance(body, dict) else "body"
        raise bad(f'Invalid JSON payload received. Unknown name "{extra}": Cannot find field.')
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise bad("* BatchEmbedContentsRequest.requests: requests is not specified")
    expected = "models/" + _model_of(request, body)
    out = []
    for i, item in enumerate(requests):
        where = f"requests[{i}]"
        if isinstance(item, dict) and item.get("model") != expected:
            raise bad(f"* BatchEmbedContentsRequest.{where}.model: model must be '{expected}', the model in the URL.")
        out.append(parse_embed_request(item, where))
    return out


async def _respond_embed(request: web.Request, ctx: list, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    dims_default = state.options.embedding_dims
    vectors = [{"values": replies.embedding(text, dims or dims_default)} for text, dims in ctx]
    if request.match_info["target"].endswith(":embedContent"):
        return await send_json(request, {"embedding": vectors[0]}, plan)
    return await send_json(request, {"embeddings": vectors}, plan)


def _not_found(request: web.Request, body: Any) -> Any:
    raise ApiError(404, f"Method not found: {request.match_info['target']}")


GENERATE = Endpoint("gemini", gemini_auth, _model_of, _validate_generate, _respond_generate, gemini_error, _fault_message)
EMBED = Endpoint("gemini", gemini_auth, _model_of, _validate_embed, _respond_embed, gemini_error, _fault_message)
BATCH_EMBED = Endpoint("gemini", gemini_auth, _model_of, _validate_batch_embed, _respond_embed, gemini_error, _fault_message)
UNKNOWN = Endpoint("gemini", gemini_auth, _model_of, _not_found, _respond_embed, gemini_error, _fault_message)
_METHODS = {
    "generateContent": GENERATE,
    "streamGenerateContent": GENERATE,
    "embedContent": EMBED,
    "batchEmbedContents": BATCH_EMBED,
}


async def model_method(request: web.Request) -> web.StreamResponse:
    method = request.match_info["target"].rpartition(":")[2]
    return await serve(request, _METHODS.get(method, UNKNOWN))


async def list_models(request: web.Request) -> web.Response:
    try:
        gemini_auth(request)
    except ApiError as err:
        return gemini_error(err)
    models = [
        {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent", "embedContent"]}
        for m in request.app[STATE].options.models
    ]
    return json_response({"models": models})


def add_routes(app: web.Application) -> None:
    for version in ("v1beta", "v1"):
        app.router.add_post(f"/{version}/models/{{target}}", model_method)
    app.router.add_get("/v1beta/models", list_models)
