"""Latency guardrails add through the gateway (issue 6: regex PII on a 2,000-token prompt ≤ 5 ms,
the offline classifier ≤ 20 ms, p50).

    .venv/bin/python bench/guardrails_latency.py [--requests 300] [--warmup 30] [--markdown out.md]

One emulator (`sluice mock`, OpenAI-compatible) and one Sluice per configuration (a guardrail
policy on the alias "bench"; none for the baseline) are started. One client then sends requests of a
~2,000-token prompt (presidio-research rows: names, addresses, cards, phones, emails…) and of a
~30-token prompt with PII, plain and streamed, interleaved: request i goes to every configuration in
turn, so drift in the machine's load falls on all alike; one request is in flight at a time.
Reported: p50/p90/p99 of the whole call (streams: until [DONE]) and the p50 added over the baseline
for the same prompt and mode (and, streamed, to the first content event). The emulator echoes the
prompt, so answers are as long as prompts and carry the placeholders back to be restored. Each
configuration is checked first: its verdicts in x-sluice-guardrails, the answer restored (or masked).
Layout as bench/run.py: client and emulator on CPU 0, the Sluice processes on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from sluice.policies.tokens import count_text_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials  # noqa: E402
import servers  # noqa: E402
import ttft  # noqa: E402
from guardrails_pii import PRESIDIO  # noqa: E402
from run import LAYOUTS, machine  # noqa: E402

PII_REDACT = {"check": "pii", "action": "redact"}  # reversible: placeholders, restored in the answer
PII_MASK = {"check": "pii", "action": "redact", "mode": "mask"}  # [EMAIL]: nothing to restore
INJECTION = {"check": "injection", "action": "block"}
MODERATION = {"check": "moderation", "action": "block", "backend": "local"}
# name -> (description, input checks); the baseline has no guardrails section at all.
CONFIGS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "baseline": ("no guardrails", []),
    "pii-mask": ("pii redact on input (mode: mask, nothing to restore)", [PII_MASK]),
    "pii-redact": ("pii redact on input, placeholders restored in the answer", [PII_REDACT]),
    "injection": ("injection block (benign prompt: passes)", [INJECTION]),
    "moderation": ("moderation, local backend, on input", [MODERATION]),
    "all": ("pii redact + injection + moderation", [PII_REDACT, INJECTION, MODERATION]),
}
SHORT_PROMPT = ("Hi, I moved: please change my email to jane.doe@example.com and my phone to "
                "+44 20 7946 0958, then confirm the change.")
MODES = ("json", "stream")


def count_tokens(text: str) -> int:
    return count_text_tokens(text, "gpt-4o")  # o200k_base, exact


def long_prompt(tokens: int) -> str:
    """Presidio-research rows, whole, until the prompt reaches ``tokens``."""
    rows = [json.loads(line)["text"] for line in PRESIDIO.open(encoding="utf-8")]
    text, index = "", 0
    while count_tokens(text) < tokens:
        text += ("\n" if text else "") + rows[index % len(rows)]
        index += 1
    return text


def guardrails_yaml(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return ""
    # JSON is YAML: the check list goes in flow style.
    return f'guardrails:\n  policies:\n    bench:\n      models: ["bench"]\n      input: {json.dumps(checks)}\n'


def request_body(prompt: str, stream: bool) -> bytes:
    return orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": prompt}], "stream": stream})


@dataclass
class Target:
    """One configuration's Sluice, its virtual key and its client session (one connection)."""

    name: str
    checks: list[dict[str, Any]]
    proc: servers.Proc
    token: str
    session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self.proc.url + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}


async def call(target: Target, body: bytes, stream: bool) -> tuple[float, float]:
    """One request: (total ms, ms to the first content event; for JSON the total). A stream must
    end with [DONE]: a guardrail that cut it short would otherwise look fast."""
    started, first, done = time.perf_counter(), None, not stream
    async with target.session.post(target.url, data=body, headers=target.headers()) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
        if not stream:
            await resp.read()
        else:
            async for line in resp.content:
                if first is None and ttft._has_content(line):
                    first = time.perf_counter()
                done = done or line.startswith(b"data: [DONE]")
    if not done:
        raise RuntimeError(f"{target.name}: the stream ended without [DONE]")
    total = (time.perf_counter() - started) * 1000
    return total, (first - started) * 1000 if first else total


async def verify(target: Target, prompt: str) -> None:
    """Guardrails ran (header), a reversible redaction came back restored, a mask did not."""
    async with target.session.post(target.url, data=request_body(prompt, False), headers=target.headers()) as r:
        data = await r.read()
        if r.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {r.status}: {data[:300]!r}")
        header = r.headers.get("x-sluice-guardrails", "")
    answer = orjson.loads(data)["choices"][0]["message"]["content"]
    missing = [c["check"] for c in target.checks if f"{c['check']}=" not in header]
    if missing:
        raise RuntimeError(f"{target.name}: no verdict for {missing} in x-sluice-guardrails: {header!r}")
    masked = any(c.get("mode") == "mask" for c in target.checks)
    if masked == (answer == "Echo: " + prompt):
        raise RuntimeError(f"{target.name}: answer {'not masked' if masked else 'not restored'}: {answer[:200]!r}")


def summary(total_ms: Sequence[float], first_ms: Sequence[float]) -> dict[str, float]:
    q = statistics.quantiles(total_ms, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98], "ttft_p50": statistics.median(first_ms)}


