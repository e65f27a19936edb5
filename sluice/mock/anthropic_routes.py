"""Anthropic Messages route: JSON and the exact SSE event sequence."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sluice.mock import replies
from sluice.mock.anthropic_wire import MessagesCtx, parse_messages_request
from sluice.mock.common import STATE, ApiError, Endpoint, error_headers, json_response, send_events, send_json, serve, sse
from sluice.mock.faults import Plan
from sluice.mock.state import MockState

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_FAULT_MESSAGES = {
    429: "Number of requests has exceeded your rate limit. Please try again later.",
    500: "Internal server error",
    503: "Overloaded",
    529: "Overloaded",
}


def anthropic_error(err: ApiError) -> web.Response:
    kind = _ERROR_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    payload = {"type": "error", "error": {"type": kind, "message": err.message}, "request_id": "req_mock"}
    return json_response(payload, err.status, error_headers(err))


def _fault_message(status: int) -> str:
    return _FAULT_MESSAGES.get(status, f"Injected mock fault (HTTP {status}).")


def anthropic_auth(request: web.Request) -> None:
    # Current SDKs may send the API key as a bearer token instead of x-api-key.
    bearer = request.headers.get("Authorization", "")
    if not request.headers.get("x-api-key", "").strip() and not (bearer.startswith("Bearer ") and bearer[7:].strip()):
        raise ApiError(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        raise ApiError(400, "anthropic-version: header is required")


def _model_of(request: web.Request, body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def _validate(request: web.Request, body: Any) -> MessagesCtx:
    ctx = parse_messages_request(body)
    options = request.app[STATE].options
    if options.require_known_model and body["model"] not in options.models:
        raise ApiError(404, f"model: {body['model']}")
    return ctx


def _content(reply: replies.Reply, tool_id: str) -> list[dict[str, Any]]:
    if reply.is_tool_call:
        return [{"type": "tool_use", "id": tool_id, "name": reply.tool_name, "input": orjson.loads(reply.tool_arguments)}]
    return [{"type": "text", "text": reply.text}]


def _usage(reply: replies.Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


async def _respond(request: web.Request, ctx: MessagesCtx, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    reply = replies.generate(ctx.conv, model)
    rid = state.next_id()
    headers = {"request-id": f"req_mock{rid}"}
    message = {
        "id": f"msg_mock{rid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(reply, f"toolu_mock{rid}"),
        "stop_reason": _STOP[reply.finish],
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply),
    }
    if ctx.stream:
        return await send_events(request, _events(message, reply, f"toolu_mock{rid}"), plan, headers)
    return await send_json(request, message, plan, headers)


def _events(message: dict, reply: replies.Reply, tool_id: str) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**_usage(reply), "output_tokens": 1}}
    events = [sse({"type": "message_start", "message": start}, "message_start")]
    if reply.is_tool_call:
        block = {"type": "tool_use", "id": tool_id, "name": reply.tool_name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in replies.split_pieces(reply.tool_arguments)]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in replies.split_words(reply.text) if p]
    events.append(sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start"))
    events.append(sse({"type": "ping"}, "ping"))
    events.extend(sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta") for d in deltas)
    events.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(sse({"type": "message_delta", "delta": delta, "usage": {"output_tokens": reply.output_tokens}}, "message_delta"))
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


MESSAGES = Endpoint("anthropic", anthropic_auth, _model_of, _validate, _respond, anthropic_error, _fault_message)


def add_routes(app: web.Application) -> None:
    async def messages(request: web.Request) -> web.StreamResponse:
        return await serve(request, MESSAGES)

    app.router.add_post("/v1/messages", messages)
