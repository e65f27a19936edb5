"""The provider interface: pure translation between canonical types and one wire dialect.

An adapter never performs I/O. ``sluice.providers.client`` runs the HTTP exchange with the
pooled client from ``sluice.providers.http`` and calls the adapter on each side of it, so
every adapter is tested with recorded wire examples and no network.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

import msgspec

from sluice.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    GatewayError,
)


class Upstream(msgspec.Struct, kw_only=True):
    """Everything an adapter needs to address one deployment: account, endpoint and model."""

    provider: str  # provider name in the config, e.g. "openai" or "azure-eu"
    kind: str  # adapter kind, e.g. "openai", "azure", "anthropic", "gemini", "tgi"
    base_url: str
    model: str  # the upstream's model name (for Azure: the deployment name)
    api_key: str | None = None
    api_version: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    # Per-deployment request parameters: defaults applied when the client did not set them.
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    # Kind-specific options declared in the config (e.g. {"organization": ...}).
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class WireRequest(msgspec.Struct, kw_only=True):
    url: str
    headers: dict[str, str]
    body: Any  # JSON-serialisable
    method: str = "POST"


class SSEEvent(msgspec.Struct, kw_only=True):
    data: str
    event: str | None = None


class StreamDecoder(Protocol):
    """Stateful reader of one upstream stream; one instance per call."""

    def feed(self, event: SSEEvent) -> Iterable[ChatChunk]:
        """Chunks for one upstream event. Raises GatewayError for an in-stream error event."""

    def finish(self) -> Iterable[ChatChunk]:
        """Chunks owed when the upstream stream ended (e.g. a final usage chunk)."""


class ProviderAdapter(Protocol):
    kind: str

    def chat_request(self, req: ChatRequest, up: Upstream) -> WireRequest: ...

    def chat_response(self, payload: Any, req: ChatRequest, up: Upstream) -> ChatResponse: ...

    def stream_decoder(self, req: ChatRequest, up: Upstream) -> StreamDecoder: ...

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...

    def embeddings_request(self, req: EmbeddingRequest, up: Upstream) -> WireRequest: ...

    def embeddings_response(self, payload: Any, req: EmbeddingRequest, up: Upstream) -> EmbeddingResponse: ...


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or HTTP date) or ``retry-after-ms``."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    import time

    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def decode_error_body(body: bytes) -> Any:
    """The upstream's error payload as JSON if it is JSON, else its text."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()


def unsupported(kind: str, what: str) -> GatewayError:
    return GatewayError("invalid_request", f"provider kind '{kind}' does not support {what}")
