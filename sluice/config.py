"""The ``sluice.yaml`` schema: strict, with errors that name the key path and the nearest valid key.

When no file is given, ``embedded_defaults()`` builds the configuration from the environment:
providers from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` / ``GEMINI_API_KEY``, a local Ollama
when one answers, and otherwise a ``demo`` model served by the built-in emulator.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROVIDER_KINDS = (
    "openai", "azure", "vllm", "ollama", "llamacpp", "mistral", "groq", "together", "deepseek", "openrouter",
    "openai-compatible", "anthropic", "gemini", "tgi", "emulator",
)
ProviderKind = Literal[
    "openai", "azure", "vllm", "ollama", "llamacpp", "mistral", "groq", "together", "deepseek", "openrouter",
    "openai-compatible", "anthropic", "gemini", "tgi", "emulator",
]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TimeoutsConfig(Strict):
    connect: float = Field(10.0, gt=0)
    total: float = Field(600.0, gt=0)
    first_token: float | None = Field(None, gt=0)
    idle: float | None = Field(120.0, gt=0)


class ProviderConfig(Strict):
    kind: ProviderKind
    base_url: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)

    @model_validator(mode="after")
    def _kind_needs(self) -> "ProviderConfig":
        if self.kind in ("azure", "openai-compatible", "tgi") and not self.base_url:
            raise ValueError(f"provider kind '{self.kind}' needs base_url")
        if self.kind == "azure" and not self.api_version:
            raise ValueError("provider kind 'azure' needs api_version (e.g. '2024-10-21')")
        return self


class PricingConfig(Strict):
    """USD per million tokens; overrides the shipped price table for one deployment."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class DeploymentConfig(Strict):
    provider: str
    model: str  # upstream model name; "*" takes the name the client asked for (wildcard aliases)
    weight: float = Field(1.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    timeouts: TimeoutsConfig | None = None
    name: str | None = None  # shown in x-sluice-deployment; default "<provider>/<model>"
    pricing: PricingConfig | None = None
    priority: int = 0  # for strategy "priority": lower goes first
    rpm: int | None = Field(None, gt=0)  # the upstream account's limits, for strategy "usage_aware"
    tpm: int | None = Field(None, gt=0)
    context_window: int | None = Field(None, gt=0)  # input tokens; default from the built-in table
    circuit_breaker: "CircuitBreakerConfig | None" = None  # overrides routing.circuit_breaker


class BackoffConfig(Strict):
    base: float = Field(0.25, ge=0)  # seconds before the first retry of the same deployment; doubles
    max: float = Field(8.0, ge=0)
    max_retry_after: float = Field(20.0, ge=0)  # a longer Retry-After is not waited for: next option


class ModelConfig(Strict):
    deployments: list[DeploymentConfig] = Field(min_length=1)
    description: str | None = None
    # Try the alias's other deployments after a retryable failure (before the first byte).
    failover: bool = True
    strategy: Literal["weighted", "round_robin", "least_busy", "lowest_latency", "lowest_cost", "priority",
                      "usage_aware"] = "weighted"
    # Attempts after the first, across the alias's deployments (cycling); default: each deployment once.
    retries: int | None = Field(None, ge=0, le=20)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    fallbacks: list[str] = Field(default_factory=list)  # aliases tried in order when all attempts failed
    # Hedged requests: start a second attempt on the next deployment when the first has not
    # answered (first token, for streams) within `hedge_after_ms`, or "p95" of what it usually takes.
    hedge_after_ms: float | Literal["p95"] | None = None
    context_window_fallback: str | None = None  # alias for prompts too long for this one
    content_policy_fallback: str | None = None  # alias when a provider refuses for content policy


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    master_key: str | None = None
    access_log: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    detect_ollama: bool = True


class RuleConfig(Strict):
    """``when`` every listed condition holds, send the request to ``route_to`` (an alias)."""

    class When(Strict):
        model: str | None = None  # requested alias (glob)
        tags: list[str] = Field(default_factory=list)
        metadata: dict[str, Any] = Field(default_factory=dict)
        key: str | None = None
        team: str | None = None
        user: str | None = None
        headers: dict[str, str] = Field(default_factory=dict)
        has_tools: bool | None = None
        has_images: bool | None = None
        prompt_tokens_gt: int | None = Field(None, ge=0)
        prompt_tokens_lt: int | None = Field(None, gt=0)

    name: str | None = None
    when: When
    route_to: str


class CircuitBreakerConfig(Strict):
    """Per deployment: `failures` retryable failures in a row within `window` s open the circuit
    for `cooldown` s; then one probe request decides. Shared through Redis when configured."""

    enabled: bool = True
    failures: int = Field(5, ge=1)
    window: float = Field(30.0, gt=0)
    cooldown: float = Field(30.0, gt=0)
    probe_timeout: float = Field(60.0, gt=0)
    retry_after: bool = True  # a 429's Retry-After opens the circuit for that long
    max_retry_after: float = Field(300.0, gt=0)


class SemanticRouteConfig(Strict):
    name: str
    target: str  # alias requests like the examples go to
    examples: list[str] = Field(min_length=1)
    threshold: float | None = Field(None, ge=-1, le=1)


class SemanticAliasConfig(Strict):
    """A virtual alias (``model: auto``) whose requests go to the route nearest in meaning."""

    alias: str
    routes: list[SemanticRouteConfig] = Field(min_length=1)
    default: str | None = None  # alias below the threshold; None = the first route's target
    threshold: float = Field(0.2, ge=-1, le=1)
    embedder: str = "local"  # "local" (in-process ONNX model) or an embeddings alias
    include_system: bool = False
    scoring: Literal["centroid", "max"] = "centroid"


class HealthChecksConfig(Strict):
    """Active probes (a one-token "ping" chat call) of every declared deployment, fed to its circuit."""

    enabled: bool = False
    interval: float = Field(30.0, gt=0)
    timeout: float = Field(10.0, gt=0)


class RoutingConfig(Strict):
    rules: list[RuleConfig] = Field(default_factory=list)
    health_checks: HealthChecksConfig = Field(default_factory=HealthChecksConfig)
    semantic: list[SemanticAliasConfig] = Field(default_factory=list)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)


