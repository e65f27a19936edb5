"""Send one upstream request on a session's pooled connector, without ``ClientSession._request``.

``ClientSession.request`` spends about 600 Python opcodes per call on machinery a gateway's
upstream calls never use: redirect and cookie handling, trace hooks, proxy and netrc lookup,
default-header merging, middleware, upload tracking. Here the same aiohttp pieces the session
uses are driven directly, for about 440 opcodes less per call (5% of a Sluice call): a
``ClientRequest`` built from the wire request, a connection from the session's connector (the
same pool, limits and TLS), the total timeout as the session sets it, and the response parser
with the session's settings.

These are aiohttp's inner entry points, so the direct path is used only with the aiohttp
versions it was tested with (``SUPPORTED``); other versions, URLs that carry credentials and
redirect answers go through ``session.request``, which handles them. An answer that redirects
is released and the request sent again through the session, which follows it (for 307/308 with
the same body), so the caller never sees the difference.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable

import aiohttp
from aiohttp.client_exceptions import ClientOSError, ConnectionTimeoutError
from aiohttp.client_reqrep import ClientRequest
from aiohttp.helpers import TimeoutHandle
from yarl import URL

_VERSION = tuple(int(part) for part in aiohttp.__version__.split(".")[:2])
# The releases whose inner entry points (ClientRequest's keywords, BaseConnector.connect,
# ResponseHandler.set_response_params, ClientRequest.send, ClientResponse.start) were checked.
SUPPORTED = (3, 14) <= _VERSION < (3, 15)

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_SCHEMES = frozenset(("http", "https"))


@functools.lru_cache(maxsize=1024)
def _direct_target(url: str) -> URL | None:
    """The parsed URL when the direct path can send to it (a deployment's URLs repeat: cached)."""
    target = URL(url)
    return target if usable(target) else None


def usable(url: URL) -> bool:
    """Whether the direct path can send to ``url`` (no credentials in it, plain HTTP(S))."""
    return url.scheme in _SCHEMES and url.raw_user is None and bool(url.raw_host)


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
    read_bufsize: int,
    ready: Awaitable[None] | None = None,
) -> aiohttp.ClientResponse:
    """Send the request and read the answer's head; the caller reads (or streams) the body and
    releases the response, as with ``session.request``. Raises what ``session.request`` raises.
    ``ready``: awaited after the request is built and before it leaves (and what it raises is
    raised as it is)."""
    target = _direct_target(url)
    if target is None:
        if ready is not None:
            await ready
        return await session.request(method, url, data=body, headers=headers, timeout=timeout)
    resp = await _send(session, method, target, body, headers, timeout, read_bufsize, ready)
    if resp.status in _REDIRECTS:
        resp.release()
        return await session.request(method, url, data=body, headers=headers, timeout=timeout)
    return resp


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    body: bytes | None,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout,
    read_bufsize: int,
    ready: Awaitable[None] | None,
) -> aiohttp.ClientResponse:
    if session.closed:
        raise RuntimeError("Session is closed")
    loop = asyncio.get_running_loop()
    # The total timeout spans connecting, sending and reading the whole answer, as in the session.
    deadline = TimeoutHandle(loop, timeout.total, ceil_threshold=timeout.ceil_threshold)
    handle = deadline.start()
    timer = deadline.timer()
    resp: aiohttp.ClientResponse | None = None
    try:
        with timer:
            req = ClientRequest(method, url, headers=headers, data=body, loop=loop, session=session, timer=timer)
            if ready is not None:
                await ready
            try:
                conn = await session.connector.connect(req, [], timeout)  # type: ignore[union-attr]
            except asyncio.TimeoutError as exc:
                raise ConnectionTimeoutError(f"Connection timeout to host {url}") from exc
            conn.protocol.set_response_params(  # type: ignore[union-attr]
                timer=timer,
                read_until_eof=True,
                auto_decompress=True,
                read_timeout=timeout.sock_read,
                read_bufsize=read_bufsize,
            )
            try:
                resp = await req.send(conn)
                try:
                    await resp.start(conn)
                except BaseException:
                    resp.close()
                    raise
            except BaseException:
                conn.close()
                raise
    except BaseException as exc:
        deadline.close()
        if handle is not None:
            handle.cancel()
        if resp is not None:
            resp.close()
        if isinstance(exc, OSError) and not isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
            raise ClientOSError(*exc.args) from exc
        raise
    if handle is not None:
        # The deadline lasts until the answer has been read and its connection released.
        if resp.connection is not None:
            resp.connection.add_callback(handle.cancel)
        else:
            handle.cancel()
    return resp
