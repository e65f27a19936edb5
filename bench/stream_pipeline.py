"""Cost of Sluice's streaming pipeline without the network: a recorded 20-event OpenAI stream body goes
through SSE framing, decoding, canonical chunks, metering and re-encoding; prints microseconds per call.

    .venv/bin/python bench/stream_pipeline.py
"""
import asyncio, time, orjson
from sluice.providers.http import _parse_events
from sluice.providers.openai import OpenAIStreamDecoder
from sluice.api.openai_dialect import ChunkEncoder
from sluice.api.http import encode_stream
from sluice.routing.router import PrimedStream, _read_to_first_token
from sluice.gateway import MeteredStream, Call

words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()
events = [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
events += [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n' % (" "+w).encode() for w in ["Echo:"]+words]
events += [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":15,"total_tokens":20}}\n\n', b'data: [DONE]\n\n']
body = b"".join(events)

async def client_stream():
    dec = OpenAIStreamDecoder("p")
    buf = body
    batch = []
    start = 0
    while True:
        end = buf.find(b"\n\n", start)
        if end < 0: break
        for ev in _parse_events(buf[start:end]): batch.extend(dec.feed(ev))
        start = end + 2
    yield batch

async def one():
    it = client_stream().__aiter__()
    head = await _read_to_first_token(it)
    primed = PrimedStream(head, it)
    call = Call(request_id="r", dialect="openai")
    ms = MeteredStream(primed, call, lambda: None)
    enc = ChunkEncoder("id", "m", True)
    out = []
    async for b in encode_stream(ms, enc.encode, enc.close, lambda e: b"", "r"):
        out.append(b)
    return out

async def main():
    N = 5000
    await one()
    t = time.perf_counter()
    for _ in range(N): await one()
    print("pipeline us/call", (time.perf_counter() - t) / N * 1e6)
asyncio.run(main())
import cProfile, pstats
async def prof():
