"""Measure the prompt-injection detector; print the tables for docs/guardrails.md ("Prompt injection").

    .venv/bin/python bench/eval_injection.py            # tables in Markdown on stdout
    .venv/bin/python bench/eval_injection.py --sweep    # also recall / FPR per threshold

Three sets, none trained on:
* the HELD-OUT split of ../shared/datasets/injection_jackhhao_llm-warden.jsonl (``split_of`` in
  bench/train_injection.py);
* a LENGTH-MATCHED subset of it: texts bucketed by length (powers of two, in characters) and, per
  bucket, as many injections as benign texts (the first by hash order), so a detector that keyed
  on length would score no better than chance there;
* tests/data/injection_cases.jsonl, written for Sluice: classic overrides, personas, extraction,
  delimiter and encoding tricks, indirect injections (tool results and embedded documents, scored
  by ``scan_messages`` with the data threshold) and benign look-alikes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sluice.policies.guardrails import injection  # noqa: E402

CASES = ROOT / "tests" / "data" / "injection_cases.jsonl"


def _load_training_module():
    name = "sluice_bench_train_injection"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "train_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


training = _load_training_module()


@dataclass(frozen=True)
class Scored:
    text: str
    injection: bool
    score: float  # combined
    classifier: float
    rules: bool  # any rule hit
    kind: str = ""
    threshold: float = injection.DEFAULT_THRESHOLD

    @property
    def flagged(self) -> bool:
        return self.score >= self.threshold


@dataclass(frozen=True)
class Figures:
    n_injection: int
    n_benign: int
    precision: float
    recall: float
    fpr: float

    def row(self, name: str) -> str:
        return (f"| {name} | {self.n_injection} | {self.n_benign} | {self.precision:.3f} | "
                f"{self.recall:.3f} | {self.fpr:.3f} |")


TABLE_HEADER = "| set | injections | benign | precision | recall | FPR |\n|---|---|---|---|---|---|"


def figures(rows: list[Scored], flagged=lambda r: r.flagged) -> Figures:
    tp = sum(1 for r in rows if r.injection and flagged(r))
    fp = sum(1 for r in rows if not r.injection and flagged(r))
    pos = sum(1 for r in rows if r.injection)
    neg = len(rows) - pos
    return Figures(pos, neg, tp / (tp + fp) if tp + fp else 1.0, tp / pos if pos else 1.0, fp / neg if neg else 0.0)


def score_text(text: str, is_injection: bool, kind: str = "") -> Scored:
    result = injection.score(text)
    return Scored(text, is_injection, result.score, result.classifier_score, bool(result.rule_hits), kind)


def held_out() -> list[Scored]:
    rows = [r for r in training.load_dataset() if training.split_of(r["text"]) == "test"]
    return [score_text(r["text"], r["label"] == "injection") for r in rows]


def length_bucket(text: str) -> int:
    return int(math.log2(max(len(text), 1)))


def length_matched(rows: list[Scored]) -> list[Scored]:
    """Per power-of-two length bucket, equal numbers of injections and benign texts."""
    order = sorted(rows, key=lambda r: hashlib.sha256(r.text.encode()).hexdigest())
    buckets: dict[int, tuple[list[Scored], list[Scored]]] = {}
    for row in order:
        pair = buckets.setdefault(length_bucket(row.text), ([], []))
        pair[0 if row.injection else 1].append(row)
    matched: list[Scored] = []
    for injections, benign in buckets.values():
        keep = min(len(injections), len(benign))
        matched += injections[:keep] + benign[:keep]
    return matched


def load_cases(path: Path = CASES) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def score_case(case: dict) -> Scored:
    """User prompts are scored directly; tool results and documents through ``scan_messages``."""
    is_injection = case["label"] == "injection"
    if case["source"] == "user":
        return score_text(case["text"], is_injection, case["kind"])
    role = "tool" if case["source"] == "tool" else "user"
    scan = injection.scan_messages([{"role": role, "content": case["text"]}])
    worst = max(scan.findings, key=lambda f: f.result.score - f.threshold)
    return Scored(case["text"], is_injection, worst.result.score, worst.result.classifier_score,
                  bool(worst.result.rule_hits), case["kind"], worst.threshold)


def own_cases() -> list[Scored]:
    return [score_case(case) for case in load_cases()]


def length_buckets_table(rows: list[Scored]) -> str:
    lines = ["| length (chars) | injections | recall | benign | FPR |", "|---|---|---|---|---|"]
    for bucket in sorted({length_bucket(r.text) for r in rows}):
        part = [r for r in rows if length_bucket(r.text) == bucket]
        f = figures(part)
        lines.append(f"| {2**bucket}–{2**(bucket + 1) - 1} | {f.n_injection} | "
                     f"{f.recall:.3f} | {f.n_benign} | {f.fpr:.3f} |")
    return "\n".join(lines)


def cases_by_kind(rows: list[Scored]) -> str:
    lines = ["| kind | rows | label | flagged |", "|---|---|---|---|"]
    for kind in dict.fromkeys(r.kind for r in rows):
        part = [r for r in rows if r.kind == kind]
        label = "injection" if part[0].injection else "benign"
        lines.append(f"| {kind} | {len(part)} | {label} | {sum(r.flagged for r in part)} |")
    return "\n".join(lines)


def sweep(rows: list[Scored]) -> str:
    lines = ["| threshold | recall | FPR | recall (classifier only) | FPR (classifier only) |", "|---|---|---|---|---|"]
    for step in range(2, 10):
        t = step / 10
        both = figures(rows, lambda r: r.score >= t)
        clf = figures(rows, lambda r: r.classifier >= t)
        lines.append(f"| {t:.1f} | {both.recall:.3f} | {both.fpr:.3f} | {clf.recall:.3f} | {clf.fpr:.3f} |")
    return "\n".join(lines)


def report(show_sweep: bool) -> str:
    test = held_out()
    matched = length_matched(test)
    cases = own_cases()
    by_layer = [
        figures(test, lambda r: r.classifier >= injection.DEFAULT_THRESHOLD).row("held-out, classifier alone"),
        figures(test, lambda r: r.rules).row("held-out, rules alone (any hit)"),
    ]
    out = [
        f"Threshold {injection.DEFAULT_THRESHOLD} (prompts), {injection.DATA_THRESHOLD} (tool results and documents).",
        "", TABLE_HEADER,
        figures(test).row("held-out split"),
        figures(matched).row("held-out, length-matched"),
        *by_layer,
        figures(cases).row("Sluice cases (tests/data/injection_cases.jsonl)"),
        figures([c for c in cases if c.kind != "indirect" and c.kind != "data"]).row("Sluice cases, prompts only"),
        figures([c for c in cases if c.kind in ("indirect", "data")]).row("Sluice cases, data only"),
        "", "Held-out split by length:", "", length_buckets_table(test),
        "", "Sluice cases by kind:", "", cases_by_kind(cases),
    ]
    if show_sweep:
        out += ["", "Held-out threshold sweep:", "", sweep(test)]
    misses = [c for c in cases if c.flagged != c.injection]
    out += ["", f"Sluice cases misclassified ({len(misses)}):", ""]
    out += [f"- [{c.kind}, {c.score:.2f}] {c.text[:100]!r}" for c in misses]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true")
    print(report(parser.parse_args().sweep))


if __name__ == "__main__":
    main()
