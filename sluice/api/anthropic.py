"""Anthropic-compatible routes: /v1/messages (JSON and SSE) and /v1/messages/count_tokens."""

from __future__ import annotations

import math
from random import getrandbits
from typing import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sluice.api import anthropic_dialect as dialect
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


class AnthropicRoutes:
    def __init__(self, gateway: Gateway, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body = max_body_bytes

    def _call(self, request: Request) -> Call:
        credential = request.headers.get("x-api-key") or bearer_token(request)
        return Call(request_id=request_id(request.scope), dialect="anthropic", credential=credential,
                    **caller_context(request))

    async def messages(self, request: Request) -> Response | Watched:
        call = self._call(request)
        try:
            req = dialect.parse_request(await read_json(request, self.max_body))
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        return Watched(lambda: self._messages(call, req))

    async def _messages(self, call: Call, req) -> Response:
        try:
            if req.stream:
                stream = await self.gateway.stream(call, req)
                return _sse(stream, req.model, call)
            resp = await self.gateway.chat(call, req)
            return JSONResponse(dialect.render_response(resp, req.model), headers=call_headers(call))
        except GatewayError as err:
            return error_response(err, dialect.render_error, call_headers(call))
        except Exception:  # noqa: BLE001 - a client never sees a stack trace
            return internal_error(call.request_id, dialect.render_error)

    async def count_tokens(self, request: Request) -> Response:
        """An estimate (about four characters a token), so clients that budget context keep working.

        Exact counts need each provider's tokenizer; the estimate errs on the high side for
        English text, which is the safe side for a context-window check.
        """
        call = self._call(request)
        try:
            body = await read_json(request, self.max_body)
            if isinstance(body, dict) and "max_tokens" not in body:
                body = {**body, "max_tokens": 1}  # count_tokens does not take max_tokens
            req = dialect.parse_request(body)
            await self.gateway.get_model(call, req.model)
        except GatewayError as err:
            return error_response(err, dialect.render_error)
        chars = len(msgspec.json.encode(req.messages)) + len(msgspec.json.encode(req.tools or []))
        return JSONResponse({"input_tokens": max(1, math.ceil(chars / 4))})


def _sse(stream: AsyncIterator[list[ChatChunk]], model: str, call: Call) -> SSEResponse:
    encoder = dialect.StreamEncoder(f"msg_{getrandbits(96):024x}", model)
    return SSEResponse(stream, encoder.encode, encoder.close, encoder.error, call.request_id,
                       headers=call_headers(call))
