"""Cost of Sluice's streaming pipeline without the network.

A recorded 20-event OpenAI stream body goes through SSE framing, decoding into canonical chunks,
priming to the first token, metering and re-encoding for an OpenAI client; prints microseconds
per call. Compare with the server CPU per streamed call in bench/run.py's report.

    .venv/bin/python bench/stream_pipeline.py
"""

from __future__ import annotations

import asyncio
import time

from sluice.api.http import encode_stream
from sluice.api.openai_dialect import ChunkEncoder
from sluice.gateway import Call, MeteredStream
from sluice.providers.http import _parse_events
from sluice.providers.openai import OpenAIStreamDecoder
from sluice.routing.router import PrimedStream, _read_to_first_token

_HEAD = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
_WORDS = ["Echo:", *"one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()]
BODY = b"".join([
    _HEAD + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
    *(_HEAD + b'[{"index":0,"delta":{"content":" %s"},"finish_reason":null}]}\n\n' % w.encode() for w in _WORDS),
    _HEAD + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    _HEAD + b'[],"usage":{"prompt_tokens":5,"completion_tokens":15,"total_tokens":20}}\n\n',
    b"data: [DONE]\n\n",
])


async def _upstream():
    """What ProviderClient.stream yields for one network read holding the whole body."""
    decoder, batch, start = OpenAIStreamDecoder("bench"), [], 0
    while (end := BODY.find(b"\n\n", start)) >= 0:
        for event in _parse_events(BODY[start:end]):
            batch.extend(decoder.feed(event))
        start = end + 2
    yield batch


async def one_call() -> list[bytes]:
    it = _upstream().__aiter__()
    stream = MeteredStream(PrimedStream(await _read_to_first_token(it), it), Call(request_id="r", dialect="openai"),
                           lambda: None)
    encoder = ChunkEncoder("id", "m", True)
    return [b async for b in encode_stream(stream, encoder.encode, encoder.close, lambda e: b"", "r")]


async def main(n: int = 5000) -> None:
    await one_call()
    started = time.perf_counter()
    for _ in range(n):
        await one_call()
    print(f"streaming pipeline: {(time.perf_counter() - started) / n * 1e6:.1f} µs per call (20 events)")


if __name__ == "__main__":
    asyncio.run(main())
