"""Hedged requests: a slow first attempt gets a second one on another deployment; the first answer wins."""

from __future__ import annotations

import asyncio
import statistics
import time

from sluice.mock import expected_text_reply

from .test_identity_ledger import _rows

HI = [{"role": "user", "content": "hi"}]


async def test_slow_primary_is_hedged_and_the_loser_cancelled(oai, upstream_log, pg_url):
    started = time.monotonic()
    stream = await oai.chat.completions.with_raw_response.create(model="hedged", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text == expected_text_reply("hi")
    assert time.monotonic() - started < 0.6  # not the primary's 800 ms
    assert stream.headers["x-sluice-hedged"] == "true" and stream.headers["x-sluice-deployment"] == "sprinter"
    assert stream.headers["x-sluice-attempts"] == "2"
    await asyncio.sleep(1.0)  # past the primary's think time
    slow = [r for r in await upstream_log() if r["body"]["model"].startswith("gpt-4o-mini+latency=800")]
    assert slow and slow[-1]["outcome"] == "client_gone"  # the losing attempt was cancelled upstream
    rid = stream.headers["x-request-id"]
    rows = await _rows(pg_url, [rid, f"{rid}/hedge"])  # both attempts are in the ledger
    assert rows[rid].deployment == "sprinter" and rows[rid].route == "hedged" and rows[rid].attempts == 2
    loser = rows[f"{rid}/hedge"]
    assert (loser.deployment, loser.status, loser.error_type) == ("slowpoke", 499, "hedge_lost")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_hedging_cuts_tail_latency(oai, capsys):
    """A deployment slow on 10% of requests: p99 with and without hedging (printed for the record)."""
    figures = {}
    for alias in ("tail", "tail-hedged"):
        times = []
        for _ in range(40):
            started = time.monotonic()
            resp = await oai.chat.completions.create(model=alias, messages=HI)
            times.append((time.monotonic() - started) * 1000)
            assert resp.choices[0].message.content == expected_text_reply("hi")
        figures[alias] = (statistics.median(times), _pct(times, 0.99))
    with capsys.disabled():
        for alias, (p50, p99) in figures.items():
            print(f"\n  hedging {alias:12} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    assert figures["tail"][1] >= 400  # the slow tenth shows without hedging
    assert figures["tail-hedged"][1] < 250  # and is cut with it