def schedule(targets: list[Target], count: int, order: str) -> list[tuple[int, Target]]:
    """Interleaved: request i goes to every configuration in turn, so drift in the machine's load
    falls on all alike. Sequential: each configuration's requests back to back (warm caches)."""
    if order == "interleaved":
        return [(i, t) for i in range(count) for t in targets]
    return [(i, t) for t in targets for i in range(count)]


async def measure(targets: list[Target], prompts: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {t.name: {} for t in targets}
    for t in targets:
        t.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    try:
        for label, prompt in prompts.items():
            for t in targets:
                await verify(t, prompt)
            for mode in MODES:
                body = request_body(prompt, mode == "stream")
                samples: dict[str, list[tuple[float, float]]] = {t.name: [] for t in targets}
                for i, t in schedule(targets, args.warmup + args.requests, args.order):
                    timing = await call(t, body, mode == "stream")
                    if i >= args.warmup:
                        samples[t.name].append(timing)
                for t in targets:
                    m = results[t.name].setdefault(label, {})[mode] = summary(*zip(*samples[t.name]))
                    print(f"  {t.name:11} {label:6} {mode:6} p50 {m['p50']:7.2f}  p90 {m['p90']:7.2f}  "
                          f"p99 {m['p99']:7.2f} ms", flush=True)
    finally:
        for t in targets:
            await t.session.close()
    return results


def start_target(name: str, upstream: servers.Proc, logdir: Path, server_cpus: set[int] | None) -> Target:
    checks = CONFIGS[name][1]
    os.environ["BENCH_EXTRA_YAML"] = guardrails_yaml(checks)
    proc = servers.start_sluice(upstream, logdir, server_cpus, access_log=False, name=name)
    return Target(name, checks, proc, credentials.TOKEN)


def _added(results: dict[str, Any], name: str, label: str, mode: str, key: str = "p50") -> float:
    return results[name][label][mode][key] - results["baseline"][label][mode][key]


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    head = (f"{meta['requests']} requests per row after {meta['warmup']} warm-up, concurrency 1, {meta['order']}; "
            f"prompts: {meta['prompts']}; {meta['layout']}; {meta['machine']['nproc']} CPUs, "
            f"{meta['machine']['cpu']}, Python {meta['machine']['python']}.")
    lines = [head, "", ("| configuration | prompt | JSON p50 / p90 / p99 ms | JSON added p50 "
                        "| stream p50 / p90 / p99 ms | stream added p50 | stream added TTFT p50 |"),
             "|---|---|---|---:|---|---:|---:|"]
    for name, by_prompt in results.items():
        for label, modes in by_prompt.items():
            cells = []
            for mode in MODES:
                m = modes[mode]
                added = _added(results, name, label, mode)
                cells += [f"{m['p50']:.2f} / {m['p90']:.2f} / {m['p99']:.2f}", f"{added:+.2f}"]
            cells.append(f"{_added(results, name, label, 'stream', 'ttft_p50'):+.2f}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {name}: {CONFIGS[name][0]}" for name in results), ""]
    for name, limit in [("pii-mask", 5.0), ("pii-redact", 5.0), ("injection", 20.0), ("moderation", 20.0)]:
        if name in results:
            added = {mode: _added(results, name, "2k", mode) for mode in MODES}
            lines.append(f"- target {name} on 2k (≤ {limit:g} ms added p50): JSON {added['json']:+.2f} ms, stream "
                         f"{added['stream']:+.2f} ms: {'holds' if max(added.values()) <= limit else 'FAILS'}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300, help="measured requests per prompt and mode")
    p.add_argument("--warmup", type=int, default=30, help="unmeasured requests first")
    p.add_argument("--tokens", type=int, default=2000, help="size of the long prompt (o200k tokens)")
    p.add_argument("--only", default="", help=f"comma-separated configurations (baseline always runs): {list(CONFIGS)}")
    p.add_argument("--order", choices=["interleaved", "sequential"], default="interleaved",
                   help="requests across configurations (see schedule())")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="split", help="CPU pinning (see bench/run.py)")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--json", help="write the raw figures here")
    return p.parse_args(argv)


def layout(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None, str]:
    client, upstream, server, _ = LAYOUTS[args.layout]
    if not client:
        return None, None, "no pinning"
    os.sched_setaffinity(0, client)  # this process is the client
    return upstream, server, f"client on CPU {min(client)}, emulator on {min(upstream)}, Sluice on {min(server)}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = {c.strip() for c in args.only.split(",") if c.strip()} or set(CONFIGS)
    if chosen - set(CONFIGS):
        raise SystemExit(f"--only: unknown {sorted(chosen - set(CONFIGS))}")
    upstream_cpus, server_cpus, where = layout(args)
    prompts = {"2k": long_prompt(args.tokens), "short": SHORT_PROMPT}
    meta = {"requests": args.requests, "warmup": args.warmup, "order": args.order, "layout": where,
            "machine": machine(), "prompts": f"2k = {count_tokens(prompts['2k'])} tokens / {len(prompts['2k'])} "
                                             f"chars, short = {count_tokens(SHORT_PROMPT)} tokens (o200k)"}
    logdir = Path(__file__).resolve().parent / "results" / f"logs-guardrails-{time.strftime('%Y%m%d-%H%M%S')}"
    logdir.mkdir(parents=True, exist_ok=True)
    upstream = servers.start_upstream(logdir, upstream_cpus)
    targets: list[Target] = []
    try:
        for name in [n for n in CONFIGS if n in chosen or n == "baseline"]:
            targets.append(start_target(name, upstream, logdir, server_cpus))
        results = asyncio.run(measure(targets, prompts, args))
    finally:
        for t in targets:
            t.proc.stop()
        upstream.stop()
    table = markdown(results, meta)
    print("\n" + table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
