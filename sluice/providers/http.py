"""One pooled aiohttp client per provider, and the SSE reader every streaming adapter uses."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Mapping

import aiohttp
import orjson

from sluice.providers import direct
from sluice.providers.base import SSEEvent, WireRequest
from sluice.schema import GatewayError


class Timeouts:
    """Per-deployment limits, in seconds. ``idle`` is the longest gap between stream chunks."""

    __slots__ = ("connect", "total", "first_token", "idle", "_whole", "_streamed")

    def __init__(
        self,
        connect: float = 10.0,
        total: float = 600.0,
        first_token: float | None = None,
        idle: float | None = 120.0,
    ) -> None:
        self.connect = connect
        self.total = total
        self.first_token = first_token
        self.idle = idle
        self._whole: aiohttp.ClientTimeout | None = None
        self._streamed: aiohttp.ClientTimeout | None = None

    # aiohttp's timeout objects, built once per deployment rather than per call.

    def whole(self) -> aiohttp.ClientTimeout:
        if self._whole is None:
            self._whole = aiohttp.ClientTimeout(total=self.total, sock_connect=self.connect)
        return self._whole

    def streamed(self) -> aiohttp.ClientTimeout:
        if self._streamed is None:
            self._streamed = aiohttp.ClientTimeout(total=self.total, sock_connect=self.connect, sock_read=self.idle)
        return self._streamed


class UpstreamResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


_READ_BUFSIZE = 2**20  # long SSE lines (large tool arguments) must not overflow
_USER_AGENT = "sluice"


class HttpPool:
    """Owns one ``aiohttp.ClientSession`` per provider name, created lazily in the running loop.

    Requests go out on the session's connector through ``direct`` (5% of a call's Python work
    saved) where this aiohttp release supports it, else through ``session.request``;
    ``direct_send=False`` forces the latter."""

    def __init__(self, limit_per_host: int = 0, direct_send: bool = direct.SUPPORTED) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._limit_per_host = limit_per_host
        self.direct_send = direct_send

    def session(self, provider: str) -> aiohttp.ClientSession:
        s = self._sessions.get(provider)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._limit_per_host, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            s = aiohttp.ClientSession(
                connector=connector,
                # One session serves every caller: a cookie one upstream answer set (a CDN's
                # __cf_bm, a login proxy's session) must not ride along on anyone else's call.
                cookie_jar=aiohttp.DummyCookieJar(),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
                headers={"user-agent": _USER_AGENT},  # fixed: cheaper than skip_auto_headers per request
                read_bufsize=_READ_BUFSIZE,
            )
            self._sessions[provider] = s
        return s

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()

    def _request(self, provider: str, wire: WireRequest, timeout: aiohttp.ClientTimeout,  # noqa: ANN202
                 ready: Awaitable[None] | None):
        session = self.session(provider)
        if self.direct_send:
            return direct.request(session, wire.method, wire.url, _body(wire), _headers(wire), timeout, _READ_BUFSIZE,
                                  ready)
        if ready is not None:
            return _when_ready(ready, session, wire, timeout)
        return session.request(wire.method, wire.url, data=_body(wire), headers=_headers(wire), timeout=timeout)

    async def send(self, provider: str, wire: WireRequest, timeouts: Timeouts,
                   ready: Awaitable[None] | None = None) -> UpstreamResponse:
        """Send and read the whole body (non-streaming calls and error bodies). ``ready``: awaited
        just before the request leaves (the call's admission, sent ahead: see
        ``sluice.policies.ahead``); what it raises is raised as it is."""
        try:
            resp = await self._request(provider, wire, timeouts.whole(), ready)
            async with resp:  # releases the connection, as leaving session.request's block does
                body = await resp.read()
            return UpstreamResponse(resp.status, resp.headers, body)
        except asyncio.TimeoutError as exc:
            raise GatewayError("timeout", f"upstream '{provider}' timed out", status=504, provider=provider) from exc
        except aiohttp.ClientError as exc:
            raise _connection_error(provider, exc) from exc

    async def open_stream(
        self, provider: str, wire: WireRequest, timeouts: Timeouts, ready: Awaitable[None] | None = None
    ) -> tuple[aiohttp.ClientResponse, UpstreamResponse | None]:
        """Start a streaming request. Returns the open response, or the full error response.
        ``ready``: as for ``send``."""
        # sock_read bounds every wait for the next bytes: the idle gap between chunks.
        timeout = timeouts.streamed()
        try:
            request = self._request(provider, wire, timeout, ready)
            if timeouts.first_token:
                resp = await asyncio.wait_for(request, timeouts.first_token)
            else:
                resp = await request
        except asyncio.TimeoutError as exc:
            raise GatewayError("timeout", f"upstream '{provider}' timed out", status=504, provider=provider) from exc
        except aiohttp.ClientError as exc:
            raise _connection_error(provider, exc) from exc
        if resp.status >= 400:
            try:
                body = await resp.read()
            finally:
                resp.release()
            return resp, UpstreamResponse(resp.status, resp.headers, body)
        return resp, None


async def _when_ready(ready: Awaitable[None], session: aiohttp.ClientSession, wire: WireRequest,
                      timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    await ready
    return await session.request(wire.method, wire.url, data=_body(wire), headers=_headers(wire), timeout=timeout)


def _body(wire: WireRequest) -> bytes | None:
    return None if wire.body is None else orjson.dumps(wire.body)


def _headers(wire: WireRequest) -> dict[str, str]:
    if wire.body is None:
        return {"user-agent": _USER_AGENT, **wire.headers}
    return {"user-agent": _USER_AGENT, "content-type": "application/json", **wire.headers}


def _connection_error(provider: str, exc: Exception) -> GatewayError:
    # The exception text can carry the URL; keep only the class name so no secret in a
    # query string (Gemini's ?key=) can leak into a client-visible message.
    return GatewayError(
        "upstream_unavailable",
        f"could not reach upstream '{provider}' ({type(exc).__name__})",
        status=502,
        provider=provider,
    )


async def read_sse(resp: aiohttp.ClientResponse, provider: str) -> AsyncIterator[list[SSEEvent]]:
    """Parse a text/event-stream body into events, yielded as one batch per network read.

    One await per network read rather than per line, and batches that travel together down
    to one write to the client, keep a stream's cost close to a plain byte copy. The idle gap
    between chunks is enforced by the session's ``sock_read`` timeout (see ``open_stream``).
    Also accepts newline-delimited JSON (no ``data:`` prefix), which some OpenAI-compatible
    servers send on error paths.
    """
    buf = b""
    try:
        async for data in resp.content.iter_any():
            buf = buf + data if buf else data
            if b"\r" in buf:
                buf = buf.replace(b"\r\n", b"\n")
            start = 0
            batch: list[SSEEvent] = []
            while True:
                end = buf.find(b"\n\n", start)
                if end < 0:
                    break
                batch.extend(parse_events(buf[start:end]))
                start = end + 2
            buf = buf[start:]
            if batch:
                yield batch
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        raise stream_broke(provider, exc) from exc
    if buf.strip():
        tail = parse_events(buf.rstrip(b"\n"))
        if tail:
            yield tail


def stream_broke(provider: str, exc: BaseException) -> GatewayError:
    """A stream that stalled (the idle timeout) or broke after it started."""
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayError("timeout", f"upstream '{provider}' stalled mid-stream", status=504, provider=provider)
    return GatewayError("upstream_unavailable", f"upstream '{provider}' stream broke ({type(exc).__name__})",
                        status=502, provider=provider)


def parse_events(block: bytes) -> list[SSEEvent]:
    event: str | None = None
    data_lines: list[str] = []
    json_lines: list[SSEEvent] = []
    for raw in block.split(b"\n"):
        if raw.startswith(b"data:"):
            data_lines.append(raw[6:].decode() if raw.startswith(b"data: ") else raw[5:].decode())
        elif raw.startswith(b"event:"):
            event = raw[6:].strip().decode()
        elif raw.startswith(b"{"):
            json_lines.append(SSEEvent(data=raw.decode()))  # newline-delimited JSON: one event a line
        # ":" comments (keep-alives), "id:" and "retry:" carry nothing a decoder needs.
    if data_lines:
        return [SSEEvent(data="\n".join(data_lines), event=event), *json_lines]
    return json_lines
