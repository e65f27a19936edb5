"""Model aliases → deployments, and the failover loop across them.

A client names an alias (``gpt-4o``), a wildcard alias (``claude-*``), or, with passthrough
on, ``<provider>/<upstream model>``. The router turns that into an ordered list of
deployments and tries them until one answers, on retryable errors only and only before
anything has reached the client.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sluice.providers.base import Upstream
from sluice.providers.client import ProviderClient
from sluice.providers.http import HttpPool, Timeouts
from sluice.providers.registry import adapter_for, family_of
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, GatewayError

T = TypeVar("T")


@dataclass(slots=True)
class DeploymentSpec:
    """A deployment as configured; ``model`` "*" takes the name the client asked for."""

    provider: str
    model: str
    weight: float = 1.0
    params: dict = field(default_factory=dict)
    timeouts: Timeouts | None = None
    name: str | None = None


@dataclass(slots=True)
class Deployment:
    name: str
    client: ProviderClient
    weight: float = 1.0

    @property
    def provider(self) -> str:
        return self.client.upstream.provider

    @property
    def family(self) -> str:
        return family_of(self.client.upstream.kind)


@dataclass(slots=True)
class ModelGroup:
    alias: str
    deployments: list[Deployment]
    failover: bool = True
    description: str | None = None
    owned_by: str = "sluice"


@dataclass(slots=True)
class Route:
    """What the router did for one call: filled in as attempts happen (for headers and the ledger)."""

    alias: str = ""
    deployment: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    attempts: int = 0


@dataclass(slots=True)
class ProviderSpec:
    name: str
    kind: str
    base_url: str
    api_key: str | None
    api_version: str | None
    headers: dict
    options: dict
    timeouts: Timeouts


class Router:
    def __init__(self, pool: HttpPool, providers: dict[str, ProviderSpec], passthrough: bool = True) -> None:
        self.pool = pool
        self.providers = providers
        self.passthrough = passthrough
        self.groups: dict[str, ModelGroup] = {}
        self.patterns: list[tuple[str, list[DeploymentSpec], bool]] = []
        self._wild_cache: dict[str, ModelGroup] = {}

    # ---- building -------------------------------------------------------------------------

    def client_for(self, provider: str, model: str, params: dict | None = None,
                   timeouts: Timeouts | None = None) -> ProviderClient:
        spec = self.providers[provider]
        upstream = Upstream(
            provider=spec.name, kind=spec.kind, base_url=spec.base_url, model=model, api_key=spec.api_key,
            api_version=spec.api_version, headers=spec.headers, params=params or {}, options=spec.options,
        )
        return ProviderClient(adapter_for(spec.kind), upstream, self.pool, timeouts or spec.timeouts)

    def add_alias(self, alias: str, deployments: list[DeploymentSpec], failover: bool = True,
                  description: str | None = None) -> None:
        if any(ch in alias for ch in "*?["):
            self.patterns.append((alias, deployments, failover))
            return
        self.groups[alias] = ModelGroup(alias, [self._deployment(d, d.model) for d in deployments], failover,
                                        description, owned_by=deployments[0].provider)

    def _deployment(self, d: DeploymentSpec, model: str) -> Deployment:
        client = self.client_for(d.provider, model, d.params, d.timeouts)
        return Deployment(d.name or f"{d.provider}/{model}", client, d.weight)

    # ---- resolving ------------------------------------------------------------------------

    def resolve(self, model: str) -> ModelGroup:
        group = self.groups.get(model) or self._wild_cache.get(model)
        if group is not None:
            return group
        for pattern, deployments, failover in self.patterns:
            if fnmatch.fnmatchcase(model, pattern):
                group = ModelGroup(model, [self._deployment(d, model if d.model == "*" else d.model)
                                           for d in deployments], failover, owned_by=deployments[0].provider)
                break
        else:
            provider, sep, upstream_model = model.partition("/")
            if not (self.passthrough and sep and upstream_model and provider in self.providers):
                raise GatewayError("not_found", f"The model '{model}' does not exist or you do not have access to it.",
                                   param="model", code="model_not_found")
            group = ModelGroup(model, [Deployment(model, self.client_for(provider, upstream_model))],
                               owned_by=provider)
        if len(self._wild_cache) < 10_000:
            self._wild_cache[model] = group
        return group

    def order(self, group: ModelGroup) -> list[Deployment]:
        """Weighted-random first choice; the rest follow as failover candidates.

        Weight 0 means "standby": never chosen first while another deployment has weight,
        tried after the weighted ones when they fail.
        """
        deps = group.deployments
        if len(deps) == 1:
            return deps
        weighted = [d for d in deps if d.weight > 0] or deps
        first = random.choices(weighted, weights=[d.weight or 1 for d in weighted])[0]
        if not group.failover:
            return [first]
        rest = [d for d in weighted if d is not first]
        random.shuffle(rest)
        return [first, *rest, *(d for d in deps if d not in weighted)]

    # ---- calling --------------------------------------------------------------------------

    async def _attempts(self, req, route: Route, call: Callable[[Deployment, object], Awaitable[T]]) -> T:
        group = self.resolve(req.model)
        route.alias = group.alias
        last: GatewayError | None = None
        for dep in self.order(group):
            route.attempts += 1
            route.deployment, route.provider = dep.name, dep.provider
            route.upstream_model = dep.client.upstream.model
            try:
                return await call(dep, _for_family(req, dep.family))
            except GatewayError as err:
                if not err.retryable:
                    raise
                last = err
        assert last is not None
        raise last

    async def chat(self, req: ChatRequest, route: Route) -> ChatResponse:
        return await self._attempts(req, route, lambda dep, r: dep.client.chat(r))

    async def embed(self, req: EmbeddingRequest, route: Route) -> EmbeddingResponse:
        return await self._attempts(req, route, lambda dep, r: dep.client.embed(r))

    async def stream(self, req: ChatRequest, route: Route) -> "PrimedStream":
        """Open a stream and read up to its first chunk, failing over until one starts."""
        async def start(dep: Deployment, r: ChatRequest) -> PrimedStream:
            it = dep.client.stream(r).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                return PrimedStream(None, it)
            except BaseException:
                await it.aclose()
                raise
            return PrimedStream(first, it)

        return await self._attempts(req, route, start)


class PrimedStream:
    """A stream whose first chunks have arrived: from here on errors go to the client in-stream.

    Iterates over batches of chunks (all that one upstream network read carried), so the
    API layer can answer with one write per batch.
    """

    __slots__ = ("_head", "_rest")

    def __init__(self, head: list[ChatChunk] | None, rest: AsyncIterator[list[ChatChunk]]) -> None:
        self._head = head
        self._rest = rest

    def __aiter__(self) -> "PrimedStream":
        return self

    async def __anext__(self) -> list[ChatChunk]:
        head = self._head
        if head is not None:
            self._head = None
            return head
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        await self._rest.aclose()


def _for_family(req, family: str):
    """Drop pass-through parameters written for another provider family."""
    extra_dialect = getattr(req, "extra_dialect", None)
    if extra_dialect is None or extra_dialect == family or not req.extra:
        return req
    from msgspec import structs

    return structs.replace(req, extra=None, extra_dialect=None)
