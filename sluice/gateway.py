"""The one place that knows the order of the stages around a model call.

    auth → access → routing rules → limits.reserve → (prompts, guardrails, cache: later stages)
    → router → providers … and back up: limits.settle, and usage recorded in the ledger for
    every call, failed ones included.

A ``Call`` carries what one client request needs on its way down and back up; stages read
and annotate it, none calls another.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import AsyncIterator, Callable, Mapping, NoReturn

import msgspec
from msgspec import structs

from sluice.assembly import build_guardrails, build_router, build_rules
from sluice.call_streams import CachingStream, MeteredStream
from sluice.config import Config
from sluice.observability.ledger import UsageEvent
from sluice.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from sluice.observability.metrics import GatewayMetrics
from sluice.policies.ahead import AdmissionAhead
from sluice.policies.auth import Authenticator, Principal
from sluice.policies.cache import Entry, Plan, Probe, Replay, ResponseCache, SemanticCache
from sluice.policies.guardrails.engine import GuardServices, Guardrails, Session
from sluice.policies.deployment_limits import DeploymentLimits
from sluice.policies.limits import LATER, Admission, Demand, Limits
from sluice.policies.tokens import count_embedding_tokens, encoding_ready, reserve_tokens, warm_up_for
from sluice.routing.conditional import ConditionalRouter, Facts
from sluice.routing.probes import HealthProber
from sluice.routing.router import (
    ModelGroup,
    Route,
    Router,
)
from sluice.routing.semantic import (
    CallableEmbedder,
    SemanticRoute,
    SemanticRouter,
    routing_text,
)
from sluice.routing.windows import estimate_prompt_tokens
from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    GatewayError,
    ImagePart,
    Usage,
)

log = logging.getLogger("sluice.gateway")

CLIENT_GONE = 499  # the status recorded when the client left before the answer ended
_SIDE_CALLS = itertools.count(1)  # numbers the calls stages make for a client's call


class Call(msgspec.Struct):
    """One client call as it goes through the gateway. A Struct rather than a dataclass: every
    call makes one (and its Route), and a Struct's constructor runs in C."""

    request_id: str
    dialect: str  # inbound API: "openai" | "anthropic"
    credential: str | None = None
    end_user: str | None = None  # from the x-sluice-end-user header; the request's `user` wins
    tags: tuple[str, ...] = ()
    headers: Mapping[str, str] | None = None  # the request's headers, for routing rules
    principal: Principal | None = None
    route: Route = msgspec.field(default_factory=Route)
    started: float = msgspec.field(default_factory=time.perf_counter)
    ts: datetime = msgspec.field(default_factory=lambda: datetime.now(timezone.utc))
    first_token_at: float | None = None
    usage: Usage | None = None
    status: int = 200
    error_kind: str | None = None
    admission: Admission | None = None  # what the limits stage reserved; settled when the call ends
    response_headers: dict[str, str] | None = None  # stage reports (guardrails, cache, a refusal's limits)
    rate_headers: list[tuple[bytes, bytes]] | None = None  # x-ratelimit-* of the admission, encoded
    output_chars: int = 0  # streamed text so far: estimates output when a stream ends without usage
    cache_hit: bool = False
    cost_saved: float = 0.0  # a cache hit: what the answer cost when it was produced

    def fail(self, err: GatewayError) -> None:
        self.status, self.error_kind = err.status, err.kind

    def abandon(self) -> None:
        self.status, self.error_kind = CLIENT_GONE, "client_disconnected"


