"""The limits stage alone: admit and settle, many callers at once, as a gateway would run them.

A key with rpm and tpm limits reserves and settles ``--calls`` times from 32 concurrent callers,
on the in-process limiter or on a real Redis; ``none`` runs the same callers doing nothing, the
harness's own cost. It prints the process CPU per call. Wall-clock figures on a shared VM drift by
±10%, so compare builds by instructions, which do not: run it under callgrind twice, with 0 calls
and with N, and divide the difference by N (the warm-up is the same in both):

    .venv/bin/python bench/limits_stage.py redis --calls 64000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/limits_stage.py redis --calls 0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/limits_stage.py redis --calls 16000

``--profile`` prints where the time goes (cProfile; it inflates small functions).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluice.config import LimitsConfig  # noqa: E402
from sluice.policies.limits import Demand, Limits  # noqa: E402
from sluice.policies.ratelimit import LocalLimiter  # noqa: E402
from sluice.store.ratelimit_redis import RedisLimiter  # noqa: E402
from sluice.store.resp import PipelinedRedis  # noqa: E402

CALLERS = 32
LIMITS = {"rpm": 100_000_000, "tpm": 1_000_000_000}


class Caller:
    """A key's principal as the limits stage sees it."""

    key_id = "key_bench"
    limits = (("key", "key_bench", LIMITS),)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["local", "redis", "none"])
    p.add_argument("--calls", type=int, default=64_000)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    p.add_argument("--prefix", default="bench-stage", help="the Redis keys' prefix")
    p.add_argument("--profile", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    client = None
    if args.mode == "redis":
        client = PipelinedRedis(args.redis_url)
        limits = Limits(RedisLimiter(client, args.prefix, timeout=2.0), LimitsConfig(), shared=True)
    else:
        limits = Limits(LocalLimiter(), LimitsConfig())
    caller = Caller()

    async def calls(n: int) -> None:
        for _ in range(n):
            if args.mode == "none":
                await asyncio.sleep(0)
                continue
            if args.mode == "redis":
                admission = await limits.admit(caller, None, (), Demand("bench", 30, 4096))
            else:
                admission = limits.admit_now(caller, None, "bench", lambda hint: (30, 4096))
            admission.settle_nowait(30, 20, None)  # the call used 20 of the 4,096 output tokens reserved
            await asyncio.sleep(0)  # the rest of the call: other callers run

    await asyncio.gather(*(calls(200) for _ in range(CALLERS)))  # warm up: connect, load the script
    profile = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profile:
        profile.enable()
    await asyncio.gather(*(calls(args.calls // CALLERS) for _ in range(CALLERS)))
    if profile:
        profile.disable()
    spent = time.process_time() - started
    if args.calls:
        print(f"{args.mode}: {spent / args.calls * 1e6:.2f} µs of CPU per call (admit + settle)")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if args.mode == "redis":
        await limits.limiter.drain()  # type: ignore[attr-defined]
        await client.aclose()  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        uvloop = None
    if uvloop is not None:
        uvloop.install()
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