class DatabaseConfig(Strict):
    # Default: $SLUICE_DATABASE_URL, else a SQLite file ./sluice.db. PostgreSQL: postgresql://…
    url: str | None = None


class RedisConfig(Strict):
    # Default: $SLUICE_REDIS_URL; without one, shared state stays in-process (one instance).
    url: str | None = None
    prefix: str = "sluice"


class JWTClaimsConfig(Strict):
    user: str = "sub"
    email: str = "email"
    team: str = "team"
    roles: str = "roles"


class JWTConfig(Strict):
    jwks_url: str | None = None
    public_key: str | None = None  # PEM, instead of a JWKS URL
    issuer: str | None = None
    audience: str | list[str] | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    claims: JWTClaimsConfig = Field(default_factory=JWTClaimsConfig)
    jwks_cache_seconds: float = Field(300, gt=0)
    leeway_seconds: float = Field(30, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> "JWTConfig":
        if bool(self.jwks_url) == bool(self.public_key):
            raise ValueError("give exactly one of jwks_url or public_key")
        return self


class AuthConfig(Strict):
    jwt: JWTConfig | None = None
    # Seconds a key looked up in the database is trusted without asking again; revocations are
    # also pushed over Redis, so this only bounds staleness when Redis is not configured.
    cache_ttl: float = Field(30, gt=0)


class RateLimitConfig(Strict):
    """Limits of one subject; absent fields are not limited. Windows slide over the last minute."""

    rpm: int | None = Field(None, ge=0)  # requests per minute
    tpm: int | None = Field(None, ge=0)  # tokens (input + output) per minute
    input_tpm: int | None = Field(None, ge=0)
    output_tpm: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=0)  # requests in flight


class QueueConfig(Strict):
    """When a model is at capacity, callers wait in a queue ordered by their key's priority class."""

    enabled: bool = True
    max_wait: float = Field(10.0, ge=0)  # seconds; then 429 with Retry-After
    max_size: int = Field(1000, ge=0)  # waiting requests per model, per instance