class Gateway:
    def __init__(self, router: Router, auth: Authenticator,
                 record: Callable[[UsageEvent], None] | None = None,
                 rules: ConditionalRouter | None = None, limits: Limits | None = None,
                 price: Callable[[object], tuple[float, bool]] | None = None) -> None:
        self.router = router
        self.auth = auth
        self.record = record  # the ledger's non-blocking record(); None = no ledger
        self.limits = limits
        self.price = price  # the ledger's pricing function: settles budgets to what a call cost
        self.default_max_tokens = limits.settings.default_max_tokens if limits is not None else 4096
        self.cache: ResponseCache | None = None  # set by the server when cache.enabled
        self.semantic_cache: SemanticCache | None = None  # and cache.semantic.enabled
        self.guardrails: Guardrails | None = None  # set from guardrails.policies
        self.metrics = GatewayMetrics()
        if limits is not None:
            self.metrics.watch_limits(limits)
            # Deployments that declare rpm/tpm are held to them per attempt (exact across instances).
            router.gate = DeploymentLimits(limits, self._deployment_tokens)
        self._settling: set[asyncio.Task] = set()
        # alias → (its group, the upstream model whose tokenizer counts its prompts, loaded)
        self._counting_hints: dict[str, tuple[ModelGroup | None, str | None]] = {}
        self.rules = rules if rules and rules.rules else None
        self.semantic: dict[str, tuple[SemanticRouter, bool]] = {}  # alias → (router, include_system)
        self.prober: HealthProber | None = None

    async def start(self, config: Config) -> None:
        """Build the semantic routers (embedding their examples) so a bad setup fails at boot,
        and start active health checks when configured."""
        checks = config.routing.health_checks
        if checks.enabled and self.router.breaker is not None:
            deployments = {d.name: d for g in self.router.groups.values() for d in g.deployments}
            self.prober = HealthProber(deployments, self.router.breaker, checks.interval, checks.timeout)
            self.prober.start()
        for sem in config.routing.semantic:
            if sem.embedder == "local":
                embedder = shared_local_embedder()
            else:
                embedder = CallableEmbedder(self._embedder_for(sem.embedder))
            routes = [SemanticRoute(r.name, r.target, list(r.examples), r.threshold) for r in sem.routes]
            router = SemanticRouter(routes, embedder, sem.default or sem.routes[0].target, sem.threshold,
                                    scoring=sem.scoring)
            await router.start()
            self.semantic[sem.alias] = (router, sem.include_system)

    def embedding_function(self, alias: str):
        """``async (texts) -> vectors`` through one of the configured embedding models."""
        embed = self._embedder_for(alias)

        async def vectors(texts: list[str]) -> list[list[float]]:
            return (await embed(texts)).vectors

        return vectors

    def _embedder_for(self, alias: str):
        async def embed(texts: list[str]):
            # Routing's own embedding calls are infrastructure: not billed to the caller's key.
            return await self.router.embed(EmbeddingRequest(model=alias, input=texts), Route())

        return embed

    @classmethod
    def from_config(cls, config: Config, provider_urls: dict[str, str] | None = None,
                    auth: Authenticator | None = None,
                    record: Callable[[UsageEvent], None] | None = None,
                    circuit_store: object | None = None, limits: Limits | None = None,
                    price: Callable[[object], tuple[float, bool]] | None = None) -> "Gateway":
        """``provider_urls`` supplies base URLs decided at start-up (the in-process emulator's port);
        ``circuit_store`` shares circuit state between instances (Redis), else it is in-process."""
        gateway = cls(build_router(config, provider_urls, circuit_store),
                      auth or Authenticator(config.server.master_key), record, build_rules(config), limits, price)
        gateway.guardrails = build_guardrails(config, gateway.guard_services())
        return gateway

    def guard_services(self) -> GuardServices:
        """What guardrail checks may call: models behind aliases (Llama Guard, the injection
        judge), a provider's moderation endpoint, the local embedder. Each model or endpoint call
        gets a ledger row of its own (``<request id>/guardrail-<n>``, endpoint ``guardrail`` or
        ``moderations``), attributed to the caller whose request it checked."""
        async def complete(alias: str, req: ChatRequest, owner: Call | None) -> ChatResponse:
            side = self._side_call(owner)
            try:
                resp = await self.router.chat(req, side.route)
                side.usage = resp.usage
                return resp
            except GatewayError as err:
                side.fail(err)
                raise
            finally:
                self._record(side, alias, "guardrail", None, stream=False)

        async def moderations(alias: str, payload: dict, owner: Call | None) -> dict:
            side = self._side_call(owner)
            try:
                dep = self.router.resolve(alias).deployments[0]
                side.route.provider, side.route.deployment = dep.provider, dep.name
                side.route.upstream_model = dep.client.upstream.model
                return await dep.client.moderations(payload)
            except GatewayError as err:
                side.fail(err)
                raise
            finally:
                self._record(side, alias, "moderations", None, stream=False)

        return GuardServices(complete=complete, moderations=moderations, embedder=_LazyLocalEmbedder())

    @staticmethod
    def _side_call(owner: "Call | None") -> "Call":
        """A call a stage makes on behalf of the client's call: same caller, its own ledger row."""
        n = next(_SIDE_CALLS)
        if owner is None:
            return Call(request_id=f"guardrail-{n}", dialect="internal")
        return Call(request_id=f"{owner.request_id[:100]}/guardrail-{n}", dialect=owner.dialect,
                    principal=owner.principal, tags=owner.tags, end_user=owner.end_user)

    async def close(self) -> None:
        if self.prober is not None:
            await self.prober.close()
        if self._settling:  # let the last calls' settlements land (bounded: the limiter may be down)
            await asyncio.wait(self._settling, timeout=5)
        if self.limits is not None:
            await self.limits.close()
        if self.guardrails is not None:
            await self.guardrails.close()
        await self.router.pool.close()

    # ---- stages ---------------------------------------------------------------------------

    async def _admit(self, call: Call, model: str | None) -> Principal:
        principal = await self.auth.authenticate(call.credential)
        call.principal = principal
        if model is not None and not may_use(principal, model):
            raise GatewayError("permission", f"This key is not allowed to use the model '{model}'.",
                               param="model", code="model_not_allowed")
        return principal

    async def _route(self, call: Call, req: ChatRequest) -> ChatRequest:
        """Conditional rules first, then semantic aliases: both may pick another alias."""
        req = self._route_by_rules(call, req)
        semantic = self.semantic.get(req.model)
        if semantic is None:
            return req
        router, include_system = semantic
        decision = await router.route(routing_text(req, include_system=include_system))
        call.route.semantic = decision.route_name or decision.reason
        return structs.replace(req, model=decision.alias or router.default_alias)

    def _route_by_rules(self, call: Call, req: ChatRequest) -> ChatRequest:
        if self.rules is None:
            return req
        p = call.principal
        facts = Facts(
            model=req.model, tags=(*(p.tags if p else ()), *call.tags), metadata=req.metadata,
            key_id=p.key_id if p else None, team_id=p.team_id if p else None, user_id=p.user_id if p else None,
            headers=call.headers, has_tools=bool(req.tools),
            has_images=any(isinstance(part, ImagePart) for m in req.messages for part in m.content),
            prompt_tokens=lambda: estimate_prompt_tokens(req),
        )
        rule = self.rules.pick(facts)
        if rule is None or rule.route_to == req.model:
            return req
        call.route.rule = rule.name
        return structs.replace(req, model=rule.route_to)

    def _reserve_now(self, call: Call, alias: str, tokens: Callable[[str | None], tuple[int, int]]) -> bool:
        """The limits stage without awaiting, when it needs none (the in-process limiter, the
        tokenizer loaded, no budget, no queue): True when done, False when ``_reserve`` must run.
        The caller has checked that limits apply (``Limits.applies``)."""
        assert self.limits is not None
        known = self._counting_hints.get(alias)
        if known is None or known[0] is not self.router.groups.get(alias):
            return False
        try:
            admission = self.limits.admit_now(call.principal, call.end_user, alias, tokens, known[1])
        except GatewayError as err:
            self._refused(call, err)
        if admission is LATER:
            return False
        self._admitted(call, admission)  # type: ignore[arg-type]
        return True

    def _reserve_ahead(self, call: Call, alias: str, tokens: Callable[[str | None], tuple[int, int]]) -> bool:
        """The limits stage with its reservation sent now and awaited just before the upstream
        request leaves (``sluice.policies.ahead``), when no stage runs between it and the router:
        True when sent, False when ``_reserve`` must run."""
        assert self.limits is not None
        known = self._counting_hints.get(alias)
        if known is None or known[0] is not self.router.groups.get(alias):
            return False
        pending = self.limits.admit_ahead(call.principal, call.end_user, self._demand(alias, tokens(known[1])))
        if pending is None:
            return False
        call.route.ready = AdmissionAhead(pending, partial(self._admitted, call), partial(self._refusal_headers, call))
        return True

    @staticmethod
    async def _ahead_first(call: Call, err: GatewayError) -> GatewayError:
        """The error to answer a call that failed before its admission, sent ahead, was awaited
        (an unknown model, an open circuit): the refusal, if it was refused, as without sending
        ahead, where limits come first."""
        ahead = call.route.ready
        if ahead is None or ahead.started:
            return err
        try:
            await ahead
        except GatewayError as refusal:
            return refusal
        return err

    def _settle_ahead_later(self, call: Call, ahead: AdmissionAhead) -> None:
        """The call ended before its admission, sent ahead, was awaited: wait for it off the
        response path and settle it, so nothing it reserved stays held."""
        async def settle() -> None:
            try:
                await ahead
            except BaseException:  # noqa: BLE001 - refused or failed: nothing was reserved
                return
            self._settle(call)

        task = asyncio.ensure_future(settle())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _reserve(self, call: Call, alias: str, tokens: Callable[[str | None], tuple[int, int]]) -> None:
        """The limits stage: reserve this call's requests, tokens, concurrency and budget, or refuse.
        The caller has checked that limits apply (``Limits.applies``)."""
        assert self.limits is not None
        group = self.router.groups.get(alias)
        known = self._counting_hints.get(alias)
        if known is not None and known[0] is group:
            hint = known[1]
        else:
            hint = self._upstream_model(alias)
            if not encoding_ready(hint):  # the first limited call loads the tokenizer off the event loop
                await asyncio.to_thread(warm_up_for, hint)
            if len(self._counting_hints) < 10_000:
                self._counting_hints[alias] = (group, hint)
        demand = self._demand(alias, tokens(hint))
        try:
            admission = await self.limits.admit(call.principal, call.end_user, self._tags(call), demand)
        except GatewayError as err:
            self._refused(call, err)
        self._admitted(call, admission)

    def _demand(self, alias: str, tokens: tuple[int, int]) -> Demand:
        input_tokens, output_tokens = tokens
        return Demand(alias, input_tokens, output_tokens, lambda: self._max_cost(alias, input_tokens, output_tokens))

    @staticmethod
    def _tags(call: Call) -> tuple[str, ...]:
        p = call.principal
        return (*p.tags, *call.tags) if p is not None and p.tags else call.tags

    @staticmethod
    def _admitted(call: Call, admission: Admission | None) -> None:
        call.admission = admission
        if admission is not None:
            call.rate_headers = admission.rate_headers
            if admission.headers:
                call.response_headers = admission.headers

    @staticmethod
    def _refusal_headers(call: Call, err: GatewayError) -> None:
        headers = getattr(err, "headers", None)
        if headers:
            call.response_headers = dict(headers)

    @classmethod
    def _refused(cls, call: Call, err: GatewayError) -> NoReturn:
        cls._refusal_headers(call, err)
        raise err

    def _upstream_model(self, alias: str) -> str | None:
        group = self.router.groups.get(alias)
        if group is None or not group.deployments:
            return alias.split("/", 1)[-1]  # passthrough: "<provider>/<model>"
        return group.deployments[0].client.upstream.model

    def _max_cost(self, alias: str, input_tokens: int, output_tokens: int) -> float:
        """The most this call can cost: its tokens at the priciest deployment it may reach."""
        if self.price is None:
            return 0.0
        group = self.router.groups.get(alias)
        if group is None:
            targets = [(alias, alias.split("/", 1)[-1])]
        else:
            targets = [(d.name, d.client.upstream.model) for d in group.deployments]
            for other in (*group.policy.fallbacks, group.policy.context_window_fallback,
                          group.policy.content_policy_fallback):
                fallback = self.router.groups.get(other) if other else None
                targets += [(d.name, d.client.upstream.model) for d in fallback.deployments] if fallback else []
        return max((self._cost(name, model, input_tokens, output_tokens, 0) for name, model in targets), default=0.0)

    async def _prepare(self, call: Call, req: ChatRequest):
        """The stages before the router, in order: auth and access, routing rules, limits,
        guardrails on the input, the cache. Returns the request as the router will see it."""
        # A stage that is not configured is skipped without awaiting it: each await of a
        # coroutine that returns at once is paid on every call.
        await self._admit(call, req.model)
        # the ledger keeps the alias the client asked for
        routed = await self._route(call, req) if self.rules is not None or self.semantic else req
        call.end_user = req.user or call.end_user
        if self.limits is not None and self.limits.applies(call.principal, call.end_user, routed.model):
            tokens = partial(reserve_tokens, routed, default_max_tokens=self.default_max_tokens)
            if not (self.limits.can_admit_now and self._reserve_now(call, routed.model, tokens)) and not (
                    self.guardrails is None and self.cache is None and self._reserve_ahead(call, routed.model, tokens)):
                await self._reserve(call, routed.model, tokens)
        guard = None
        if self.guardrails is not None:
            routed, guard = await self._guard_input(call, routed)
        plan = self._cache_plan(call, routed)
        entry = probe = None
        if plan is not None:
            entry, probe = await self._cache_lookup(call, routed, plan)
        return routed, guard, plan, entry, probe

    async def chat(self, call: Call, req: ChatRequest) -> ChatResponse:
        try:
            routed, guard, plan, entry, probe = await self._prepare(call, req)
            if entry is not None:
                return await self._guard_output(call, guard, entry.response)
            # Nothing on the way back needs the answer's text: it may go out as the upstream sent it.
            relay = call.dialect if guard is None and (plan is None or not plan.store) else None
            resp = await self.router.chat(routed, call.route, relay)
            call.usage = resp.usage
            if plan is not None and plan.store:
                self._save(call, plan, resp, probe)  # as the upstream saw it: placeholders, not values
            return await self._guard_output(call, guard, resp)
        except GatewayError as err:
            first = await self._ahead_first(call, err) if call.route.ready is not None else err
            call.fail(first)
            if first is not err:
                raise first from None
            raise
        except asyncio.CancelledError:
            call.abandon()
            raise
        finally:
            self._record(call, req.model, "chat", req.user, stream=False)

    # ---- guardrails ---------------------------------------------------------------------------

    async def _guard_input(self, call: Call, req: ChatRequest) -> tuple[ChatRequest, Session | None]:
        if self.guardrails is None:
            return req, None
        p = call.principal
        context = {"model": req.model, "key_id": p.key_id if p else None, "team_id": p.team_id if p else None,
                   "user_id": p.user_id if p else None, "request_id": call.request_id}

        async def retry(repair: ChatRequest) -> ChatResponse:
            # A structured-output repair: one more upstream call, billed to this call.
            resp = await self.router.chat(repair, call.route)
            call.usage = _add_usage(call.usage, resp.usage)
            return resp

        try:
            req, session = await self.guardrails.start(call.principal, req, context, retry, owner=call)
        except GatewayError as err:
            self._set_header(call, "x-sluice-guardrails", getattr(err, "guardrails", None) or "blocked")
            raise
        if session is not None:
            self._set_header(call, "x-sluice-guardrails", session.header())
        return req, session

    async def _guard_output(self, call: Call, session: Session | None, resp: ChatResponse) -> ChatResponse:
        if session is None:
            return resp
        try:
            return await session.finish_response(resp)
        finally:
            self._set_header(call, "x-sluice-guardrails", session.header())

    # ---- the response cache -----------------------------------------------------------------

    def _cache_plan(self, call: Call, req: ChatRequest) -> Plan | None:
        if self.cache is None:
            return None
        plan = self.cache.plan(req, call.principal, call.headers)
        if plan is not None:
            self._set_header(call, "x-sluice-cache", "miss")
        return plan

    async def _cache_lookup(self, call: Call, req: ChatRequest, plan: Plan | None) -> tuple[Entry | None, Probe | None]:
        """The exact entry, else (with the semantic cache on) one for a prompt that means the same."""
        if plan is None or self.cache is None:
            return None, None
        entry = await self.cache.lookup(plan, req.model) if plan.lookup else None
        if entry is not None:
            self._serve_hit(call, entry, "hit")
            return entry, None
        if self.semantic_cache is None:
            return None, None
        try:
            probe = await self.semantic_cache.probe(req, plan)
            if probe is not None and plan.lookup:
                entry = await self.semantic_cache.lookup(self.cache, probe, req.model)
        except Exception:  # noqa: BLE001 - the semantic layer failing is a miss, never an error
            log.warning("semantic cache lookup failed", exc_info=True, extra={"request_id": call.request_id})
            return None, None
        if entry is not None:
            self._serve_hit(call, entry, "semantic-hit")
        return entry, probe

    def _serve_hit(self, call: Call, entry: Entry, how: str) -> None:
        call.cache_hit, call.cost_saved = True, entry.cost_usd
        self._set_header(call, "x-sluice-cache", how)

    def _save(self, call: Call, plan: Plan, resp: ChatResponse, probe: Probe | None = None) -> None:
        """Store a fresh answer off the response path (and index its prompt for the semantic cache)."""
        route, usage = call.route, resp.usage or Usage()
        cost = self._cost(route.deployment, route.upstream_model, usage.input_tokens, usage.output_tokens,
                          usage.cached_tokens)
        entry = Entry(response=resp, cost_usd=cost, deployment=route.deployment, upstream_model=route.upstream_model)
        task = asyncio.ensure_future(self._store_entry(plan, entry, probe))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _store_entry(self, plan: Plan, entry: Entry, probe: Probe | None) -> None:
        await self.cache.save(plan, entry)  # type: ignore[union-attr]
        if probe is not None and self.semantic_cache is not None:
            try:
                await self.semantic_cache.remember(probe, plan)
            except Exception:  # noqa: BLE001
                log.warning("semantic cache store failed", exc_info=True)

    @staticmethod
    def _set_header(call: Call, name: str, value: str) -> None:
        headers = dict(call.response_headers) if call.response_headers else {}
        headers[name] = value
        call.response_headers = headers

    async def stream(self, call: Call, req: ChatRequest) -> AsyncIterator[list[ChatChunk]]:
        """Errors before the first chunk raise here; later ones are raised by the iterator.

        The ledger row is written when the returned stream ends, fails or is closed early.
        """
        try:
            routed, guard, plan, entry, probe = await self._prepare(call, req)
            if entry is not None:
                primed = Replay(entry.response)
            else:
                # Nothing on the way back needs the text: the upstream's events may go out as they are.
                watched = guard is not None and guard.watches_output()
                relay = call.dialect if not watched and (plan is None or not plan.store) else None
                primed = await self.router.stream(routed, call.route, relay)
        except (GatewayError, asyncio.CancelledError) as err:
            first = err
            if isinstance(err, GatewayError):
                first = await self._ahead_first(call, err) if call.route.ready is not None else err
                call.fail(first)
            else:
                call.abandon()
            self._record(call, req.model, "chat", req.user, stream=True)
            if first is not err:
                raise first from None
            raise
        call.first_token_at = time.perf_counter()
        source: AsyncIterator[list[ChatChunk]] = primed
        if entry is None and plan is not None and plan.store:
            # The cache keeps what the upstream sent (placeholders, not values): innermost.
            source = CachingStream(source, call, lambda assembled: self._save(
                call, plan, assembled.response(routed.model), probe))
        if guard is not None:
            source = guard.guard_stream(source)

        def done() -> None:
            if guard is not None:  # output verdicts arrive with the stream: the ledger gets them all
                self._set_header(call, "x-sluice-guardrails", guard.header())
            self._record(call, req.model, "chat", req.user, stream=True)

        return MeteredStream(source, call, done)

    async def embed(self, call: Call, req: EmbeddingRequest) -> EmbeddingResponse:
        try:
            await self._admit(call, req.model)
            call.end_user = req.user or call.end_user
            if self.limits is not None and self.limits.applies(call.principal, call.end_user, req.model):
                inputs = [req.input] if isinstance(req.input, str) else list(req.input)
                await self._reserve(call, req.model, lambda hint: (
                    count_embedding_tokens([i for i in inputs if isinstance(i, str)], hint), 0))
            resp = await self.router.embed(req, call.route)
            call.usage = Usage(input_tokens=resp.usage.input_tokens)
            return resp
        except GatewayError as err:
            call.fail(err)
            raise
        except asyncio.CancelledError:
            call.abandon()
            raise
        finally:
            self._record(call, req.model, "embeddings", req.user, stream=False)

    async def list_models(self, call: Call) -> list[ModelGroup]:
        principal = await self._admit(call, None)
        groups = [*self.router.groups.values(), *(self._virtual(a) for a in self.semantic)]
        return [g for g in groups if may_use(principal, g.alias)]

    async def get_model(self, call: Call, model: str) -> ModelGroup:
        await self._admit(call, model)
        return self._virtual(model) if model in self.semantic else self.router.resolve(model)

    def _virtual(self, alias: str) -> ModelGroup:
        return ModelGroup(alias, [], description="semantic routing", owned_by="sluice")

    # ---- usage ----------------------------------------------------------------------------

    def _settle(self, call: Call) -> None:
        """Settle the call's reservation to its real usage and cost (off the response path)."""
        admission, usage, route = call.admission, call.usage, call.route
        if admission is None:
            return
        call.admission = None
        cached = 0
        if usage is not None:
            tokens_in, tokens_out, cached = usage.input_tokens, usage.output_tokens, usage.cached_tokens
        elif call.status == CLIENT_GONE and call.first_token_at is not None:
            # Streamed for a while, then the client left before the usage arrived: the prompt was
            # read and about a token per 3-4 characters of the text sent so far was produced.
            tokens_in, tokens_out = admission.demand.input_tokens, max(call.output_chars // 3, 1)
        elif call.status == CLIENT_GONE:
            tokens_in = tokens_out = None  # gone while the model worked: keep what was reserved
        else:
            tokens_in, tokens_out = 0, 0  # refused, or failed upstream: nothing was produced
        cost = None
        if tokens_in is not None and tokens_out is not None and admission.shape.charges_cost:
            cost = self._cost(route.deployment, route.upstream_model, tokens_in, tokens_out, cached)
            loser = route.hedge_loser
            if loser is not None and loser.usage is not None:
                lu = loser.usage
                tokens_in, tokens_out = tokens_in + lu.input_tokens, tokens_out + lu.output_tokens
                if cost is not None:
                    cost += self._cost(loser.deployment, loser.upstream_model, lu.input_tokens,
                                       lu.output_tokens, lu.cached_tokens)
        if admission.settle_nowait(tokens_in, tokens_out, cost):
            return
        task = asyncio.ensure_future(self._settle_quietly(admission, tokens_in, tokens_out, cost, call.request_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _deployment_tokens(self, req: object, model: str | None) -> tuple[int, int]:
        if isinstance(req, ChatRequest):
            return reserve_tokens(req, model, self.default_max_tokens)
        inputs = [req.input] if isinstance(req.input, str) else list(req.input)  # type: ignore[attr-defined]
        return count_embedding_tokens([i for i in inputs if isinstance(i, str)], model), 0

    def _settle_deployments(self, call: Call) -> None:
        """Settle what each attempt reserved against its deployment's own limits: the attempt that
        answered to the call's usage, a hedge's loser to its own, failed attempts to no tokens."""
        route, usage = call.route, call.usage
        loser = route.hedge_loser
        answered = False
        for ticket in reversed(route.tickets or ()):
            tokens: tuple[int | None, int | None] = (0, 0)
            if ticket.deployment == route.deployment and not answered:
                answered = True
                if usage is not None:
                    tokens = (usage.input_tokens, usage.output_tokens)
                elif call.status == CLIENT_GONE:
                    tokens = (None, None)  # gone mid-call: keep what was reserved
            elif loser is not None and ticket.deployment == loser.deployment:
                tokens = (loser.usage.input_tokens, loser.usage.output_tokens) if loser.usage else (None, None)
            if not ticket.admission.settle_nowait(*tokens, None):
                task = asyncio.ensure_future(self._settle_quietly(ticket.admission, *tokens, None, call.request_id))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
        route.tickets = None

    def _cost(self, deployment: str | None, upstream_model: str | None, tokens_in: int, tokens_out: int,
              cached: int) -> float:
        if self.price is None:
            return 0.0
        return self.price(_Priced(deployment, upstream_model, tokens_in, tokens_out, cached))[0]

    @staticmethod
    async def _settle_quietly(admission: Admission, tokens_in: int | None, tokens_out: int | None,
                              cost: float | None, request_id: str) -> None:
        try:
            await admission.settle(tokens_in, tokens_out, cost)
        except Exception:  # noqa: BLE001 - the limiter being down must not break accounting
            log.warning("could not settle a reservation", exc_info=True, extra={"request_id": request_id})

    def _record(self, call: Call, model: str, endpoint: str, user: str | None, stream: bool) -> None:
        if call.cache_hit:
            call.usage = None  # the cached answer's usage went to the client; this call used nothing
        p, route, usage = call.principal, call.route, call.usage or Usage()
        if route.deployment and usage.total_tokens:
            self.router.stats.get(route.deployment).add_tokens(usage.total_tokens)  # for usage-aware routing
        if call.admission is not None:
            self._settle(call)
        elif route.ready is not None and not route.ready.started:
            self._settle_ahead_later(call, route.ready)
        if call.route.tickets:
            self._settle_deployments(call)
        if self.record is None:
            return
        now = time.perf_counter()
        try:
            event = UsageEvent(
                request_id=call.request_id, ts=call.ts, dialect=call.dialect, endpoint=endpoint, model=model,
                status=call.status, key_id=p.key_id if p else None, team_id=p.team_id if p else None,
                user_id=p.user_id if p else None, end_user=user or call.end_user,
                tags=sorted({*(p.tags if p else ()), *call.tags}), provider=route.provider,
                deployment=route.deployment, upstream_model=route.upstream_model, stream=stream,
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens, latency_ms=(now - call.started) * 1000,
                ttft_ms=(call.first_token_at - call.started) * 1000 if call.first_token_at else None,
                error_type=call.error_kind, attempts=route.attempts,
                fallback=route.attempts > 1 or route.fallback is not None, route=route.describe(),
                cache_hit=call.cache_hit, cost_saved_usd=call.cost_saved,
                guardrails=(call.response_headers or {}).get("x-sluice-guardrails"),
            )
            self.record(event)
            if route.hedge_loser is not None:
                self.record(_hedge_loser_event(event, route.hedge_loser))
        except Exception:  # noqa: BLE001 - accounting must never break the answer
            log.exception("could not record usage", extra={"request_id": call.request_id})


class _LazyLocalEmbedder:
    """The shared in-process embedder, loaded on first use (topic examples in guardrails)."""

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await shared_local_embedder().embed(texts)


def _add_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    if a is None or b is None:
        return b if a is None else a
    return Usage(**{name: getattr(a, name) + getattr(b, name) for name in Usage.__struct_fields__})


@dataclass(slots=True)
class _Priced:
    """What the pricing function reads (``sluice.observability.pricing.PricedCall``)."""

    deployment: str | None
    upstream_model: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


_LOCAL_EMBEDDER = None


def shared_local_embedder():
    """One in-process ONNX model per process (~100 MB): every gateway and alias shares it."""
    global _LOCAL_EMBEDDER
    if _LOCAL_EMBEDDER is None:
        from sluice.routing.local_embedder import LocalOnnxEmbedder

        _LOCAL_EMBEDDER = LocalOnnxEmbedder()
    return _LOCAL_EMBEDDER


def _hedge_loser_event(winner: UsageEvent, loser) -> UsageEvent:
    """The losing hedged attempt as a row of its own (``<request id>/hedge``), status 499 unless
    it had finished: what it used is known only then."""
    usage = loser.usage or Usage()
    return structs.replace(
        winner, request_id=f"{winner.request_id}/hedge", provider=loser.provider, deployment=loser.deployment,
        upstream_model=loser.upstream_model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens, status=200 if loser.usage else CLIENT_GONE, error_type="hedge_lost",
        ttft_ms=None, attempts=1, fallback=False, route="hedge-loser", cost_usd=0.0, cost_unknown=False,
    )


def may_use(principal: Principal, model: str) -> bool:
    allowed = principal.models
    if allowed is None:
        return True
    return any(model == a or fnmatch.fnmatchcase(model, a) for a in allowed)


__all__ = ["CLIENT_GONE", "METRICS_CONTENT_TYPE", "Call", "Gateway", "GatewayError", "may_use"]
