"""Request ids and the JSON-lines access log, as one plain ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import logging
import re
import time
from operator import itemgetter

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.api.direct_write import cycle_of, write_head_and_body
from sluice.api.http import REQUEST_ID_KEY, new_request_id

access_log = logging.getLogger("sluice.access")
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_name = itemgetter(0)


class RequestContext:
    def __init__(self, app: ASGIApp, access_log_enabled: bool = True) -> None:
        self.app = app
        self.log = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        headers = scope["headers"]
        # SDKs send a dozen headers or more: the names are searched in C, not one by one here.
        names = list(map(_name, headers))
        if b"x-request-id" in names:
            value = headers[names.index(b"x-request-id")][1]  # the first, if repeated
            # Propagate the caller's id only if it is a sane token (it ends up in logs).
            if _VALID_ID.match(value):
                rid = value.decode()
        if rid is None:
            rid = new_request_id()
        scope[REQUEST_ID_KEY] = rid
        rid_header = (b"x-request-id", rid.encode())
        started = time.perf_counter()
        status = 0
        headers_out: list = []
        held: Message | None = None  # the start, until the first body part: one write for both
        cycle = cycle_of(receive)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, headers_out, held
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_out = list(message.get("headers", ()))
                headers_out.append(rid_header)
                message["headers"] = headers_out
                if cycle is not None:
                    held = message
                    return
            elif held is not None:
                start, held = held, None
                if message["type"] == "http.response.body" and write_head_and_body(cycle, start, message):
                    return
                await send(start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if held is not None:  # a start with no body after it: uvicorn ends the response
                await send(held)
            if self.log:
                self._log(scope, rid, status, started, headers_out)

    def _log(self, scope: Scope, rid: str, status: int, started: float, headers: list) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        entry = {
            "ts": round(time.time(), 3),
            "request_id": rid,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        for name, value in headers:
            if name == b"x-sluice-deployment":
                entry["deployment"] = value.decode()
            elif name == b"x-sluice-attempts":
                entry["attempts"] = int(value)
        client = scope.get("client")
        if client:
            entry["client"] = client[0]
        access_log.info(orjson.dumps(entry).decode())
