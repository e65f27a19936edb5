"""The response cache's cost and gain: Sluice without the cache, with it on misses, with it on hits.

    .venv/bin/python bench/cache.py --duration 6

Every request sets temperature 0 (cacheable). "miss": each request's prompt is unique (a wrk
script numbers them), so every call looks up, misses, calls the upstream and stores. "hit": one
identical request repeated. Writes a Markdown table to stdout; figures go in docs/caching.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import servers  # noqa: E402
from run import LAYOUTS, PROMPT, cpu_seconds  # noqa: E402
from wrk_driver import lua_script, run_wrk, unique_body_script  # noqa: E402


def payload(prompt: str) -> bytes:
    return orjson.dumps({"model": "bench", "temperature": 0, "messages": [{"role": "user", "content": prompt}]})


def measure(proc: servers.Proc, script: str, conns: int, duration: float, cpus) -> dict:
    cpu0 = cpu_seconds(proc.popen.pid)
    res = run_wrk(proc.url + "/v1/chat/completions", script, conns, duration, cpus=cpus).as_dict()
    res["cpu_us"] = (cpu_seconds(proc.popen.pid) - cpu0) / max(res["requests"], 1) * 1e6
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--connections", default="1,32")
    args = p.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    client_cpus, upstream_cpus, server_cpus, _ = LAYOUTS["split"]
    os.sched_setaffinity(0, client_cpus)
    logdir = Path(tempfile.mkdtemp(prefix="sluice-bench-cache-"))
    upstream = servers.start_upstream(logdir, upstream_cpus)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, cache in (("no cache", False), ("cache miss", True), ("cache hit", True)):
                os.environ.pop("BENCH_CACHE", None)
                if cache:
                    os.environ["BENCH_CACHE"] = "1"
                proc = servers.start_sluice(upstream, logdir, server_cpus, access_log=False,
                                            name=label.replace(" ", "-"))
                try:
                    for c in conns:
                        if label == "cache miss":
                            nonce = secrets.token_hex(4)
                            body = payload(f"{PROMPT} #{nonce}-@@").decode()
                            prefix, suffix = body.split("@@")
                            script = unique_body_script(prefix.encode(), suffix.encode(), tmp)
                        else:
                            script = lua_script(payload(PROMPT), tmp)
                        run_wrk(proc.url + "/v1/chat/completions", script, c, 1, cpus=client_cpus)  # warm-up
                        res = measure(proc, script, c, args.duration, client_cpus)
                        rows.append((label, c, res))
                        print(f"  {label:11} c={c:<3} {res['rps']:8,.0f} req/s  p50 {res['p50_ms']:.2f} ms  "
                              f"p99 {res['p99_ms']:.2f} ms  cpu {res['cpu_us']:.0f} µs/req  errors {res['errors']}",
                              flush=True)
                finally:
                    proc.stop()
                    credentials.TOKEN = "x"
    finally:
        upstream.stop()
    print("\n| setup | conns | req/s | p50 ms | p99 ms | server CPU µs/req |\n|---|---:|---:|---:|---:|---:|")
    for label, c, r in rows:
        print(f"| {label} | {c} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us']:.0f} |")
    by = {(label, c): r for label, c, r in rows}
    top = max(conns)
    print(f"\nhit / miss req/s at c={top}: {by[('cache hit', top)]['rps'] / by[('cache miss', top)]['rps']:.2f}x "
          f"(target >= 2x)")
    low = min(conns)
    print(f"miss p50 - no-cache p50 at c={low}: "
          f"{by[('cache miss', low)]['p50_ms'] - by[('no cache', low)]['p50_ms']:+.3f} ms (target <= 0.3 ms)")


if __name__ == "__main__":
    main()
