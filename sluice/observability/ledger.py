"""The usage ledger: one event per call, written in batches off the request path.

STUB — interface fixed by the lead; the implementation (bounded queue, batch writer, spill
file, replay, flush on shutdown) is being written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class UsageEvent(msgspec.Struct, kw_only=True):
    """What the gateway knows about one finished call (success, failure, block or cache hit)."""

    request_id: str
    ts: datetime  # UTC, when the call started
    dialect: str  # "openai" | "anthropic"
    endpoint: str  # "chat" | "embeddings"
    model: str  # alias the client asked for
    status: int  # HTTP status the client got; 499 when the client went away mid-stream
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    end_user: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    provider: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error_type: str | None = None  # GatewayError.kind
    attempts: int = 1
    fallback: bool = False
    # Filled by the ledger from the price table (or the deployment's override) before writing.
    cost_usd: float = 0.0
    cost_unknown: bool = False
    # The deployment's price override (config PricingConfig) for the ledger to price with; not stored.
    pricing: Any = None
