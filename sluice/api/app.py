"""The ASGI application: both inbound dialects on one port, plus health probes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.api import health
from sluice.api.anthropic import AnthropicRoutes
from sluice.api.http import JSONResponse, ModelRequest
from sluice.api.middleware import RequestContext
from sluice.api.openai import OpenAIRoutes
from sluice.gateway import METRICS_CONTENT_TYPE, Gateway


def create_app(gateway: Gateway, *, max_body_bytes: int = 32 * 1024 * 1024, access_log: bool = True,
               lifespan=None, runtime=None) -> RequestContext:
    """``runtime`` (database, auth, events) adds the admin API under /admin and its docs at /docs."""
    openai = OpenAIRoutes(gateway, max_body_bytes)
    anthropic = AnthropicRoutes(gateway, max_body_bytes)
    routes = [
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        Route("/embeddings", openai.embeddings, methods=["POST"]),
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai.get_model, methods=["GET"]),
        Route("/v1/messages", anthropic.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic.count_tokens, methods=["POST"]),
        Route("/health", health.liveness, methods=["GET"]),
        Route("/health/liveliness", health.liveness, methods=["GET"]),
        Route("/health/readiness", health.readiness, methods=["GET"]),
        Route("/health/deployments", health.deployments, methods=["GET"]),
        Route("/metrics", _metrics(gateway), methods=["GET"]),
    ]
    if runtime is not None:
        from sluice.api.admin import admin_routes, create_admin_app

        routes += admin_routes(create_admin_app(runtime.db, runtime.auth, runtime.events,
                                                limits_view=getattr(runtime, "limits", None),
                                                cache=getattr(runtime, "cache", None)))
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.gateway = gateway
    hot = {
        ("POST", "/v1/chat/completions"): openai.chat_completions,
        ("POST", "/v1/messages"): anthropic.messages,
        ("POST", "/v1/embeddings"): openai.embeddings,
    }
    return RequestContext(HotPaths(app, hot), access_log_enabled=access_log)


class HotPaths:
    """Sends the model-call routes straight to their handlers, past Starlette's router and
    exception middleware: the handlers answer every error themselves, so those layers only
    add cost there (about 15% of a call's CPU, measured with bench/profile_sluice.py).
    Every other path goes through the Starlette app."""

    __slots__ = ("app", "routes")

    def __init__(self, app: Starlette, routes: dict) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
            if handler is not None:
                response = await handler(ModelRequest(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _metrics(gateway: Gateway):
    async def metrics(request: Request) -> Response:
        """Prometheus exposition; like /health, unauthenticated (bind to a private interface)."""
        return Response(gateway.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return metrics


async def _not_found(request: Request, exc: Exception) -> Response:
    return _plain_error(request, 404, "not_found_error", f"Unknown path {request.url.path}.")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _plain_error(request, 405, "invalid_request_error", f"Method {request.method} not allowed on this path.")


def _plain_error(request: Request, status: int, kind: str, message: str) -> Response:
    # Outside a dialect route the client's dialect is unknown; the Anthropic-style body also
    # carries an OpenAI-style "error" object, which both SDKs can read.
    body = {"type": "error", "error": {"type": kind, "message": message, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)
