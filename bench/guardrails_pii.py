"""Latency of PII detection and redaction on a 2,000-token prompt (issue 6 target: ≤ 5 ms).

The prompt is ~8,000 characters of realistic text: rows of the shared presidio-research set
(names, addresses, phones, cards…) joined until the length is reached, plus a variant with no PII
at all (the common case) and one dense with identifiers (the synthetic set). Reports p50/p90/p99
of `detect`, `Vault.redact` and of streaming the answer back through a `StreamRestorer` in
20-character deltas. Run: `python bench/guardrails_pii.py [--chars 8000] [--runs 300]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sluice.policies.guardrails.pii import detect  # noqa: E402
from sluice.policies.guardrails.redact import Vault  # noqa: E402

PRESIDIO = ROOT.parent / "shared" / "datasets" / "pii_presidio-research_synth_v2.jsonl"
SYNTHETIC = ROOT / "tests" / "data" / "pii_synthetic.jsonl"
PLAIN = (
    "Please review the following design document and summarise the trade-offs between the two "
    "approaches, paying attention to latency, cost and operational complexity in version 2.3 of "
    "the service, released on 2024-05-01, which handles about 1,200 requests per second. "
)


def prompt_from(path: Path, chars: int) -> str:
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    out, index = [], 0
    while sum(len(t) + 1 for t in out) < chars:
        out.append(texts[index % len(texts)])
        index += 1
    return "\n".join(out)[:chars]


def timings_ms(action: Callable[[], object], runs: int) -> list[float]:
    for _ in range(min(20, runs)):
        action()  # warm: compiled patterns, caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {statistics.median(ordered):.2f} ms · p90 {pick(0.9):.2f} ms · p99 {pick(0.99):.2f} ms"


def stream_back(prompt: str) -> None:
    vault = Vault()
    redacted = vault.redact(prompt)
    restorer = vault.stream_restorer()
    for start in range(0, len(redacted), 20):
        restorer.feed(redacted[start : start + 20])
    restorer.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    prompts = {
        "no PII": (PLAIN * (args.chars // len(PLAIN) + 1))[: args.chars],
        "presidio rows": prompt_from(PRESIDIO, args.chars),
        "synthetic rows (dense)": prompt_from(SYNTHETIC, args.chars),
    }
    print(f"| prompt ({args.chars} chars) | findings | detect | Vault.redact | redact + stream restore |")
    print("|---|---:|---|---|---|")
    for name, prompt in prompts.items():
        findings = len(detect(prompt))
        row = [percentiles(timings_ms(action, args.runs)) for action in (
            lambda: detect(prompt), lambda: Vault().redact(prompt), lambda: stream_back(prompt))]
        print(f"| {name} | {findings} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