class LimitsConfig(Strict):
    """Rate, token and concurrency limits and budgets. Per key, team and user they live in the
    database (admin API); here: per end user, per model alias, and how the limiter behaves."""

    enabled: bool = True
    backend: Literal["auto", "local", "redis"] = "auto"  # auto: Redis when redis.url is set
    # What to do when Redis does not answer: "open" lets calls through unlimited (logged, counted),
    # "closed" refuses them with 503 until Redis is back.
    redis_failure: Literal["open", "closed"] = "open"
    redis_timeout: float = Field(0.5, gt=0)  # seconds for one limiter round trip
    default_max_tokens: int = Field(4096, gt=0)  # output tokens reserved when a request sets none
    end_user: RateLimitConfig | None = None  # applies to each end user separately
    models: dict[str, RateLimitConfig] = Field(default_factory=dict)  # per alias, all callers together
    queue: QueueConfig = Field(default_factory=QueueConfig)
    default_priority: Literal["interactive", "default", "batch"] = "default"
    budget_refresh: float = Field(30.0, gt=0)  # seconds between budget reloads (changes are also pushed)


class CacheModelConfig(Strict):
    enabled: bool = True
    ttl: float | None = Field(None, gt=0)  # seconds; default cache.ttl


class SemanticCacheConfig(Strict):
    """Reuse the answer to a previous prompt that means the same (docs/caching.md: measured precision)."""

    enabled: bool = False
    # "local": the offline ONNX model shipped with Sluice; or the alias of an embedding model
    # configured here (the threshold was measured for the local model: re-run
    # bench/eval_semantic_cache.py before trusting it with another).
    embedder: str = "local"
    threshold: float = Field(0.76, gt=0, le=1)  # cosine similarity, with the lexical guard
    max_entries: int = Field(10_000, gt=0)  # vectors kept per instance (LRU)


class CacheConfig(Strict):
    """The response cache (off by default): exact matches of deterministic requests."""

    enabled: bool = False
    backend: Literal["auto", "local", "redis"] = "auto"  # auto: Redis when redis.url is set
    namespace: Literal["team", "key", "global"] = "team"  # who shares entries
    ttl: float = Field(3600.0, gt=0)
    max_temperature: float | None = Field(0.0, ge=0)  # cache only at or below; unset temperature = 1
    tools: bool = False  # also cache requests that offer tools
    max_entries: int = Field(10_000, gt=0)  # in-process backend bounds (LRU)
    max_bytes: int = Field(256 * 1024 * 1024, gt=0)
    models: dict[str, CacheModelConfig] = Field(default_factory=dict)
    semantic: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)


class GuardrailTopicConfig(Strict):
    name: str = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)  # whole words or phrases, any case
    examples: list[str] = Field(default_factory=list)  # texts on the topic, compared by meaning


class GuardrailCheckConfig(Strict):
    check: Literal["pii", "injection", "max_length", "moderation", "json_schema", "topics", "webhook", "python"]
    action: Literal["flag", "redact", "block"] = "block"
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,60}$")  # label in x-sluice-guardrails
    mode: Literal["reversible", "mask"] = "reversible"  # pii with action redact, on input
    types: list[str] | None = None  # pii: EMAIL, PHONE, CREDIT_CARD, IBAN, SSN, IP_ADDRESS, SECRET, ADDRESS (PERSON with the ner extra); default all but PERSON
    threshold: float | None = Field(None, gt=0, le=1)  # injection, moderation, topics (similarity)
    max_chars: int | None = Field(None, gt=0)  # max_length
    # webhook / python
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    target: str | None = None  # python: "package.module:function"
    timeout: float = Field(2.0, gt=0, le=60)
    fail: Literal["open", "closed"] = "closed"  # when a webhook, entry point or backend cannot answer
    # moderation
    backend: Literal["local", "endpoint", "llama_guard"] = "local"
    model: str | None = None  # moderation endpoint / Llama Guard: the alias that serves it
    categories: list[Literal["hate", "harassment", "violence", "sexual", "self_harm", "illegal"]] | None = None
    # injection
    judge: str | None = None  # an alias whose model scores the prompt too (LLM judge)
    # json_schema
    json_schema: dict[str, Any] | None = Field(None, alias="schema")  # default: the request's response_format
    repair: bool = False  # one more call asking the model to fix invalid JSON
    # topics
    allow: list[GuardrailTopicConfig] | None = None
    deny: list[GuardrailTopicConfig] = Field(default_factory=list)


