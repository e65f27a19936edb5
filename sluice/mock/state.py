"""Server-wide state: startup options, received-request log, counters and fault rules."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from sluice.mock.faults import Fault, FaultRule, Plan, make_plan, parse_model

DEFAULT_MODELS = ["mock-model", "mock-gpt", "mock-claude", "mock-gemini", "mock-embedding"]

# Header and query names whose values are secrets: never stored, never shown.
_SECRET_HEADERS = {"authorization", "api-key", "x-api-key", "x-goog-api-key", "proxy-authorization", "cookie"}
_SECRET_QUERY = {"key", "api_key", "api-key"}
REDACTED = "[redacted]"


@dataclass
class MockOptions:
    """Startup options (also the ``sluice mock`` flags)."""

    latency_ms: float = 0.0  # before the first byte of every response
    chunk_delay_ms: float = 0.0  # between stream chunks
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    embedding_dims: int = 1536  # when the request does not ask for a size
    record_requests: bool = True  # keep a log for GET /_mock/requests
    max_recorded: int = 1000
    require_known_model: bool = False  # answer 404 for models not in ``models``
    # A Set-Cookie on OpenAI chat answers, as the CDN edge in front of the real APIs sends one
    # (Cloudflare's __cf_bm): clients must not carry it from one caller's call to another's.
    edge_cookie: bool = False


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k): (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def redact_query(query: Mapping[str, str]) -> dict[str, str]:
    return {str(k): (REDACTED if k.lower() in _SECRET_QUERY else v) for k, v in query.items()}


class MockState:
    def __init__(self, options: MockOptions) -> None:
        self.options = options
        self.log: deque[dict[str, Any]] = deque(maxlen=options.max_recorded)
        self.counters: dict[str, int] = {}
        self.rules: list[FaultRule] = []
        self._seq: dict[str, int] = {}
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def record(self, request: Any, fmt: str, model: str | None, body: Any) -> dict[str, Any] | None:
        """Remember what arrived, secrets redacted; counters are kept even when logging is off.

        Returns the log entry so a streaming answer can add how it ended ("outcome").
        """
        if model is not None:
            self.counters[model] = self.counters.get(model, 0) + 1
        if not self.options.record_requests:
            return None
        entry = {
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                "query": redact_query(request.query),
                "format": fmt,
                "model": model,
                "headers": redact_headers(request.headers),
                "body": body,
            }
        self.log.append(entry)
        return entry

    def plan(self, model: str, fmt: str) -> Plan:
        """The fault/latency plan for one (valid) request. Raises DirectiveError."""
        base, fault = parse_model(model)
        rule = self._take_rule(model, base, fmt)
        if rule is not None:
            fault = fault.overlay(rule)
        seq = self._seq.get(model, 0) + 1
        self._seq[model] = seq
        return make_plan(fault, seq, self.options.latency_ms, self.options.chunk_delay_ms)

    def _take_rule(self, model: str, base: str, fmt: str) -> Fault | None:
        if not self.rules:
            return None
        for rule in self.rules:
            if rule.matches(model, base, fmt):
                rule.hits += 1
                if rule.count is not None and rule.hits >= rule.count:
                    self.rules.remove(rule)
                return rule.fault
        return None

    def reset_requests(self) -> None:
        self.log.clear()
        self.counters.clear()
        self._seq.clear()
