"""Model aliases → deployments, and the failover loop across them.

A client names an alias (``gpt-4o``), a wildcard alias (``claude-*``), or, with passthrough
on, ``<provider>/<upstream model>``. The router turns that into an ordered list of
deployments and tries them until one answers, on retryable errors only and only before
anything has reached the client.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, TypeVar

import msgspec

from sluice.providers.base import Upstream
from sluice.providers.client import ProviderClient
from sluice.providers.http import HttpPool, Timeouts
from sluice.providers.registry import adapter_for, family_of
from sluice.routing.health import CircuitBreaker, deployments_report, open_circuit_error
from sluice.routing.stats import StatsRegistry
from sluice.routing.strategies import CostOf, make_strategy, weighted
from sluice.routing.windows import context_window, estimate_prompt_tokens
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
    priority: int = 0
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None


@dataclass(slots=True)
class Deployment:
    name: str
    client: ProviderClient
    weight: float = 1.0
    priority: int = 0
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None  # input tokens; None = unknown (never filtered)

    @property
    def provider(self) -> str:
        return self.client.upstream.provider

    @property
    def family(self) -> str:
        return family_of(self.client.upstream.kind)


@dataclass(slots=True)
class Policy:
    """An alias's routing rules: strategy, retries with backoff, and where to go when it fails."""

    strategy: str = "weighted"
    retries: int | None = None  # attempts after the first; None = each deployment once
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 20.0
    fallbacks: tuple[str, ...] = ()
    # Hedging: seconds to wait for the first attempt before starting a second one on the next
    # deployment; 0 = the primary's observed p95 (first token for streams); None = off.
    hedge: float | None = None
    context_window_fallback: str | None = None
    content_policy_fallback: str | None = None


@dataclass(slots=True)
class ModelGroup:
    alias: str
    deployments: list[Deployment]
    failover: bool = True
    description: str | None = None
    owned_by: str = "sluice"
    policy: Policy = field(default_factory=Policy)
    order: Callable[..., list] = field(default=weighted)
    needs_tokens: bool = field(init=False)  # the prompt's size matters: a known context window, or lowest_cost

    def __post_init__(self) -> None:
        self.needs_tokens = (self.policy.strategy == "lowest_cost"
                             or any(d.context_window is not None for d in self.deployments))


@dataclass(slots=True)
class HedgeLoser:
    """The attempt a hedge cancelled: recorded in the ledger too (its own row), since the
    provider may bill for what it generated before it was stopped."""

    deployment: str | None
    provider: str | None
    upstream_model: str | None
    usage: object | None = None  # known only when the loser finished before it could be cancelled


class Route(msgspec.Struct):
    """What the router did for one call: filled in as attempts happen (for headers and the ledger).
    A Struct: every call makes one, and its constructor runs in C."""

    alias: str = ""
    deployment: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    attempts: int = 0
    fallback: str | None = None  # the alias that answered when the requested one could not
    rule: str | None = None  # the conditional-routing rule that chose the alias
    semantic: str | None = None  # the semantic route taken (or why none was)
    hedged: bool = False  # a second attempt was started because the first was slow
    hedge_loser: HedgeLoser | None = None
    tickets: list | None = None  # what a DeploymentGate reserved for each attempt, to settle at the end
    # The call's admission when it was sent ahead (``sluice.policies.ahead.AdmissionAhead``):
    # every attempt awaits it before its request leaves.
    ready: Any = None

    def describe(self) -> str | None:
        """The routing decisions beyond "this alias, this deployment", for the ledger."""
        parts = []
        if self.rule:
            parts.append(f"rule={self.rule}")
        if self.semantic:
            parts.append(f"semantic={self.semantic}")
        if self.hedged:
            parts.append("hedged")
        if self.fallback:
            parts.append(f"fallback={self.fallback}")
        return " ".join(parts) or None


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


log = logging.getLogger("sluice.routing")
MAX_FALLBACK_DEPTH = 3


class DeploymentGate(Protocol):
    """Each deployment's own request and token limits (``rpm``/``tpm``: its upstream account's),
    reserved per attempt. The limits stage implements it; the router only asks."""

    async def enter(self, dep: "Deployment", req, route: Route) -> float | None:
        """None: go ahead (what was reserved is kept in ``route.tickets``); else the deployment
        is at its limit now, and the number is the seconds until it has room."""