class GuardrailStreamConfig(Strict):
    every: int = Field(200, gt=0)  # scan streamed text after this many new characters
    window: int = Field(2000, gt=600)  # characters held for scanning at most
    overlap: int = Field(200, ge=0)


class GuardrailPolicyConfig(Strict):
    """Checks on a call's input and output, for the calls this policy matches (first match wins)."""

    input: list[GuardrailCheckConfig] = Field(default_factory=list)
    output: list[GuardrailCheckConfig] = Field(default_factory=list)
    models: list[str] = Field(default_factory=lambda: ["*"])  # alias patterns
    teams: list[str] | None = None  # team ids; None = any
    keys: list[str] | None = None  # key ids; None = any
    stream: GuardrailStreamConfig = Field(default_factory=GuardrailStreamConfig)


class GuardrailsConfig(Strict):
    policies: dict[str, GuardrailPolicyConfig] = Field(default_factory=dict)


class LedgerConfig(Strict):
    enabled: bool = True
    batch_size: int = Field(500, gt=0)
    flush_interval: float = Field(0.5, gt=0)
    queue_size: int = Field(100_000, gt=0)
    spill_path: str = ".sluice/ledger-spill.jsonl"


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    # Let clients name "<provider>/<upstream model>" directly without declaring an alias.
    passthrough: bool = True

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, v: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(f"provider name '{name}' may use only letters, digits, '.', '_' and '-'")
        return v


# ---- loading ----------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings; an unset variable is an error at its path."""
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is not None:
                    return m.group(2)
                raise ConfigError(f"{path}: environment variable {m.group(1)} is not set")
            return value

        return _ENV_REF.sub(sub, node)
    return node


def _nearest(word: str, choices) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _inner_model(annotation: Any) -> Any:
    from typing import get_args, get_origin

    origin = get_origin(annotation)
    if origin is dict:
        return _dict_value_model(annotation)
    if origin in (list,):
        return _inner_model(get_args(annotation)[0])
    for arg in get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _dict_value_model(annotation: Any) -> Any:
    from typing import get_args

    args = get_args(annotation)
    return _inner_model(args[1]) if len(args) == 2 else None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        path = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            owner = _owner_model(loc)
            hint = _nearest(str(loc[-1]), owner.model_fields) if owner else None
            msg = f"{path}: unknown key" + (f"; did you mean '{hint}'?" if hint else "")
            if owner and not hint:
                msg += f"; valid keys: {', '.join(owner.model_fields)}"
        else:
            msg = f"{path or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
            if err["type"] == "literal_error" and loc and loc[-1] == "kind":
                msg += f" (got {err.get('input')!r})"
        lines.append(msg)
    return "\n".join(lines)


def _owner_model(loc: tuple) -> type[BaseModel] | None:
    """Walk Config's fields along ``loc`` (skipping dict keys and list indexes) to the owner model."""
    model: Any = Config
    i = 0
    parts = list(loc[:-1])
    while i < len(parts):
        part = parts[i]
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        from typing import get_origin

        origin = get_origin(annotation)
        model = _inner_model(annotation)
        if origin is dict or origin is list:
            i += 1  # skip the dict key / list index that follows
        i += 1
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def parse_config(raw: Any, source: str = "config") -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (server, providers, models)")
    raw = _interpolate(raw, "")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    _check_references(config)
    return config


def _unknown_alias(config: Config, path: str, target: str) -> ConfigError:
    hint = _nearest(target, config.models)
    return ConfigError(f"{path}: unknown model alias '{target}'" + (f"; did you mean '{hint}'?" if hint else ""))


def _callable_model(config: Config, name: str) -> bool:
    """Whether clients can call ``name``: an alias, a name a wildcard alias matches, or (with
    passthrough) ``<provider>/<model>`` of a configured provider — as the router resolves them."""
    wildcards = [alias for alias in config.models if any(ch in alias for ch in "*?[")]
    if name in config.models or any(fnmatch.fnmatchcase(name, alias) for alias in wildcards):
        return True
    provider, sep, upstream_model = name.partition("/")
    return config.passthrough and bool(sep and upstream_model) and provider in config.providers


