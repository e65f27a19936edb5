"""Profile Sluice under wrk load with py-spy (dev tool: `.venv/bin/pip install py-spy`).

    .venv/bin/python bench/profile_sluice.py --mode stream --connections 32 --duration 10

Writes a speedscope/flamegraph/raw file under bench/results/ and prints the heaviest functions
(own time and inclusive time) from py-spy's raw collapsed stacks.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from run import body  # noqa: E402
from wrk_driver import lua_script, run_wrk  # noqa: E402

PYSPY = str(servers.ROOT / ".venv" / "bin" / "py-spy")
_LINE = re.compile(r":\d+\)$")


def summarise(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        # One entry per function: drop line numbers so a function's lines add up.
        frames = [_LINE.sub(")", f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"{total} samples", "", "own time by package:"]
    lines += [f"  {n / total:6.1%}  {k}" for k, n in _by_package(own).most_common()]
    lines += ["", "own time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def _package(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1]
    for name in ("sluice/", "starlette/", "uvicorn/", "aiohttp/", "asyncio/", "bench/"):
        if path.startswith(name) or f"/{name}" in path:
            return name.rstrip("/")
    return "other (" + path.split("/")[0].split(".")[0] + ")"


def _by_package(own: collections.Counter[str]) -> collections.Counter[str]:
    # uvloop runs in C under Runner.run: its samples are the event loop and socket I/O.
    out: collections.Counter[str] = collections.Counter()
    for frame, n in own.items():
        out["event loop + syscalls (uvloop, C)" if frame.startswith("Runner.run") else _package(frame)] += n
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=["sluice", "bare"], default="sluice")
    p.add_argument("--mode", choices=["json", "stream"], default="stream")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    upstream = servers.start_upstream(out, {0})
    if args.target == "sluice":
        proc = servers.start_sluice(upstream, out, {1}, access_log=False, name="sluice-profile")
        model = "bench"
    else:
        proc = servers.start_bare(upstream, out, {1})
        model = "bench-model"
    collapsed = out / f"profile-{args.target}-{args.mode}-c{args.connections}-{stamp}.txt"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = lua_script(body(model, args.mode == "stream"), tmp)
            url = proc.url + "/v1/chat/completions"
            run_wrk(url, script, args.connections, 2, cpus={0})
            spy = subprocess.Popen([PYSPY, "record", "--pid", str(proc.popen.pid), "--format", "raw", "--rate", "250",
                                    "--duration", str(int(args.duration)), "-o", str(collapsed)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            res = run_wrk(url, script, args.connections, args.duration, cpus={0})
            spy.wait(60)
            print(f"under profile: {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms")
    finally:
        proc.stop()
        upstream.stop()
    print(summarise(collapsed, args.top))
    print(f"\nraw stacks: {collapsed}")


if __name__ == "__main__":
    main()
