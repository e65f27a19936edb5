"""One Redis client per process, built from a URL, shared by the features that need Redis.

Keys are bytes (``decode_responses=False``): counters, cached responses and vectors are
binary, and each caller decodes what it knows to be text.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def redis_client(url: str, *, name: str | None = None, **overrides: Any) -> aioredis.Redis:
    """A pooled ``redis.asyncio.Redis``; ``name`` is set with CLIENT SETNAME (visible in CLIENT LIST).

    A short connect timeout makes an unreachable Redis fail fast instead of stalling a request;
    keepalive and periodic health checks notice a connection that died silently (e.g. a
    long-lived pub/sub subscription across a network partition). ``overrides`` go to
    ``Redis.from_url`` as they are (e.g. ``retry=`` for a connection that must not reconnect
    behind its owner's back).
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        client_name=name,
        **overrides,
    )


def key(prefix: str, *parts: str) -> str:
    """``<prefix>:<part>:<part>…``: every key a Sluice instance writes lives under its prefix."""
    return ":".join((prefix, *parts))


__all__ = ["key", "redis_client"]