def _check_limit_and_cache_references(config: Config) -> None:
    """Models named under limits.models and cache.models must be callable; the embedder of
    cache.semantic must be an alias."""
    names = [(f"limits.models.{a}", a) for a in config.limits.models]
    names += [(f"cache.models.{a}", a) for a in config.cache.models]
    for path, target in names:
        if not _callable_model(config, target):
            raise _unknown_alias(config, path, target)
    embedder = config.cache.semantic.embedder
    if embedder != "local" and embedder not in config.models:
        raise _unknown_alias(config, "cache.semantic.embedder", embedder)


def _check_references(config: Config) -> None:
    _check_limit_and_cache_references(config)
    for i, sem in enumerate(config.routing.semantic):
        names = [(f"routing.semantic.{i}.routes.{j}.target", r.target) for j, r in enumerate(sem.routes)]
        names += [(f"routing.semantic.{i}.default", sem.default)] if sem.default else []
        names += [(f"routing.semantic.{i}.embedder", sem.embedder)] if sem.embedder != "local" else []
        for path, target in names:
            if target not in config.models:
                hint = _nearest(target, config.models)
                raise ConfigError(f"{path}: unknown model alias '{target}'" + (f"; did you mean '{hint}'?" if hint else ""))
    for i, rule in enumerate(config.routing.rules):
        if rule.route_to not in config.models:
            hint = _nearest(rule.route_to, config.models)
            raise ConfigError(f"routing.rules.{i}.route_to: unknown model alias '{rule.route_to}'"
                              + (f"; did you mean '{hint}'?" if hint else ""))
    for alias, model in config.models.items():
        targets = [("fallbacks", f) for f in model.fallbacks]
        targets += [(k, getattr(model, k)) for k in ("context_window_fallback", "content_policy_fallback")
                    if getattr(model, k)]
        for key, target in targets:
            if target not in config.models:
                hint = _nearest(target, config.models)
                raise ConfigError(f"models.{alias}.{key}: unknown model alias '{target}'"
                                  + (f"; did you mean '{hint}'?" if hint else ""))
        for i, dep in enumerate(model.deployments):
            if dep.provider not in config.providers:
                hint = _nearest(dep.provider, config.providers)
                declared = ", ".join(sorted(config.providers)) or "none"
                raise ConfigError(
                    f"models.{alias}.deployments.{i}.provider: unknown provider '{dep.provider}'"
                    + (f"; did you mean '{hint}'?" if hint else f"; declared providers: {declared}")
                )


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, str(path))


# ---- embedded defaults ------------------------------------------------------------------------

# Model-name patterns each well-known provider serves when enabled from its environment key.
_ENV_PROVIDERS = (
    ("OPENAI_API_KEY", "openai", "openai", ("gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*")),
    ("ANTHROPIC_API_KEY", "anthropic", "anthropic", ("claude-*",)),
    ("GEMINI_API_KEY", "gemini", "gemini", ("gemini-*", "gemma-*", "text-embedding-004")),
)


def embedded_defaults(env: dict[str, str] | None = None, ollama_models: list[str] | None = None) -> Config:
    """Configuration from the environment alone: what ``sluice serve`` runs with no file."""
    env = dict(os.environ) if env is None else env
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for var, name, kind, patterns in _ENV_PROVIDERS:
        if env.get(var):
            providers[name] = {"kind": kind, "api_key": env[var]}
            for pattern in patterns:
                models[pattern] = {"deployments": [{"provider": name, "model": "*"}]}
    if ollama_models is not None:
        providers["ollama"] = {"kind": "ollama", "base_url": env.get("OLLAMA_BASE_URL", "http://localhost:11434/v1")}
        for m in ollama_models:
            models.setdefault(m, {"deployments": [{"provider": "ollama", "model": m}]})
    if not providers:
        providers["emulator"] = {"kind": "emulator"}
        models["demo"] = {
            "description": "Deterministic replies from the built-in provider emulator",
            "deployments": [{"provider": "emulator", "model": "demo"}],
        }
    server: dict[str, Any] = {}
    if env.get("SLUICE_MASTER_KEY"):
        server["master_key"] = env["SLUICE_MASTER_KEY"]
    return parse_config({"server": server, "providers": providers, "models": models}, "defaults")


DeploymentConfig.model_rebuild()
