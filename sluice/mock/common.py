"""The request flow every emulated endpoint shares, and the JSON/SSE writers.

Flow: read body → record → authenticate → validate (dialect rules) → fault plan →
latency → injected failure or reply (JSON, or SSE with chunk delay / stall / cut).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from sluice.mock.faults import DirectiveError, Plan
from sluice.mock.state import MockState

STATE: web.AppKey[MockState] = web.AppKey("sluice_mock_state", MockState)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class ApiError(Exception):
    """An error to render in the endpoint's dialect."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One emulated route: how to authenticate, validate, fail and answer in its dialect."""

    fmt: str  # "openai" | "azure" | "anthropic" | "gemini" | "tgi"
    auth: Callable[[web.Request], None]  # raises ApiError
    model_of: Callable[[web.Request, Any], str]
    validate: Callable[[web.Request, Any], Any]  # returns a context for respond; raises ApiError
    respond: Callable[[web.Request, Any, str, Plan, MockState], Awaitable[web.StreamResponse]]
    error: Callable[[ApiError], web.Response]
    fault_message: Callable[[int], str] = lambda status: f"Injected mock fault (HTTP {status})."


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json", headers=headers)


def error_headers(err: ApiError) -> dict[str, str] | None:
    if err.retry_after is None:
        return None
    seconds = err.retry_after
    text = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    return {"Retry-After": text, "retry-after-ms": str(int(seconds * 1000))}


LOG_ENTRY: web.RequestKey[Any] = web.RequestKey("sluice_mock_log_entry", object)


async def serve(request: web.Request, ep: Endpoint) -> web.StreamResponse:
    state = request.app[STATE]
    raw = await request.read()
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = raw.decode("utf-8", "replace")
        state.record(request, ep.fmt, None, body)
        return ep.error(ApiError(400, "We could not parse the JSON body of your request."))
    model = ep.model_of(request, body)
    request[LOG_ENTRY] = state.record(request, ep.fmt, model, body)
    try:
        ep.auth(request)
        ctx = ep.validate(request, body)
        plan = state.plan(model, ep.fmt)
    except ApiError as err:
        return ep.error(err)
    except DirectiveError as err:
        return ep.error(ApiError(400, str(err), param="model"))
    except (TypeError, AttributeError, KeyError, ValueError) as err:
        # A shape the validators did not anticipate is still the client's malformed request.
        return ep.error(ApiError(400, f"Malformed request: {err}"))
    if plan.latency_ms:
        await asyncio.sleep(plan.latency_ms / 1000)
    if plan.fail_status is not None:
        status = plan.fail_status
        return ep.error(ApiError(status, ep.fault_message(status), retry_after=plan.retry_after))
    return await ep.respond(request, ctx, model, plan, state)


async def send_json(request: web.Request, obj: Any, plan: Plan, headers: dict[str, str] | None = None) -> web.StreamResponse:
    if plan.stall_ms:
        await asyncio.sleep(plan.stall_ms / 1000)
    if plan.cut is None:
        return json_response(obj, headers=headers)
    # A cut non-streaming answer: announce the full length, send half, hang up.
    data = orjson.dumps(obj)
    resp = web.StreamResponse(headers={"Content-Type": "application/json", **(headers or {})})
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    return _hang_up(request, resp)


async def send_events(
    request: web.Request, events: list[bytes], plan: Plan, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Write SSE events; without delays or faults they go out in a single write."""
    resp = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    entry = request.get(LOG_ENTRY)
    try:
        await resp.prepare(request)
    except ConnectionError:  # the client left while we were "thinking"
        _outcome(entry, "client_gone", 0)
        return resp
    if not plan.chunk_delay_ms and not plan.stall_ms and plan.cut is None:
        await resp.write(b"".join(events))
        await resp.write_eof()
        return resp
    delay = plan.chunk_delay_ms / 1000
    for i, event in enumerate(events):
        if plan.cut is not None and i >= plan.cut:
            return _hang_up(request, resp)
        if i == 1 and plan.stall_ms:
            await asyncio.sleep(plan.stall_ms / 1000)
        elif i and delay:
            await asyncio.sleep(delay)
        transport = request.transport
        if transport is None or transport.is_closing():
            # The client hung up mid-stream: note it, so callers can check it cancelled.
            _outcome(entry, "client_gone", i)
            return resp
        try:
            await resp.write(event)
        except ConnectionError:
            _outcome(entry, "client_gone", i)
            return resp
    if plan.cut is not None:
        return _hang_up(request, resp)
    await resp.write_eof()
    _outcome(entry, "completed", len(events))
    return resp


def _outcome(entry: dict | None, outcome: str, chunks_sent: int) -> None:
    if entry is not None:
        entry["outcome"] = outcome
        entry["chunks_sent"] = chunks_sent


def _hang_up(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Close the connection mid-body so the client sees a truncated response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return resp


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def require_dict(body: Any, error: Callable[[str], ApiError]) -> dict:
    if not isinstance(body, dict):
        raise error("The request body must be a JSON object.")
    return body


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
