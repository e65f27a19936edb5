"""Builds the gateway's parts from the configuration: the router with its deployments and
circuit breaker, the conditional routing rules, and the guardrail policies."""

from __future__ import annotations

from sluice.config import Config, ConfigError
from sluice.policies.guardrails.engine import CheckSpec, GuardServices, Guardrails, PolicySpec, StreamSpec, TopicSpec
from sluice.providers.http import HttpPool, Timeouts
from sluice.routing.conditional import ConditionalRouter, Rule
from sluice.routing.health import CircuitBreaker, CircuitPolicy, LocalCircuitStore
from sluice.routing.router import DeploymentSpec, Policy, ProviderSpec, Router


def build_guardrails(config: Config, services: GuardServices | None = None) -> Guardrails | None:
    policies = []
    for name, p in config.guardrails.policies.items():
        policies.append(PolicySpec(name, tuple(_check_spec(c) for c in p.input),
                                   tuple(_check_spec(c) for c in p.output), tuple(p.models),
                                   tuple(p.teams) if p.teams is not None else None,
                                   tuple(p.keys) if p.keys is not None else None,
                                   StreamSpec(p.stream.every, p.stream.window, p.stream.overlap)))
    if not policies:
        return None
    try:
        return Guardrails(policies, services)
    except ValueError as exc:
        raise ConfigError(f"guardrails: {exc}") from None


def _check_spec(c) -> CheckSpec:
    def topics(items) -> tuple[TopicSpec, ...]:
        return tuple(TopicSpec(t.name, tuple(t.keywords), tuple(t.examples)) for t in items)

    return CheckSpec(
        c.check, c.action, c.mode, tuple(c.types) if c.types is not None else None, c.threshold, c.max_chars,
        name=c.name, url=c.url, headers=tuple(c.headers.items()), target=c.target, timeout=c.timeout, fail=c.fail,
        backend=c.backend, model=c.model, judge=c.judge,
        categories=tuple(c.categories) if c.categories is not None else None, schema=c.json_schema,
        repair=c.repair, allow=topics(c.allow) if c.allow is not None else None, deny=topics(c.deny))


def build_rules(config: Config) -> ConditionalRouter:
    return ConditionalRouter([
        Rule(name=r.name or f"rule-{i}", route_to=r.route_to, model=r.when.model, tags=tuple(r.when.tags),
             metadata=r.when.metadata or None, key=r.when.key, team=r.when.team, user=r.when.user,
             headers={k.lower(): v for k, v in r.when.headers.items()} or None, has_tools=r.when.has_tools,
             has_images=r.when.has_images, prompt_tokens_gt=r.when.prompt_tokens_gt,
             prompt_tokens_lt=r.when.prompt_tokens_lt)
        for i, r in enumerate(config.routing.rules)
    ])


def build_breaker(config: Config, store: object | None) -> CircuitBreaker | None:
    defaults = config.routing.circuit_breaker
    if not defaults.enabled:
        return None
    fields = ("enabled", "failures", "window", "cooldown", "probe_timeout", "retry_after", "max_retry_after")
    policy = CircuitPolicy(**{f: getattr(defaults, f) for f in fields})
    overrides = {}
    for m in config.models.values():
        for d in m.deployments:
            if d.circuit_breaker is not None:
                overrides[d.name or f"{d.provider}/{d.model}"] = CircuitPolicy(
                    **{f: getattr(d.circuit_breaker, f) for f in fields})
    return CircuitBreaker(store or LocalCircuitStore(), policy, policies=overrides)


def build_router(config: Config, provider_urls: dict[str, str] | None = None,
                 circuit_store: object | None = None) -> Router:
    specs: dict[str, ProviderSpec] = {}
    for name, p in config.providers.items():
        kind = "openai-compatible" if p.kind == "emulator" else p.kind
        base_url = (provider_urls or {}).get(name) or p.base_url or ""
        specs[name] = ProviderSpec(
            name=name, kind=kind, base_url=base_url,
            api_key=p.api_key or ("emulator" if p.kind == "emulator" else None),
            api_version=p.api_version, headers=dict(p.headers), options=dict(p.options),
            timeouts=_timeouts(p.timeouts),
        )
    router = Router(HttpPool(), specs, passthrough=config.passthrough,
                    breaker=build_breaker(config, circuit_store))
    for alias, m in config.models.items():
        router.add_alias(
            alias,
            [DeploymentSpec(d.provider, d.model, d.weight, d.params, _timeouts(d.timeouts) if d.timeouts else None,
                            d.name, d.priority, d.rpm, d.tpm, d.context_window) for d in m.deployments],
            failover=m.failover,
            description=m.description,
            policy=Policy(strategy=m.strategy, retries=m.retries, backoff_base=m.backoff.base,
                          backoff_max=m.backoff.max, max_retry_after=m.backoff.max_retry_after,
                          fallbacks=tuple(m.fallbacks), context_window_fallback=m.context_window_fallback,
                          hedge=None if m.hedge_after_ms is None else 0.0 if m.hedge_after_ms == "p95"
                          else m.hedge_after_ms / 1000,
                          content_policy_fallback=m.content_policy_fallback),
        )
    return router


def _timeouts(t) -> Timeouts:
    return Timeouts(connect=t.connect, total=t.total, first_token=t.first_token, idle=t.idle)


__all__ = ["build_breaker", "build_guardrails", "build_router", "build_rules"]
