"""Faults and latency: the model-name directive grammar, control-API rules, and the plan.

Grammar (see the package docstring)::

    model      := base ( "+" directive )*
    directive  := key "=" value
    key        := fail | retry_after | fail_rate | fail_first | latency | chunk_delay | cut | stall
                | slow | slow_rate

A request's :class:`Plan` is the model's directives, overridden key by key by the first
matching control-API rule, on top of the server's startup options.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any

_INT_KEYS = {"fail", "fail_first", "cut"}
_FLOAT_KEYS = {"retry_after", "fail_rate", "latency", "chunk_delay", "stall", "slow", "slow_rate"}
KEYS = _INT_KEYS | _FLOAT_KEYS


class DirectiveError(ValueError):
    """A malformed directive; the mock answers 400 in the request's dialect."""


@dataclass(slots=True)
class Fault:
    """Fault settings; ``None`` means "not set" so rules and directives can be layered."""

    fail: int | None = None  # HTTP status to answer with
    retry_after: float | None = None  # seconds, sent as Retry-After on failures
    fail_rate: float | None = None  # fraction of requests that fail, deterministic
    fail_first: int | None = None  # the first N requests fail, then succeed
    latency: float | None = None  # ms before the first byte
    chunk_delay: float | None = None  # ms between stream chunks
    cut: int | None = None  # close the connection after N stream chunks
    stall: float | None = None  # ms pause after the first stream chunk
    slow: float | None = None  # extra ms before the first byte on a `slow_rate` share of requests
    slow_rate: float | None = None  # which requests are slow: spread evenly, like fail_rate

    def overlay(self, other: "Fault") -> "Fault":
        merged = Fault()
        for f in fields(Fault):
            value = getattr(other, f.name)
            setattr(merged, f.name, value if value is not None else getattr(self, f.name))
        return merged

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(Fault))


def parse_fault(items: dict[str, Any]) -> Fault:
    fault = Fault()
    for key, raw in items.items():
        if key not in KEYS:
            raise DirectiveError(f"unknown mock directive {key!r}; known: {', '.join(sorted(KEYS))}")
        try:
            value: Any = int(raw) if key in _INT_KEYS else float(raw)
        except (TypeError, ValueError):
            raise DirectiveError(f"mock directive {key}={raw!r} is not a number") from None
        if key == "fail" and not 400 <= value <= 599:
            raise DirectiveError(f"mock directive fail={value}: status must be 400..599")
        if key in ("fail_rate", "slow_rate") and not 0 <= value <= 1:
            raise DirectiveError(f"mock directive {key}={value}: must be within 0..1")
        if value < 0:
            raise DirectiveError(f"mock directive {key}={value} must not be negative")
        setattr(fault, key, value)
    return fault


_cache: dict[str, tuple[str, Fault]] = {}


def parse_model(model: str) -> tuple[str, Fault]:
    """Split ``"base+fail=429+retry_after=2"`` into the base name and its Fault (cached)."""
    hit = _cache.get(model)
    if hit is not None:
        return hit
    base, _, rest = model.partition("+")
    items: dict[str, str] = {}
    for part in rest.split("+") if rest else ():
        key, sep, value = part.partition("=")
        if not sep:
            raise DirectiveError(f"mock directive {part!r} must look like key=value")
        items[key.strip()] = value.strip()
    result = (base, parse_fault(items))
    if len(_cache) < 4096:
        _cache[model] = result
    return result


_rule_ids = itertools.count(1)


@dataclass(slots=True)
class FaultRule:
    """A control-API rule: applies to matching requests, ``count`` times (None: forever)."""

    fault: Fault
    model: str | None = None  # matches the full model name or its base
    format: str | None = None  # "openai" | "azure" | "anthropic" | "gemini" | "tgi"
    count: int | None = None
    id: int = field(default_factory=lambda: next(_rule_ids))
    hits: int = 0

    def matches(self, model: str, base: str, fmt: str) -> bool:
        if self.format is not None and self.format != fmt:
            return False
        return self.model is None or self.model in (model, base)

    def describe(self) -> dict[str, Any]:
        fault = {f.name: getattr(self.fault, f.name) for f in fields(Fault) if getattr(self.fault, f.name) is not None}
        return {"id": self.id, "model": self.model, "format": self.format, "count": self.count, "hits": self.hits, "fault": fault}


def rule_from_json(body: Any) -> FaultRule:
    if not isinstance(body, dict):
        raise DirectiveError("a fault rule must be a JSON object")
    spec = body.get("fault")
    if isinstance(spec, str):
        _, fault = parse_model("x+" + spec)
    elif isinstance(spec, dict):
        fault = parse_fault(spec)
    else:
        raise DirectiveError("'fault' must be an object like {\"fail\": 429} or a string like \"fail=429+retry_after=2\"")
    count = body.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise DirectiveError("'count' must be a positive integer")
    return FaultRule(fault=fault, model=body.get("model"), format=body.get("format"), count=count)


@dataclass(slots=True)
class Plan:
    """What to do with one request, in milliseconds and counts."""

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    fail_status: int | None = None
    retry_after: float | None = None
    cut: int | None = None
    stall_ms: float = 0.0


def should_fail(fault: Fault, seq: int) -> bool:
    """Whether request number ``seq`` (1-based, per model name) fails under ``fault``.

    ``fail_rate`` spreads failures evenly: request k fails when floor(k*rate) steps up,
    so rate 0.5 fails requests 2, 4, 6, ... deterministically.
    """
    if fault.fail_first is not None:
        if seq <= fault.fail_first:
            return True
        if fault.fail_rate is None:
            return False
    if fault.fail_rate is not None:
        return int(seq * fault.fail_rate) > int((seq - 1) * fault.fail_rate)
    return fault.fail is not None


def make_plan(fault: Fault, seq: int, latency_ms: float, chunk_delay_ms: float) -> Plan:
    plan = Plan(
        latency_ms=fault.latency if fault.latency is not None else latency_ms,
        chunk_delay_ms=fault.chunk_delay if fault.chunk_delay is not None else chunk_delay_ms,
        cut=fault.cut,
        stall_ms=fault.stall or 0.0,
    )
    if fault.slow and fault.slow_rate and int(seq * fault.slow_rate) > int((seq - 1) * fault.slow_rate):
        plan.latency_ms += fault.slow  # a tail-latency outlier: deterministic, every 1/rate-th request
    if should_fail(fault, seq):
        plan.fail_status = fault.fail or 500
        plan.retry_after = fault.retry_after
    return plan
