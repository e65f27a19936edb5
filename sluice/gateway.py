"""The one place that knows the order of the stages around a model call.

    auth → (limits, prompts, guardrails, cache: later stages) → router → providers

A ``Call`` carries what one client request needs on its way down and back up; stages read
and annotate it, none calls another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from sluice.config import Config
from sluice.policies.auth import Authenticator, Principal
from sluice.providers.http import HttpPool, Timeouts
from sluice.routing.router import ModelGroup, PrimedStream, ProviderSpec, Route, Router
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, GatewayError

log = logging.getLogger("sluice.gateway")


@dataclass(slots=True)
class Call:
    request_id: str
    dialect: str  # inbound API: "openai" | "anthropic"
    credential: str | None = None
    principal: Principal | None = None
    route: Route = field(default_factory=Route)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None


class Gateway:
    def __init__(self, router: Router, auth: Authenticator) -> None:
        self.router = router
        self.auth = auth

    @classmethod
    def from_config(cls, config: Config, provider_urls: dict[str, str] | None = None) -> "Gateway":
        """``provider_urls`` supplies base URLs decided at start-up (the in-process emulator's port)."""
        pool = HttpPool()
        specs: dict[str, ProviderSpec] = {}
        for name, p in config.providers.items():
            kind = "openai-compatible" if p.kind == "emulator" else p.kind
            base_url = (provider_urls or {}).get(name) or p.base_url or ""
            specs[name] = ProviderSpec(
                name=name, kind=kind, base_url=base_url, api_key=p.api_key or ("emulator" if p.kind == "emulator"
                                                                               else None),
                api_version=p.api_version, headers=dict(p.headers), options=dict(p.options),
                timeouts=_timeouts(p.timeouts),
            )
        router = Router(pool, specs, passthrough=config.passthrough)
        for alias, m in config.models.items():
            router.add_alias(
                alias,
                [(d.provider, d.model, d.weight, d.params, _timeouts(d.timeouts) if d.timeouts else None, d.name)
                 for d in m.deployments],
                failover=m.failover,
                description=m.description,
            )
        return cls(router, Authenticator(config.server.master_key))

    async def close(self) -> None:
        await self.router.pool.close()

    # ---- stages ---------------------------------------------------------------------------

    def _admit(self, call: Call) -> None:
        call.principal = self.auth.authenticate(call.credential)

    async def chat(self, call: Call, req: ChatRequest) -> ChatResponse:
        self._admit(call)
        return await self.router.chat(req, call.route)

    async def stream(self, call: Call, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Errors before the first chunk raise here; later ones are raised by the iterator."""
        self._admit(call)
        primed = await self.router.stream(req, call.route)
        call.first_token_at = time.perf_counter()
        return primed

    async def embed(self, call: Call, req: EmbeddingRequest) -> EmbeddingResponse:
        self._admit(call)
        return await self.router.embed(req, call.route)

    def list_models(self, call: Call) -> list[ModelGroup]:
        self._admit(call)
        return list(self.router.groups.values())

    def get_model(self, call: Call, model: str) -> ModelGroup:
        self._admit(call)
        return self.router.resolve(model)


def _timeouts(t) -> Timeouts:
    return Timeouts(connect=t.connect, total=t.total, first_token=t.first_token, idle=t.idle)


__all__ = ["Call", "Gateway", "GatewayError", "PrimedStream"]
