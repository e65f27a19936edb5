"""Cost of Sluice's streaming pipeline without the network.

A recorded 20-event OpenAI stream body goes through SSE framing, decoding into canonical chunks,
priming to the first token, metering and re-encoding for an OpenAI client — and, for an OpenAI
client of an OpenAI-compatible upstream, through the same-dialect relay instead of decoding and
re-encoding; prints microseconds per call for both. Compare with the server CPU per streamed
call in bench/run.py's report.

    .venv/bin/python bench/stream_pipeline.py
"""

from __future__ import annotations

import asyncio
import time

from sluice.api.http import SSEResponse
from sluice.api.openai_dialect import ChunkEncoder
from sluice.call_streams import MeteredStream
from sluice.gateway import Call
from sluice.providers.http import parse_events
from sluice.providers.openai import OpenAIStreamDecoder, _wire_finish
from sluice.providers.relay import OpenAIRelay
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
        for event in parse_events(BODY[start:end]):
            batch.extend(decoder.feed(event))
        start = end + 2
    yield batch


async def _relayed():
    """The same read through the same-dialect relay."""
    relay = OpenAIRelay(OpenAIStreamDecoder("bench"), _wire_finish)
    yield relay.feed(BODY)


async def one_call(source=_upstream) -> list[bytes]:
    it = source().__aiter__()
    stream = MeteredStream(PrimedStream(await _read_to_first_token(it), it), Call(request_id="r", dialect="openai"),
                           lambda: None)
    encoder = ChunkEncoder("id", "m", True)
    sent: list[bytes] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    await SSEResponse(stream, encoder.encode, encoder.close, lambda e: b"", "r")({}, None, send)
    return sent


async def main(n: int = 5000) -> None:
    for name, source in (("decode + re-encode", _upstream), ("same-dialect relay", _relayed)):
        await one_call(source)
        started = time.perf_counter()
        for _ in range(n):
            await one_call(source)
        print(f"streaming pipeline, {name}: {(time.perf_counter() - started) / n * 1e6:.1f} µs per call (20 events)")


if __name__ == "__main__":
    asyncio.run(main())