def deployments_full_error(alias: str, wait: float) -> GatewayError:
    return GatewayError("rate_limit", f"Every deployment of '{alias}' is at its rate limit; try again in "
                        f"{math.ceil(wait)} s.", status=429, code="deployment_rate_limit",
                        retry_after=wait if math.isfinite(wait) else None)


class Router:
    def __init__(self, pool: HttpPool, providers: dict[str, ProviderSpec], passthrough: bool = True,
                 stats: StatsRegistry | None = None, cost_of: CostOf | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        self.pool = pool
        self.providers = providers
        self.passthrough = passthrough
        self.stats = stats or StatsRegistry()
        self.cost_of = cost_of
        self.breaker = breaker  # None: no circuit breaking
        self.gate: DeploymentGate | None = None  # deployments' own rpm/tpm; set by the gateway
        self.groups: dict[str, ModelGroup] = {}
        self.patterns: list[tuple[str, list[DeploymentSpec], bool, str | None, Policy]] = []
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
                  description: str | None = None, policy: Policy | None = None) -> None:
        policy = policy or Policy()
        if any(ch in alias for ch in "*?["):
            self.patterns.append((alias, deployments, failover, description, policy))
            return
        self.groups[alias] = self._group(alias, deployments, failover, description, policy, alias)

    def _group(self, alias: str, specs: list[DeploymentSpec], failover: bool, description: str | None,
               policy: Policy, requested: str) -> ModelGroup:
        deps = [self._deployment(d, requested if d.model == "*" else d.model) for d in specs]
        return ModelGroup(alias, deps, failover, description, owned_by=specs[0].provider, policy=policy,
                          order=make_strategy(policy.strategy))

    def _deployment(self, d: DeploymentSpec, model: str) -> Deployment:
        client = self.client_for(d.provider, model, d.params, d.timeouts)
        return Deployment(d.name or f"{d.provider}/{model}", client, d.weight, d.priority, d.rpm, d.tpm,
                          d.context_window or context_window(model))

    # ---- resolving ------------------------------------------------------------------------

    def resolve(self, model: str) -> ModelGroup:
        group = self.groups.get(model) or self._wild_cache.get(model)
        if group is not None:
            return group
        for pattern, deployments, failover, description, policy in self.patterns:
            if fnmatch.fnmatchcase(model, pattern):
                group = self._group(model, deployments, failover, description, policy, model)
                break
        else:
            provider, sep, upstream_model = model.partition("/")
            if not (self.passthrough and sep and upstream_model and provider in self.providers):
                raise GatewayError("not_found", f"The model '{model}' does not exist or you do not have access to it.",
                                   param="model", code="model_not_found")
            group = ModelGroup(model, [Deployment(model, self.client_for(provider, upstream_model),
                                                  context_window=context_window(upstream_model))],
                               owned_by=provider)
        if len(self._wild_cache) < 10_000:
            self._wild_cache[model] = group
        return group

    def order(self, group: ModelGroup, prompt_tokens: int = 0, stream: bool = False) -> list[Deployment]:
        """The deployments to try, in order: the strategy's choice first, then failover candidates."""
        deps = group.deployments
        if len(deps) == 1:
            return deps
        ordered = group.order(deps, stats=self.stats, stream=stream, cost_of=self.cost_of,
                              prompt_tokens=prompt_tokens)
        return ordered if group.failover else ordered[:1]

    # ---- calling --------------------------------------------------------------------------

    # The calling methods below are plain functions returning the coroutine to await, and one
    # attempt runs inline in the failover loop: every coroutine layer between the client's call
    # and the upstream's is resumed at each of the upstream call's suspensions (measured: the
    # router's layers cost ~20 µs per call before they were folded).

    def _attempts(self, req, route: Route, call: Callable[[Deployment, object], Awaitable[T]]) -> Awaitable[T]:
        """Resolve the alias now (an unknown model raises here) and return the call to await."""
        group = self.resolve(req.model)
        route.alias = group.alias
        return self._run_group(group, req, route, call, depth=0)

    async def _run_group(self, group: ModelGroup, req, route: Route, call, depth: int) -> T:
        deps = group.deployments
        if group.needs_tokens:  # a context window to check, or a strategy that weighs the prompt
            tokens = estimate_prompt_tokens(req) if isinstance(req, ChatRequest) else 0
            candidates = self.order(group, tokens, getattr(req, "stream", False))
            fitting = [d for d in candidates if d.context_window is None or tokens <= d.context_window]
        elif len(deps) > 1:
            tokens, fitting = 0, self.order(group, 0, getattr(req, "stream", False))
        else:  # one deployment of unknown window: nothing to order or to filter
            tokens, fitting = 0, deps
        if not fitting:
            err = GatewayError("context_window_exceeded",
                               f"The prompt (about {tokens} tokens) is longer than the context window of "
                               f"'{group.alias}'.", param="messages", code="context_length_exceeded")
            return await self._fall_back(group, req, route, call, depth, err)
        try:
            return await self._try_deployments(group, fitting, req, route, call)
        except GatewayError as err:
            return await self._fall_back(group, req, route, call, depth, err)

    async def _try_deployments(self, group: ModelGroup, deps: list[Deployment], req, route: Route, call) -> T:
        policy, breaker = group.policy, self.breaker
        if breaker is not None and not any(breaker.available(d.name) for d in deps):
            raise open_circuit_error(group.alias, breaker, [d.name for d in deps])  # retryable: fallbacks apply
        if policy.hedge is not None and len(deps) > 1:
            try:
                return await self._hedged(policy, deps[0], deps[1], req, route, call)
            except GatewayError as err:
                if not err.retryable:
                    raise
                deps = deps[2:]  # both hedged attempts failed: the remaining deployments, if any
                if not deps:
                    raise
        total = len(deps) if policy.retries is None else policy.retries + 1
        first_token = bool(getattr(req, "stream", False))
        last: GatewayError | None = None
        full: float | None = None  # the soonest a deployment at its own rate limit has room
        for attempt in range(total):
            dep = deps[attempt % len(deps)]
            if attempt >= len(deps):  # another round on the same deployments: back off first
                await self._backoff(policy, attempt // len(deps), last)
            if breaker is not None and not await breaker.allow(dep.name):
                continue
            if self.gate is not None and (dep.rpm or dep.tpm) and (len(group.deployments) > 1
                                                                  or group.alias != route.alias):
                # A lone deployment of the alias asked for is held exactly by the alias's capacity
                # (reserved with the caller's limits, one limiter round trip): no second one here.
                if route.ready is not None:
                    await route.ready  # the call's own limits first: a refused call charges no deployment
                wait = await self._enter(dep, req, route)
                if wait is not None:
                    full = wait if full is None else min(full, wait)
                    continue
            # One attempt, as in _attempt (inline: see the note above _attempts).
            stats, started = self._begin(dep, route)
            try:
                result = await call(dep, _for_family(req, dep.family))
            except GatewayError as err:
                if route.ready is not None and route.ready.refused:
                    self._withdrawn(dep, stats, route)
                    raise
                await self._failed(dep, stats, started, first_token, err)
                if not err.retryable:
                    raise
                last = err
                continue
            except BaseException as exc:
                self._interrupted(dep, stats, started, first_token, exc)
                raise
            stats.end(started, first_token=first_token)
            if breaker is not None and not breaker.healthy(dep.name):
                await breaker.record_success(dep.name)
            return result
        if last is None and full is not None:  # skipped for their own limits (retryable: fallbacks apply)
            raise deployments_full_error(group.alias, full)
        if last is None:  # every candidate's circuit was open
            raise open_circuit_error(group.alias, breaker, [d.name for d in deps])
        raise last

    async def _enter(self, dep: Deployment, req, route: Route) -> float | None:
        wait = await self.gate.enter(dep, req, route)  # type: ignore[union-attr]
        if wait is not None and self.breaker is not None:
            self.breaker.release_soon(dep.name)  # a half-open probe it granted is not used
        return wait

    async def _attempt(self, dep: Deployment, req, route: Route, call) -> T:
        """One call to one deployment, measured and reported to its circuit."""
        if self.gate is not None and (dep.rpm or dep.tpm):
            if route.ready is not None:
                await route.ready
            wait = await self._enter(dep, req, route)
            if wait is not None:
                raise deployments_full_error(route.alias, wait)
        first_token = bool(getattr(req, "stream", False))
        stats, started = self._begin(dep, route)
        try:
            result = await call(dep, _for_family(req, dep.family))
        except GatewayError as err:
            if route.ready is not None and route.ready.refused:
                self._withdrawn(dep, stats, route)
                raise
            await self._failed(dep, stats, started, first_token, err)
            raise
        except BaseException as exc:
            self._interrupted(dep, stats, started, first_token, exc)
            raise
        stats.end(started, first_token=first_token)
        if self.breaker is not None:
            await self.breaker.record_success(dep.name)
        return result

    def _begin(self, dep: Deployment, route: Route):
        route.attempts += 1
        route.deployment, route.provider = dep.name, dep.provider
        route.upstream_model = dep.client.upstream.model
        stats = self.stats.get(dep.name)
        return stats, stats.begin()

    async def _failed(self, dep: Deployment, stats, started: float, first_token: bool, err: GatewayError) -> None:
        stats.end(started, err, first_token=first_token)
        if self.breaker is not None:
            await self.breaker.record_failure(dep.name, err)

    def _withdrawn(self, dep: Deployment, stats, route: Route) -> None:
        """The attempt never left: the call's own limits refused it while it was being built."""
        stats.withdraw()
        route.attempts -= 1
        route.deployment = route.provider = route.upstream_model = None
        if self.breaker is not None:
            self.breaker.release_soon(dep.name)  # a half-open probe it granted is not used

    def _interrupted(self, dep: Deployment, stats, started: float, first_token: bool, exc: BaseException) -> None:
        """Cancelled (the client left, or a hedge lost) or a bug."""
        stats.end(started, exc, first_token=first_token)
        if self.breaker is not None:
            self.breaker.release_soon(dep.name)  # never await while being cancelled

    async def _hedged(self, policy: Policy, primary: Deployment, backup: Deployment, req, route: Route, call) -> T:
        """Start the backup when the primary has not answered (its first token, for streams)
        within the threshold; the first success wins and the other attempt is cancelled."""
        stream = bool(getattr(req, "stream", False))
        delay = policy.hedge if policy.hedge > 0 else (self.stats.p95(primary.name, stream) or 1.0)
        routes = [Route(alias=route.alias, ready=route.ready), Route(alias=route.alias, ready=route.ready)]
        tasks = [asyncio.ensure_future(self._attempt(primary, req, routes[0], call))]
        winner: asyncio.Future | None = None
        try:
            done, _ = await asyncio.wait(tasks, timeout=delay)
            if not done and (self.breaker is None or await self.breaker.allow(backup.name)):
                route.hedged = True
                tasks.append(asyncio.ensure_future(self._attempt(backup, req, routes[1], call)))
            winner, error = await _first_success(tasks)
        finally:
            losers = await _close_losers(tasks, winner)
            for r in routes:  # what both attempts reserved is settled with the call, won or lost
                if r.tickets:
                    route.tickets = [*(route.tickets or ()), *r.tickets]
        route.attempts += sum(r.attempts for r in routes)
        if winner is not None and len(tasks) > 1:
            loser = 1 - tasks.index(winner)
            usage = getattr(losers.get(loser), "usage", None)  # a loser that finished anyway
            route.hedge_loser = HedgeLoser(routes[loser].deployment, routes[loser].provider,
                                           routes[loser].upstream_model, usage)
        chosen = routes[tasks.index(winner)] if winner is not None else routes[-1] if len(tasks) > 1 else routes[0]
        route.deployment, route.provider, route.upstream_model = chosen.deployment, chosen.provider, \
            chosen.upstream_model
        if winner is None:
            raise error
        return winner.result()

    def deployment_names(self) -> list[str]:
        return sorted({d.name for g in (*self.groups.values(), *self._wild_cache.values()) for d in g.deployments})

    async def health(self) -> list[dict]:
        """Per deployment: circuit state, latency, time to first token, error rate, load."""
        return await deployments_report(self.deployment_names(), self.stats, self.breaker)

    async def _backoff(self, policy: Policy, round_: int, err: GatewayError | None) -> None:
        if err is not None and err.retry_after is not None:
            if err.retry_after > policy.max_retry_after:
                raise err  # the upstream asks for longer than we wait: let the client decide
            delay = err.retry_after
        else:
            delay = min(policy.backoff_max, policy.backoff_base * 2 ** (round_ - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: instances retrying together spread out
        await asyncio.sleep(delay)

    async def _fall_back(self, group: ModelGroup, req, route: Route, call, depth: int, err: GatewayError) -> T:
        policy = group.policy
        if route.ready is not None and route.ready.refused:  # the call's own limits: no deployment can help
            raise err
        if err.kind == "context_window_exceeded":
            targets: tuple[str, ...] = (policy.context_window_fallback,) if policy.context_window_fallback else ()
        elif err.kind == "content_policy":
            targets = (policy.content_policy_fallback,) if policy.content_policy_fallback else ()
        elif err.retryable:
            targets = policy.fallbacks
        else:
            targets = ()
        if not targets or depth >= MAX_FALLBACK_DEPTH:
            raise err
        for alias in targets:
            target = self.resolve(alias)
            route.fallback = alias
            log.info("falling back from %s to %s after %s", group.alias, alias, err.kind)
            try:
                return await self._run_group(target, _with_model(req, alias), route, call, depth + 1)
            except GatewayError as next_err:
                err = next_err
        raise err

    def chat(self, req: ChatRequest, route: Route, relay: str | None = None) -> Awaitable[ChatResponse]:
        """``relay``: the client's dialect, for deployments that can pass their answer on as it is
        (see ``stream``)."""
        ready = route.ready
        if ready is not None:
            return self._attempts(req, route, lambda dep, r: dep.client.chat(r, relay, ready))
        if relay is None:
            return self._attempts(req, route, _chat)
        return self._attempts(req, route, lambda dep, r: dep.client.chat(r, relay))

    def embed(self, req: EmbeddingRequest, route: Route) -> Awaitable[EmbeddingResponse]:
        return self._attempts(req, route, _embed)

    def stream(self, req: ChatRequest, route: Route, relay: str | None = None) -> Awaitable["PrimedStream"]:
        """Open a stream and read up to its first token, failing over until one starts.

        "First token" is the first chunk with content (text, a tool call, or the finish): a
        stream that only announced its role has produced nothing yet. ``relay`` is the
        client's dialect, for deployments that can relay their events as they are. The deployment's
        `timeouts.first_token` bounds the wait; running out is a retryable timeout.
        """
        async def start(dep: Deployment, r: ChatRequest) -> PrimedStream:
            it = dep.client.stream(r, relay, route.ready).__aiter__()
            limit = dep.client.timeouts.first_token
            try:
                if limit is None:  # no deadline: skip the timeout context, a per-stream cost
                    head = await _read_to_first_token(it)
                else:
                    async with asyncio.timeout(limit):
                        head = await _read_to_first_token(it)
            except TimeoutError:
                await it.aclose()
                raise GatewayError("timeout", f"upstream '{dep.provider}' sent no token within {limit:g} s",
                                   status=504, provider=dep.provider) from None
            except BaseException:
                await it.aclose()
                raise
            return PrimedStream(head or None, it)

        return self._attempts(req, route, start)


def _chat(dep: Deployment, req: ChatRequest) -> Awaitable[ChatResponse]:
    return dep.client.chat(req)


def _embed(dep: Deployment, req: EmbeddingRequest) -> Awaitable[EmbeddingResponse]:
    return dep.client.embed(req)


async def _read_to_first_token(it: AsyncIterator[list[ChatChunk]]) -> list[ChatChunk]:
    head: list[ChatChunk] = []
    async for batch in it:
        head.extend(batch)
        if any(c.text or c.tool_calls or c.finish_reason or c.raw_tokens for c in batch):
            break
    return head


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

    def split(self) -> tuple[list[ChatChunk] | None, AsyncIterator[list[ChatChunk]]]:
        """The head (None when taken) and the rest, for a consumer that reads them itself."""
        head, self._head = self._head, None
        return head, self._rest


async def _first_success(tasks: list[asyncio.Future]) -> tuple[asyncio.Future | None, GatewayError | None]:
    """The first task to succeed, or (None, the last error) when all fail."""
    pending, error = set(tasks), None
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is None:
                return task, None
            error = task.exception()
            if not isinstance(error, GatewayError):
                raise error
    return None, error


async def _close_losers(tasks: list[asyncio.Future], winner: asyncio.Future | None) -> dict[int, object]:
    """Cancel the attempts that lost and wait for them to unwind; a stream that opened anyway
    is closed, so its upstream stops generating. Returns the results of losers that finished."""
    finished: dict[int, object] = {}
    for i, task in enumerate(tasks):
        if task is winner:
            continue
        if not task.done():
            task.cancel()
        try:
            result = await task
        except BaseException:  # noqa: BLE001 - the loser's outcome no longer matters
            continue
        finished[i] = result
        aclose = getattr(result, "aclose", None)
        if aclose is not None:
            await aclose()
    return finished


def _with_model(req, alias: str):
    from msgspec import structs

    return structs.replace(req, model=alias)


def _for_family(req, family: str):
    """Drop pass-through parameters written for another provider family."""
    extra_dialect = getattr(req, "extra_dialect", None)
    if extra_dialect is None or extra_dialect == family or not req.extra:
        return req
    from msgspec import structs

    return structs.replace(req, extra=None, extra_dialect=None)
