"""Runs one call against one deployment: adapter on each side of a pooled HTTP exchange."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable

import aiohttp
import orjson

from sluice.providers.base import ProviderAdapter, Upstream
from sluice.providers.http import HttpPool, Timeouts, read_sse, stream_broke
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, GatewayError


class ProviderClient:
    """A deployment's adapter, address and timeouts bound to the shared connection pool."""

    __slots__ = ("adapter", "upstream", "pool", "timeouts")

    def __init__(self, adapter: ProviderAdapter, upstream: Upstream, pool: HttpPool, timeouts: Timeouts) -> None:
        self.adapter = adapter
        self.upstream = upstream
        self.pool = pool
        self.timeouts = timeouts

    async def chat(self, req: ChatRequest, relay: str | None = None, ready: Awaitable[None] | None = None) -> ChatResponse:
        """``relay`` names the client's dialect: when the adapter can pass its answer to such a
        client as it is, the response carries it (``ChatResponse.raw``) instead of choices.
        ``ready``: awaited just before the request leaves (``HttpPool.send``)."""
        wire = self.adapter.chat_request(req, self.upstream)
        resp = await self.pool.send(self.upstream.provider, wire, self.timeouts, ready)
        if resp.status >= 400:
            raise self._error(resp.status, resp.body, resp.headers)
        if relay is not None and hasattr(self.adapter, "relay_response"):
            relayed = self.adapter.relay_response(relay, resp.body, self.upstream)
            if relayed is not None:
                return relayed
        return self.adapter.chat_response(_json(resp.body, self.upstream.provider), req, self.upstream)

    async def stream(self, req: ChatRequest, relay: str | None = None,
                     ready: Awaitable[None] | None = None) -> AsyncIterator[list[ChatChunk]]:
        """Yield canonical chunks in batches (one per network read); closing the iterator
        closes the upstream connection. ``relay`` names the client's dialect: when the adapter
        can pass its events to such a client as they are, batches are relay chunks
        (``sluice.providers.relay``). ``ready``: as for ``chat``."""
        wire = self.adapter.chat_request(req, self.upstream)
        resp, failed = await self.pool.open_stream(self.upstream.provider, wire, self.timeouts, ready)
        if failed is not None:
            raise self._error(failed.status, failed.body, failed.headers)
        relayer = self.adapter.relay(relay, req, self.upstream) if relay and hasattr(self.adapter, "relay") else None
        if relayer is not None:
            try:  # inline rather than another generator layer: this runs for every streamed call
                async for data in resp.content.iter_any():
                    batch = relayer.feed(data)
                    if batch:
                        yield batch
                tail = relayer.finish()
                if tail:
                    yield tail
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                raise stream_broke(self.upstream.provider, exc) from exc
            finally:
                resp.close()
            return
        decoder = self.adapter.stream_decoder(req, self.upstream)
        try:
            async for events in read_sse(resp, self.upstream.provider):
                batch: list[ChatChunk] = []
                for event in events:
                    batch.extend(decoder.feed(event))
                if batch:
                    yield batch
            tail = list(decoder.finish())
            if tail:
                yield tail
        finally:
            # Releasing an unfinished response closes its connection: the upstream sees the
            # client go away and stops generating.
            resp.close()

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        wire = self.adapter.embeddings_request(req, self.upstream)
        resp = await self.pool.send(self.upstream.provider, wire, self.timeouts)
        if resp.status >= 400:
            raise self._error(resp.status, resp.body, resp.headers)
        return self.adapter.embeddings_response(_json(resp.body, self.upstream.provider), req, self.upstream)

    async def moderations(self, payload: dict) -> dict:
        """An OpenAI-style moderation request (guardrails' ``endpoint`` backend)."""
        build = getattr(self.adapter, "moderations_request", None)
        if build is None:
            raise GatewayError("invalid_request", f"provider '{self.upstream.provider}' has no moderation endpoint")
        resp = await self.pool.send(self.upstream.provider, build(payload, self.upstream), self.timeouts)
        if resp.status >= 400:
            raise self._error(resp.status, resp.body, resp.headers)
        return _json(resp.body, self.upstream.provider)

    def _error(self, status: int, body: bytes, headers) -> GatewayError:
        err = self.adapter.error(status, body, headers)
        err.provider = self.upstream.provider
        return err


def _json(body: bytes, provider: str):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            "upstream_unavailable", f"upstream '{provider}' sent a response that is not JSON", status=502,
            provider=provider,
        ) from exc
