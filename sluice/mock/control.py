"""The control API under ``/_mock``: fault rules and the log of received requests."""

from __future__ import annotations

import orjson
from aiohttp import web

from sluice.mock.common import STATE, json_response
from sluice.mock.faults import DirectiveError, rule_from_json


def _problem(message: str, status: int = 400) -> web.Response:
    return json_response({"error": {"message": message}}, status)


async def add_faults(request: web.Request) -> web.Response:
    """Body: one rule or a list of rules ``{"model"?, "format"?, "fault": {...} | "k=v+...", "count"?}``."""
    state = request.app[STATE]
    try:
        body = orjson.loads(await request.read())
        rules = [rule_from_json(item) for item in (body if isinstance(body, list) else [body])]
    except orjson.JSONDecodeError:
        return _problem("the body must be JSON")
    except DirectiveError as err:
        return _problem(str(err))
    state.rules.extend(rules)
    return json_response({"rules": [r.describe() for r in rules]}, 201)


async def list_faults(request: web.Request) -> web.Response:
    return json_response({"rules": [r.describe() for r in request.app[STATE].rules]})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].rules.clear()
    return web.Response(status=204)


async def list_requests(request: web.Request) -> web.Response:
    """Recent requests, oldest first; ``?model=`` / ``?format=`` / ``?limit=`` filter them."""
    state = request.app[STATE]
    items = list(state.log)
    model = request.query.get("model")
    fmt = request.query.get("format")
    if model is not None:
        items = [r for r in items if r["model"] == model]
    if fmt is not None:
        items = [r for r in items if r["format"] == fmt]
    limit = request.query.get("limit")
    if limit and limit.isdigit():
        items = items[-int(limit) :]
    return json_response({"requests": items, "counters": dict(state.counters)})


async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].reset_requests()
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_mock/faults", add_faults)
    app.router.add_get("/_mock/faults", list_faults)
    app.router.add_delete("/_mock/faults", clear_faults)
    app.router.add_get("/_mock/requests", list_requests)
    app.router.add_delete("/_mock/requests", clear_requests)
    app.router.add_get("/_mock/health", health)
