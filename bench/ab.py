"""Compare Sluice builds or settings with the bare proxy, interleaved, in one run.

This machine's speed drifts by ±10% within minutes, and Sluice's figures drift more than the bare
proxy's, so two full ``bench/run.py`` runs cannot tell a 5 µs change from noise. This script starts
one emulator, the bare proxy and every Sluice variant side by side (servers on CPU 1, the
emulator and wrk on CPU 0), then runs rounds of wrk at concurrency 32 against each server in
turn, and prints medians: requests/s, the share of the bare proxy's, and server CPU per call.

    .venv/bin/python bench/ab.py --rounds 6 --seconds 4 new= \\
        old='{"BENCH_SLUICE_CMD": "bench/sluice_at.sh /tmp/base"}' \\
        limits='{"BENCH_KEY_LIMITS": "{\\"rpm\\": 100000000, \\"tpm\\": 1000000000}"}'

Each variant is ``name=`` followed by a JSON object of the ``BENCH_*`` environment variables of
``bench/servers.py`` for that Sluice (empty: this checkout as configured). ``bench/sluice_at.sh DIR``
runs the Sluice of another checkout (a ``git worktree``) with this checkout's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import servers  # noqa: E402
from run import body, cpu_seconds  # noqa: E402
from wrk_driver import lua_script, run_wrk  # noqa: E402

SERVER_CPUS, CLIENT_CPUS = {1}, {0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    p.add_argument("--modes", default="json,stream")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("variants", nargs="+", help='name=JSON-environment, e.g. new= or old=\'{"BENCH_SLUICE_CMD": …}\'')
    return p.parse_args(argv)


def variants(specs: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for spec in specs:
        name, _, env = spec.partition("=")
        if not name or name == "bare":
            raise SystemExit(f"bad variant name in {spec!r}")
        out[name] = json.loads(env) if env else {}
    return out


def start_all(wanted: dict[str, dict[str, str]], logdir: Path) -> tuple[servers.Proc, dict]:
    upstream = servers.start_upstream(logdir, CLIENT_CPUS)
    procs = {"bare": (servers.start_bare(upstream, logdir, SERVER_CPUS), "x", "bench-model")}
    saved = dict(os.environ)
    try:
        for name, env in wanted.items():
            os.environ.clear()
            os.environ.update(saved)
            os.environ.update(env)
            proc = servers.start_sluice(upstream, logdir, SERVER_CPUS, access_log=False, name=name)
            procs[name] = (proc, credentials.TOKEN, "bench")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return upstream, procs


def measure(procs: dict, args: argparse.Namespace, modes: list[str], tmp: str) -> dict:
    results: dict = {(name, mode): [] for name in procs for mode in modes}
    for name, (proc, token, model) in procs.items():  # warm every server up first
        credentials.TOKEN = token
        for mode in modes:
            run_wrk(proc.url + "/v1/chat/completions", lua_script(body(model, mode == "stream"), tmp),
                    args.connections, 1.5, cpus=CLIENT_CPUS)
    for i in range(args.rounds):
        for name, (proc, token, model) in procs.items():
            credentials.TOKEN = token
            for mode in modes:
                script = lua_script(body(model, mode == "stream"), tmp)
                before = cpu_seconds(proc.popen.pid)
                res = run_wrk(proc.url + "/v1/chat/completions", script, args.connections, args.seconds,
                              cpus=CLIENT_CPUS).as_dict()
                cpu = (cpu_seconds(proc.popen.pid) - before) / max(res["requests"], 1) * 1e6
                results[(name, mode)].append((res["rps"], cpu, res["errors"]))
        print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return results


def report(results: dict, names: list[str], modes: list[str]) -> str:
    """Medians; "vs bare" is the median of each round's ratio to that round's bare proxy, with
    the lowest and highest round beside it (the spread says how far to trust a difference)."""
    lines = ["| mode | server | req/s | vs bare | rounds' range | CPU µs/call | errors |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for mode in modes:
        bare = results[("bare", mode)]
        for name in names:
            runs = results[(name, mode)]
            rps = statistics.median(r[0] for r in runs)
            ratios = [r[0] / b[0] for r, b in zip(runs, bare, strict=True)]
            cpu = statistics.median(r[1] for r in runs)
            lines.append(f"| {mode} | {name} | {rps:,.0f} | {statistics.median(ratios):.1%} | "
                         f"{min(ratios):.0%}–{max(ratios):.0%} | {cpu:.0f} | {sum(r[2] for r in runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    wanted = variants(args.variants)
    os.sched_setaffinity(0, CLIENT_CPUS)
    logdir = Path(tempfile.mkdtemp(prefix="sluice-ab-"))
    upstream, procs = start_all(wanted, logdir)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = measure(procs, args, modes, tmp)
    finally:
        for proc, _, _ in procs.values():
            proc.stop()
        upstream.stop()
    print(report(results, list(procs), modes))
    print(f"\nserver logs: {logdir}")


if __name__ == "__main__":
    main()
