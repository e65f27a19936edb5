"""Small HTTP helpers shared by the dialect routes: JSON in, JSON or SSE out, request ids."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from random import getrandbits
import time
from functools import partial
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sluice.api.direct_write import uvicorn_cycle
from sluice.schema import ChatChunk, GatewayError

log = logging.getLogger("sluice.api")

REQUEST_ID_KEY = "sluice.request_id"


def new_request_id() -> str:
    """32 hex characters: the time in milliseconds, then 80 random bits.

    Time first, so the ledger's request-id index grows at its end: random ids scattered each
    batch's inserts over the whole index, and the database wrote one page per row (the cost of
    a ledger row on SQLite went from ~9 µs to ~25 µs by 120,000 rows and kept climbing)."""
    return f"{time.time_ns() // 1_000_000:012x}{getrandbits(80):020x}"


def request_id(scope: Scope) -> str:
    return scope.get(REQUEST_ID_KEY) or new_request_id()


async def read_json(request: Request, max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise GatewayError("payload_too_large", f"Request body is larger than {max_bytes} bytes.")
    body = await request.body()
    if len(body) > max_bytes:
        raise GatewayError("payload_too_large", f"Request body is larger than {max_bytes} bytes.")
    if not body:
        raise GatewayError("invalid_request", "The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError("invalid_request", "The request body is not valid JSON.") from None


def caller_context(request: Request) -> dict[str, Any]:
    """Attribution a client may add to a call: its end user and tags (x-sluice-end-user, x-sluice-tags)."""
    headers = request.headers
    tags = headers.get("x-sluice-tags")
    return {
        "headers": headers,
        "end_user": headers.get("x-sluice-end-user") or None,
        "tags": tuple(t.strip() for t in tags.split(",") if t.strip()) if tags else (),
    }


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


_latin1 = partial(bytes.decode, encoding="latin-1")


class ModelRequest:
    """What the model routes read of a request, straight from the ASGI scope: its headers as one
    dict (ASGI names are lower-case; the first of a repeated header wins, as with Starlette's
    ``Headers.get``) and its body. Cheaper than Starlette's ``Request`` on the hot path."""

    __slots__ = ("scope", "headers", "_receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        raw = scope["headers"]
        if raw:
            # in C loops: the last of equal keys stays in a dict, so the pairs go in reversed
            names, values = zip(*reversed(raw))
            self.headers: dict[str, str] = dict(zip(map(_latin1, names), map(_latin1, values)))
        else:
            self.headers = {}

    async def body(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Headers = dict[str, str] | list[tuple[bytes, bytes]]  # names and values, or raw pairs already encoded


def _raw_headers(headers: Headers | None) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    if isinstance(headers, list):
        return headers
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class JSONResponse(Response):
    """A JSON body (orjson) with its headers built directly: Starlette's generic header
    handling and call path are several µs per response on the hot path."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: Headers | None = None,
                 encoded: bool = False) -> None:
        """``encoded``: ``content`` is JSON bytes already (a relayed upstream answer)."""
        self.status_code = status_code
        self.background = None
        self.body = body = content if encoded else orjson.dumps(content)
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json"),
                            *_raw_headers(headers)]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


class SSEResponse(Response):
    """A chat's chunk batches sent as a dialect's SSE, one write per batch; closing it closes the
    chunk stream (and so the upstream).

    ``encode`` writes a chunk, ``close`` the stream's normal ending, ``error`` the dialect's error
    event. The encoding runs here rather than in a generator of its own: one layer fewer for every
    batch. ``ended`` says when the encoded bytes already close the client's stream (a relayed
    ``[DONE]``): that batch then goes out with the end of the body, one write instead of two.
    A failure mid-way ends the stream with the dialect's error event and without its normal
    ending, so clients know it is incomplete."""

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncIterator[list[ChatChunk]], encode: Callable[[ChatChunk], bytes],
                 close: Callable[[], bytes], error: Callable[[GatewayError], bytes], request_id: str,
                 ended: Callable[[], bool] | None = None, headers: Headers | None = None) -> None:
        self.stream: AsyncIterator[list[ChatChunk]] | None = stream
        self._encode, self._close, self._error, self._ended = encode, close, error, ended
        self.request_id = request_id
        self.status_code = 200
        self.background = None
        self.raw_headers = [*_SSE_HEADERS, *_raw_headers(headers)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._produce(send)
        except OSError:
            pass  # the client's socket closed under a write: the same as a disconnect
        finally:
            if self.stream is not None:  # left before the end (a disconnect cancels _produce)
                await self._close_stream()

    async def _produce(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        encode, ended, next_batch = self._encode, self._ended, self.stream.__anext__  # type: ignore[union-attr]
        tail = b""  # the stream's last words: they travel with the end of the body
        while True:
            try:
                batch = await next_batch()
                data = encode(batch[0]) if len(batch) == 1 else b"".join([encode(c) for c in batch])
            except StopAsyncIteration:
                await self._close_stream()
                tail += self._close()
                break
            except GatewayError as err:
                log.warning("stream failed mid-way: %s", err.message, extra={"request_id": self.request_id})
                await self._close_stream()
                tail += self._error(err)
                break
            except Exception:  # noqa: BLE001 - a client never sees a stack trace
                log.exception("stream failed mid-way", extra={"request_id": self.request_id})
                await self._close_stream()
                tail += self._error(GatewayError("server_error", "Internal gateway error."))
                break
            if not data:
                continue
            if ended is not None and ended():
                tail += data
            else:
                if tail:  # more after words announced as the last: keep the order
                    data, tail = tail + data, b""
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        try:
            await stream.aclose()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - closing must not mask the response outcome
            log.debug("closing a stream failed", exc_info=True)


_SSE_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"),
                (b"content-type", b"text/event-stream; charset=utf-8"))


class Watched:
    """Runs a whole answer — the upstream call included — while watching for the client to leave.

    The request body must already be read (the watcher consumes ``receive``). When the client
    disconnects, the answering task is cancelled: a pending upstream call or stream is closed
    at once, so the provider stops generating, and the gateway records the call as abandoned.
    """

    __slots__ = ("answer",)

    def __init__(self, answer: Callable[[], Awaitable[Response]]) -> None:
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        watch = _ConnectionWatch.start(receive, task) or _ReceiveWatch(receive, task)
        try:
            response = await self.answer()
            await response(scope, receive, send)
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            task.uncancel()
        finally:
            watch.stop()


class _ReceiveWatch:
    """Any ASGI server: a task waits on ``receive()`` for ``http.disconnect``."""

    __slots__ = ("disconnected", "_task", "_watcher")

    def __init__(self, receive: Receive, task: asyncio.Task) -> None:
        self.disconnected = False
        self._task = task
        self._watcher = asyncio.ensure_future(_wait_disconnect(receive))
        self._watcher.add_done_callback(self._done)

    def _done(self, watcher: asyncio.Future) -> None:
        if not watcher.cancelled() and watcher.exception() is None:
            self.disconnected = True
            self._task.cancel()

    def stop(self) -> None:
        self._watcher.remove_done_callback(self._done)
        self._watcher.cancel()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _ConnectionWatch:
    """uvicorn: no task per call. uvicorn's request cycle (``receive.__self__``) sets its
    ``message_event`` when the connection is lost (and when the response completes), with its
    ``disconnected`` flag telling which; a future waiting on that event is all a watch needs.
    A task and the extra loop turns it takes to start and to cancel cost ~10 µs per call.
    Any other server, or an asyncio whose Event keeps its waiters otherwise, gets ``_ReceiveWatch``."""

    __slots__ = ("disconnected", "_task", "_cycle", "_event", "_waiter")

    @classmethod
    def start(cls, receive: Receive, task: asyncio.Task) -> "_ConnectionWatch | None":
        cycle = uvicorn_cycle(receive)
        event = getattr(cycle, "message_event", None)
        if type(event) is not asyncio.Event or type(getattr(event, "_waiters", None)) is not collections.deque:
            return None
        return cls(cycle, event, task)

    def __init__(self, cycle: Any, event: asyncio.Event, task: asyncio.Task) -> None:
        self.disconnected = False
        self._task = task
        self._cycle = cycle
        self._event = event
        self._waiter: asyncio.Future | None = None
        self._arm()

    def _arm(self) -> None:
        if self._cycle.disconnected:  # lost before the watch began
            self._fire()
            return
        waiter = self._task.get_loop().create_future()
        waiter.add_done_callback(self._woken)
        self._event._waiters.append(waiter)  # what Event.wait() does, without a coroutine
        self._waiter = waiter

    def _woken(self, waiter: asyncio.Future) -> None:
        if waiter is not self._waiter or waiter.cancelled():
            return
        self._remove(waiter)
        if self._cycle.disconnected:
            self._fire()
        elif not self._cycle.response_complete:
            # Set for another reason: consume it, as receive() would, and keep watching.
            self._event.clear()
            self._arm()

    def _fire(self) -> None:
        self._waiter = None
        self.disconnected = True
        self._task.cancel()

    def _remove(self, waiter: asyncio.Future) -> None:
        self._waiter = None
        with contextlib.suppress(ValueError):  # already gone from the event's list
            self._event._waiters.remove(waiter)

    def stop(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._remove(waiter)
            waiter.cancel()


def call_headers(call) -> list[tuple[bytes, bytes]]:
    """Everything the gateway reports about a call, encoded: its route, the stages' reports, and
    its limits (x-ratelimit-*)."""
    headers = route_headers(call.route)
    if call.response_headers:
        headers += _raw_headers(call.response_headers)
    if call.rate_headers:
        headers += call.rate_headers
    return headers


def route_headers(route) -> list[tuple[bytes, bytes]]:
    """Transparency headers: which deployment answered and after how many attempts."""
    headers: list[tuple[bytes, bytes]] = []
    if route.deployment:
        headers.append((b"x-sluice-deployment", route.deployment.encode("latin-1")))
    if route.attempts:
        headers.append((b"x-sluice-attempts", b"%d" % route.attempts))
    if route.rule:
        headers.append((b"x-sluice-rule", route.rule.encode("latin-1")))
    if route.hedged:
        headers.append((b"x-sluice-hedged", b"true"))
    if route.semantic:
        headers.append((b"x-sluice-semantic-route", route.semantic.encode("latin-1")))
    if route.fallback:
        headers.append((b"x-sluice-fallback", route.fallback.encode("latin-1")))  # another alias answered
    elif route.attempts > 1:
        headers.append((b"x-sluice-fallback", (route.deployment or "").encode("latin-1")))  # another deployment
    return headers


def error_response(err: GatewayError, render: Callable[[GatewayError], tuple[int, Any]],
                   extra_headers: Headers | None = None) -> JSONResponse:
    status, body = render(err)
    headers = [pair for pair in _raw_headers(extra_headers) if pair[0] != b"retry-after"]
    if err.retry_after is not None:
        headers.append((b"retry-after", b"%d" % max(0, int(err.retry_after + 0.999))))
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error(rid: str, render: Callable[[GatewayError], tuple[int, Any]]) -> JSONResponse:
    log.exception("unhandled error", extra={"request_id": rid})
    return error_response(GatewayError("server_error", "Internal gateway error."), render)
