"""Benchmark Sluice against its upstream called directly and against a bare pass-through proxy.

    .venv/bin/python bench/run.py                      # everything, ~4 minutes
    .venv/bin/python bench/run.py --duration 5 --only sluice,bare,direct --connections 1,32

Each server is one process with one worker. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
import ttft  # noqa: E402
from wrk_driver import lua_script, run_wrk  # noqa: E402

TARGETS = ("direct", "bare", "sluice", "sluice-log")
MODES = ("json", "stream")
# A 14-word prompt: the emulator echoes it, so a stream carries ~15 content events plus role,
# finish and [DONE] — the shape of a short real answer.
PROMPT = "Please summarise the quarterly report for the board in three short paragraphs with numbers"
LAYOUTS = {
    # CPU 0: load generator and emulator; CPU 1: the server under test, alone.
    "split": ({0}, {0}, {1}, "wrk, TTFT client and emulator on CPU 0; server under test alone on CPU 1"),
    # CPU 0: load generator; CPU 1: emulator and server under test together.
    "client": ({0}, {1}, {1}, "wrk and TTFT client on CPU 0; emulator and server under test on CPU 1"),
    "none": (None, None, None, "no pinning"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", default="1,32", help="comma-separated wrk concurrencies (default 1,32)")
    p.add_argument("--only", default="", help=f"comma-separated subset of targets {TARGETS} and/or modes {MODES}")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="results directory")
    p.add_argument("--ttft-requests", type=int, default=300, help="sequential streamed requests for TTFT (0: skip)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="split", help="CPU pinning (default split)")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0,
                   help="emulator's delay between streamed chunks (default 0: the proxies' cost per event shows)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up per server (default 2)")
    return p.parse_args(argv)


def selection(only: str) -> tuple[list[str], list[str]]:
    items = [x.strip() for x in only.split(",") if x.strip()]
    unknown = [x for x in items if x not in TARGETS and x not in MODES]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; choose from {TARGETS + MODES}")
    targets = [t for t in TARGETS if t in items] or list(TARGETS)
    modes = [m for m in MODES if m in items] or list(MODES)
    return targets, modes


def body(model: str, stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": servers.python_version(), "kernel": platform.release()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _check(url: str, model: str) -> None:
    """One plain and one streamed request must succeed before any load is measured."""
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body(model, False), headers={"Content-Type": "application/json",
                                                                 "Authorization": f"Bearer {credentials.TOKEN}"}) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url}: HTTP {r.status}: {data[:300]!r}")
            text = orjson.loads(data)["choices"][0]["message"]["content"]
            if not text.startswith("Echo:"):
                raise RuntimeError(f"{url}: unexpected reply {text!r}")
    await ttft.measure(url, body(model, True), count=1, warmup=0)


def measure_target(name: str, url: str, model: str, server_pid: int | None, args: argparse.Namespace,
                   modes: list[str], conns: list[int], client_cpus: set[int] | None, tmp: str) -> dict[str, Any]:
    import asyncio

    asyncio.run(_check(url, model))
    scripts = {m: lua_script(body(model, m == "stream"), tmp) for m in modes}
    if args.warmup > 0:
        run_wrk(url, scripts[modes[0]], max(conns), args.warmup, cpus=client_cpus)
    out: dict[str, Any] = {"url": url, "model": model, "wrk": {}}
    for mode in modes:
        out["wrk"][mode] = {}
        for conc in conns:
            cpu0 = cpu_seconds(server_pid) if server_pid else None
            res = run_wrk(url, scripts[mode], conc, args.duration, cpus=client_cpus).as_dict()
            if server_pid:
                res["server_cpu_us_per_req"] = (cpu_seconds(server_pid) - cpu0) / max(res["requests"], 1) * 1e6
            out["wrk"][mode][str(conc)] = res
            print(f"  {name:10} {mode:6} c={conc:<3} {res['rps']:8,.0f} req/s  p50 {res['p50_ms']:6.2f} ms  "
                  f"p99 {res['p99_ms']:6.2f} ms  errors {res['errors']}", flush=True)
            if res["errors"]:
                print(f"  WARNING: {res['errors']} wrk errors for {name} {mode} c={conc}", flush=True)
    if args.ttft_requests > 0 and "stream" in modes:
        out["ttft"] = _ttft(url, model, args.ttft_requests)
        t = out["ttft"]
        print(f"  {name:10} TTFT   c=1   p50 {t['ttft_p50_ms']:6.2f} ms  p99 {t['ttft_p99_ms']:6.2f} ms", flush=True)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ttft(url: str, model: str, count: int) -> dict[str, Any]:
    t = ttft.run(url, body(model, True), count)
    return {"requests": count,
            "ttfb_p50_ms": statistics.median(t.ttfb_ms), "ttfb_p99_ms": _pct(t.ttfb_ms, 0.99),
            "ttft_p50_ms": statistics.median(t.ttft_ms), "ttft_p99_ms": _pct(t.ttft_ms, 0.99),
            "total_p50_ms": statistics.median(t.total_ms), "total_p99_ms": _pct(t.total_ms, 0.99)}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    targets, modes = selection(args.only)
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    client_cpus, upstream_cpus, server_cpus, note = LAYOUTS[args.layout]
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # this process runs the TTFT client
    out_dir = Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = out_dir / f"logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": stamp, "machine": machine(), "duration_s": args.duration,
                               "connections": conns, "modes": modes, "layout": args.layout, "layout_note": note,
                               "prompt": PROMPT, "chunk_delay_ms": args.chunk_delay_ms, "targets": {}}
    upstream = servers.start_upstream(logdir, upstream_cpus, args.chunk_delay_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in targets:
                results["targets"][name] = _one_target(name, upstream, logdir, server_cpus, client_cpus,
                                                       args, modes, conns, tmp)
    finally:
        upstream.stop()
    report.added_latency(results)
    results["verdicts"] = report.verdicts(results)
    return results


def _one_target(name: str, upstream: servers.Proc, logdir: Path, server_cpus: set[int] | None,
                client_cpus: set[int] | None, args: argparse.Namespace, modes: list[str], conns: list[int],
                tmp: str) -> dict[str, Any]:
    print(f"== {report.LABELS[name]}", flush=True)
    credentials.TOKEN = "x"
    if name == "direct":
        url = upstream.url + "/v1/chat/completions"
        return measure_target(name, url, "bench-model", upstream.popen.pid, args, modes, conns, client_cpus, tmp)
    if name == "bare":
        proc = servers.start_bare(upstream, logdir, server_cpus)
        model = "bench-model"
    else:
        proc = servers.start_sluice(upstream, logdir, server_cpus, access_log=(name == "sluice-log"), name=name)
        model = "bench"
    try:
        return measure_target(name, proc.url + "/v1/chat/completions", model, proc.popen.pid, args, modes, conns,
                              client_cpus, tmp)
    finally:
        proc.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = run_all(args)
    out_dir = Path(args.out)
    json_path = out_dir / f"bench-{results['started']}.json"
    md_path = out_dir / f"bench-{results['started']}.md"
    json_path.write_text(json.dumps(results, indent=2))
    md = report.markdown(results)
    md_path.write_text(md)
    print()
    print(md)
    print(f"results: {json_path}\n         {md_path}")


if __name__ == "__main__":
    main()
