"""The least a Python LLM proxy can do, as a yardstick for Sluice's own overhead.

It parses the JSON request, forwards it to one upstream over a pooled aiohttp client and answers,
streaming SSE through chunk by chunk. Same stack as Sluice (uvicorn + uvloop + httptools, a raw ASGI
app, aiohttp, orjson) and one worker, so the difference to Sluice is Sluice's own work.

    python bench/bare_proxy.py --upstream http://127.0.0.1:8090 --port 8091
"""

from __future__ import annotations

import argparse
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class BareProxy:
    def __init__(self, upstream: str, api_key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Unlimited pool: the client's concurrency, not the pool, sets the upstream's.
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                self.session = aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _answer(send, 400, _JSON, b'{"error":{"message":"invalid JSON"}}')
            return
        assert self.session is not None
        url = self.upstream + scope["path"]
        async with self.session.post(url, data=orjson.dumps(payload), headers=self.headers) as resp:
            if payload.get("stream") and resp.status == 200:
                await self._stream(resp, send)
            else:
                await _answer(send, resp.status, _JSON, await resp.read())

    async def _stream(self, resp: aiohttp.ClientResponse, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="Base URL of the upstream, e.g. http://127.0.0.1:8090")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--api-key", default="x")
    args = parser.parse_args()
    uvicorn.run(BareProxy(args.upstream, args.api_key), host=args.host, port=args.port, loop="uvloop",
                http="httptools", lifespan="on", access_log=False, log_level="warning", server_header=False,
                date_header=False, workers=None)


if __name__ == "__main__":
    main()
