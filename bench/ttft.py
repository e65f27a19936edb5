"""Time to first byte and first token of streamed chat completions, one request at a time.

wrk only sees whole responses; a streaming client cares when the first token arrives. This
client sends sequential ``"stream": true`` requests and notes, for each, when the first body
bytes arrive (TTFB), when the first SSE event carrying delta content arrives (TTFT) and when the
stream ends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

import credentials
import orjson


@dataclass
class StreamTimes:
    ttfb_ms: list[float]
    ttft_ms: list[float]
    total_ms: list[float]


def _has_content(line: bytes) -> bool:
    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
        return False
    event = orjson.loads(line[6:])
    choices = event.get("choices") or ()
    return any((c.get("delta") or {}).get("content") for c in choices)


async def _one(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    ttfb = ttft = None
    done = False
    async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                     "Authorization": f"Bearer {credentials.TOKEN}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
        async for line in resp.content:
            now = time.perf_counter()
            if ttfb is None:
                ttfb = now
            if ttft is None and _has_content(line):
                ttft = now
            if line.startswith(b"data: [DONE]"):
                done = True
    end = time.perf_counter()
    if ttft is None or not done:
        raise RuntimeError(f"{url}: the stream had no content or no [DONE]")
    return (ttfb - t0) * 1000, (ttft - t0) * 1000, (end - t0) * 1000


async def measure(url: str, body: bytes, count: int, warmup: int = 20) -> StreamTimes:
    times = StreamTimes([], [], [])
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(warmup + count):
            ttfb, ttft, total = await _one(session, url, body)
            if i >= warmup:
                times.ttfb_ms.append(ttfb)
                times.ttft_ms.append(ttft)
                times.total_ms.append(total)
    return times


def run(url: str, body: bytes, count: int) -> StreamTimes:
    return asyncio.run(measure(url, body, count))
