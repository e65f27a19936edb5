"""OpenAI-compatible routes: /v1/chat/completions, /v1/embeddings, /v1/models."""

from __future__ import annotations

import time
from random import getrandbits
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from sluice.api import openai_dialect as dialect
from sluice.api.http import (
    JSONResponse,
    SSEResponse,
    Watched,
    bearer_token,
    caller_context,
    error_response,
    internal_error,
    read_json,
    request_id,
    call_headers,
)
from sluice.gateway import Call, Gateway
from sluice.schema import ChatChunk, GatewayError


class OpenAIRoutes:
    def __init__(self, gateway: Gateway, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body = max_body_bytes

    def _call(self, request: Request) -> Call:
        return Call(request_id=request_id(request.scope), dialect="openai", credential=bearer_token(request),
                    **caller_context(request))

    async def chat_completions(self, request: Request) -> Response | Watched:
        call = self._call(request)
        try:
            req = dialect.parse_chat_request(await read_json(request, self.max_body))
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        return Watched(lambda: self._chat(call, req))

    async def _chat(self, call: Call, req) -> Response:
        try:
            if req.stream:
                stream = await self.gateway.stream(call, req)
                return _sse(stream, req.model, req.include_usage, call)
            resp = await self.gateway.chat(call, req)
            if resp.raw is not None:
                body = dialect.relayed_answer_body(resp, req.model)
                return JSONResponse(body, headers=call_headers(call), encoded=True)
            return JSONResponse(dialect.render_chat_response(resp, req.model), headers=call_headers(call))
        except GatewayError as err:
            return error_response(err, dialect.render_error, call_headers(call))
        except Exception:  # noqa: BLE001 - a client never sees a stack trace
            return internal_error(call.request_id, dialect.render_error)

    async def embeddings(self, request: Request) -> Response | Watched:
        call = self._call(request)
        try:
            req = dialect.parse_embeddings_request(await read_json(request, self.max_body))
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        return Watched(lambda: self._embed(call, req))

    async def _embed(self, call: Call, req) -> Response:
        try:
            resp = await self.gateway.embed(call, req)
            return JSONResponse(dialect.render_embeddings(resp, req.model, req.encoding_format),
                                headers=call_headers(call))
        except GatewayError as err:
            return error_response(err, dialect.render_error, call_headers(call))
        except Exception:  # noqa: BLE001
            return internal_error(call.request_id, dialect.render_error)

    async def list_models(self, request: Request) -> Response:
        call = self._call(request)
        try:
            groups = await self.gateway.list_models(call)
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        return JSONResponse({"object": "list", "data": [_model(g) for g in groups]})

    async def get_model(self, request: Request) -> Response:
        call = self._call(request)
        try:
            group = await self.gateway.get_model(call, request.path_params["model"])
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        return JSONResponse(_model(group))


_CREATED = int(time.time())


def _model(group) -> dict:
    return {"id": group.alias, "object": "model", "created": _CREATED, "owned_by": group.owned_by}


def _sse(stream: AsyncIterator[list[ChatChunk]], model: str, include_usage: bool, call: Call) -> SSEResponse:
    encoder = dialect.ChunkEncoder(f"chatcmpl-{getrandbits(96):024x}", model, include_usage)
    return SSEResponse(stream, encoder.encode, encoder.close, dialect.stream_error, call.request_id, encoder.ended,
                       headers=call_headers(call))
