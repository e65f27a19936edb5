"""Python opcodes per call, by function: a plain key against a limited key, in one Sluice.

Wall-clock figures on this VM drift by ±10% and instruction counts (``bench/instructions.py``)
say how much, not where. This runs one Sluice under a ``sys.settrace`` opcode counter (every
thread), sends ``--calls`` calls with a plain key and then with a key with limits, over kept-alive
connections from 4 client threads, and prints opcodes per call by package and the functions that
differ most. The counts repeat to within a few opcodes between runs, so they compare builds:

    .venv/bin/python bench/opcodes.py --mode json --save /tmp/ops-new
    .venv/bin/python bench/opcodes.py --mode json --src /tmp/base --save /tmp/ops-old   # a git worktree
    .venv/bin/python bench/opcodes.py --diff /tmp/ops-old/plain.tsv /tmp/ops-new/plain.tsv

Under the tracer the server runs ~30x slower; a phase of 400 calls takes about ten seconds. C code
(the loop, parsers, SQLite) is not counted: see ``bench/instructions.py`` for the whole.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import servers  # noqa: E402
from instructions import issue_key  # noqa: E402
from run import body  # noqa: E402

CLIENTS = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["json", "stream"], default="json")
    p.add_argument("--calls", type=int, default=400, help="per phase")
    p.add_argument("--limits", default='{"rpm": 100000000, "tpm": 1000000000}', help="the limited key's limits")
    p.add_argument("--src", default=str(servers.ROOT), help="the checkout whose Sluice runs")
    p.add_argument("--save", help="a directory for the per-function counts (plain.tsv, limited.tsv)")
    p.add_argument("--top", type=int, default=25, help="functions to list")
    p.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two saved .tsv files and exit")
    return p.parse_args(argv)


# ---- the traced server: ``python bench/opcodes.py --serve OUT sluice-args…`` ------------------------

def serve_traced(out: str, argv: list[str]) -> None:
    """Run the Sluice CLI with every thread's opcodes counted per function; each SIGUSR1 writes
    the counts so far to ``OUT.N`` (N = 1, 2, …) and starts again from zero."""
    counts: collections.Counter = collections.Counter()

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202 - sys.settrace's signature
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename, code.co_qualname)] += 1
        return tracer

    dumps = 0

    def dump(signum, frame) -> None:  # noqa: ANN001
        nonlocal dumps
        snapshot = dict(counts)
        counts.clear()
        dumps += 1
        with open(f"{out}.{dumps}", "w") as f:
            for (filename, name), n in sorted(snapshot.items(), key=lambda kv: -kv[1]):
                f.write(f"{n}\t{filename}\t{name}\n")

    signal.signal(signal.SIGUSR1, dump)
    from sluice.cli import app

    sys.argv = ["sluice", *argv]
    threading.settrace(tracer)
    sys.settrace(tracer)
    sys.exit(app())


# ---- the driver --------------------------------------------------------------------------------

def phase(proc: servers.Proc, key: str, payload: bytes, calls: int) -> None:
    """``calls`` calls from ``CLIENTS`` threads, each on one kept-alive connection."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    failures: list[str] = []

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=120)
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", payload, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(str(resp.status))
        conn.close()

    threads = [threading.Thread(target=client, args=(calls // CLIENTS,)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} calls failed: {sorted(set(failures))}")


def snapshot(proc: servers.Proc, out: str, n: int) -> Path:
    """Let the ledger's batch land, then have the server write its counts (``out.n``)."""
    time.sleep(1.5)
    os.kill(proc.popen.pid, signal.SIGUSR1)
    path = Path(f"{out}.{n}")
    for _ in range(100):
        if path.exists() and path.stat().st_size:
            time.sleep(0.2)
            return path
        time.sleep(0.1)
    raise SystemExit(f"the server wrote no counts to {path}")


def load(path: Path, calls: int = 1) -> collections.Counter:
    """Opcodes per call by (file, function); the tracer's own frames left out."""
    counts: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        n, filename, name = line.split("\t")
        if not filename.endswith("opcodes.py"):
            counts[(_short(filename), name)] += float(n) / calls
    return counts


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail if marker == "site-packages/" else "stdlib/" + tail.split("/", 1)[1]
    return "sluice/" + filename.rsplit("/sluice/", 1)[1] if "/sluice/" in filename else filename


def package(name: str) -> str:
    return name.split("/", 2)[1] if name.startswith("stdlib/") else name.split("/", 1)[0].removesuffix(".py")


def report(counts: dict[str, collections.Counter], top: int) -> str:
    lines = ["opcodes per call", "", "| package | " + " | ".join(counts) + " |",
             "|---|" + "---:|" * len(counts)]
    by_package = {name: collections.Counter() for name in counts}
    for name, c in counts.items():
        for (filename, _), n in c.items():
            by_package[name][package(filename)] += n
    first = next(iter(counts))
    for pkg, _ in by_package[first].most_common(8):
        lines.append(f"| {pkg} | " + " | ".join(f"{by_package[n][pkg]:,.0f}" for n in counts) + " |")
    lines.append("| **all** | " + " | ".join(f"**{sum(c.values()):,.0f}**" for c in counts.values()) + " |")
    lines += ["", differences(*counts.values(), top)] if len(counts) == 2 else []
    return "\n".join(lines)


def differences(before: collections.Counter, after: collections.Counter, top: int) -> str:
    keys = sorted(set(before) | set(after), key=lambda k: -abs(after[k] - before[k]))[:top]
    lines = ["| change | before | after | function |", "|---:|---:|---:|---|"]
    lines += [f"| {after[k] - before[k]:+,.0f} | {before[k]:,.0f} | {after[k]:,.0f} | "
              f"`{k[0]}:{k[1]}` |" for k in keys]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, collections.Counter]:
    logdir = Path(tempfile.mkdtemp(prefix="sluice-opcodes-"))
    out = str(logdir / "counts")
    os.environ["BENCH_SLUICE_CMD"] = f"{servers.PYTHON} {Path(__file__).resolve()} --serve {out}"
    os.environ["PYTHONPATH"] = args.src
    upstream = servers.start_upstream(logdir, None)
    proc = servers.start_sluice(upstream, logdir, None, access_log=False, name="opcodes")
    try:
        keys = {"plain": credentials.TOKEN, "limited": issue_key(proc, json.loads(args.limits))}
        payload = body("bench", args.mode == "stream")
        for key in (*keys.values(), *keys.values()):  # warm up: the tokenizer, pools, caches
            phase(proc, key, payload, 40)
        snapshot(proc, out, 1)
        counts = {}
        for i, (name, key) in enumerate(keys.items(), start=2):
            phase(proc, key, payload, args.calls)
            counts[name] = load(snapshot(proc, out, i), args.calls - args.calls % CLIENTS)
        return counts
    finally:
        proc.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["--serve"]:
        serve_traced(sys.argv[2], sys.argv[3:])
        return
    args = parse_args(argv)
    if args.diff:
        before, after = (load(Path(p)) for p in args.diff)
        print(report({"before": before, "after": after}, args.top))
        return
    counts = measure(args)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        for name, c in counts.items():
            with open(Path(args.save) / f"{name}.tsv", "w") as f:
                f.writelines(f"{n:.2f}\t{filename}\t{fn}\n" for (filename, fn), n in c.most_common())
    print(f"{args.mode}, src {args.src}")
    print(report(counts, args.top))


if __name__ == "__main__":
    main()
