"""Measure the offline content-moderation detector; print the tables for docs/guardrails.md.

    .venv/bin/python bench/eval_moderation.py                 # figures and misclassified cases
    .venv/bin/python bench/eval_moderation.py --sweep         # also recall / FPR per threshold
    .venv/bin/python bench/eval_moderation.py --markdown out.md   # also write the tables to a file

Data: tests/data/moderation_cases.jsonl, written for Sluice and never trained on, in two splits:

* ``dev`` — 630 harmful cases (at least 100 per category; labels may name two) and 530 benign
  ones, mostly hard: "kill the process", "shoot a photo", vaccines, sex education, suicide
  prevention, history, crime news, defensive security, fiction summaries, idioms, evasions of
  both kinds. The rules were developed against this split (in three rounds, each round's fresh
  holdout joining it once its misses had been read), so its figures are optimistic.
* ``holdout`` — 90 harmful cases (15 per category written for it) and 60 benign ones, written
  after the rules were frozen and never used to change them: the honest estimate.

Per category: precision over every case flagged for it (a violence case flagged as hate counts
against hate), recall over the cases labelled with it, and FPR over the benign set. Overall:
any category flagged, harmful cases against the benign set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sluice.policies.guardrails import moderation  # noqa: E402

CASES = ROOT / "tests" / "data" / "moderation_cases.jsonl"


@dataclass(frozen=True)
class Scored:
    text: str
    labels: tuple[str, ...]
    note: str
    split: str
    scores: dict[str, float]

    def flagged_at(self, threshold: float) -> tuple[str, ...]:
        return tuple(c for c in moderation.CATEGORIES if self.scores[c] >= threshold)

    @property
    def flagged(self) -> tuple[str, ...]:
        return self.flagged_at(moderation.DEFAULT_THRESHOLD)


@dataclass(frozen=True)
class Figures:
    positives: int
    benign: int
    precision: float
    recall: float
    fpr: float

    def row(self, name: str) -> str:
        return (f"| {name} | {self.positives} | {self.benign} | {self.precision:.3f} | {self.recall:.3f} | "
                f"{self.fpr:.3f} |")


TABLE_HEADER = "| category | cases | benign | precision | recall | FPR (benign) |\n|---|---|---|---|---|---|"


def load_cases(path: Path = CASES) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def score_cases(cases: list[dict] | None = None) -> list[Scored]:
    rows = cases if cases is not None else load_cases()
    return [Scored(c["text"], tuple(c["labels"]), c.get("note", ""), c.get("split", "dev"),
                   moderation.moderate(c["text"]).scores) for c in rows]


def category_figures(rows: list[Scored], category: str, threshold: float = moderation.DEFAULT_THRESHOLD) -> Figures:
    flagged = [r for r in rows if category in r.flagged_at(threshold)]
    labelled = [r for r in rows if category in r.labels]
    benign = [r for r in rows if not r.labels]
    true_pos = sum(1 for r in flagged if category in r.labels)
    return Figures(
        len(labelled), len(benign),
        true_pos / len(flagged) if flagged else 1.0,
        true_pos / len(labelled) if labelled else 1.0,
        sum(1 for r in benign if category in r.flagged_at(threshold)) / len(benign) if benign else 0.0,
    )


def overall_figures(rows: list[Scored], threshold: float = moderation.DEFAULT_THRESHOLD) -> Figures:
    harmful = [r for r in rows if r.labels]
    benign = [r for r in rows if not r.labels]
    tp = sum(1 for r in harmful if r.flagged_at(threshold))
    fp = sum(1 for r in benign if r.flagged_at(threshold))
    return Figures(len(harmful), len(benign), tp / (tp + fp) if tp + fp else 1.0,
                   tp / len(harmful) if harmful else 1.0, fp / len(benign) if benign else 0.0)


def figures_table(rows: list[Scored]) -> str:
    lines = [TABLE_HEADER]
    lines += [category_figures(rows, c).row(c) for c in moderation.CATEGORIES]
    lines.append(overall_figures(rows).row("**any category**"))
    return "\n".join(lines)


def benign_by_kind(rows: list[Scored]) -> str:
    lines = ["| benign kind (dev) | cases | flagged |", "|---|---|---|"]
    benign = [r for r in rows if not r.labels and r.split == "dev"]
    for kind in dict.fromkeys(r.note for r in benign):
        part = [r for r in benign if r.note == kind]
        lines.append(f"| {kind.removeprefix('benign: ')} | {len(part)} | {sum(1 for r in part if r.flagged)} |")
    return "\n".join(lines)


def evasion_table(rows: list[Scored]) -> str:
    evasions = [r for r in rows if r.labels and r.note.startswith("evasion")]
    caught = sum(1 for r in evasions if r.flagged)
    return f"Evasions (leetspeak, spaced letters, look-alike letters): {caught} of {len(evasions)} flagged."


def sweep(rows: list[Scored]) -> str:
    lines = ["| threshold | recall | FPR | precision |", "|---|---|---|---|"]
    for step in range(3, 9):
        f = overall_figures(rows, step / 10)
        lines.append(f"| {step / 10:.1f} | {f.recall:.3f} | {f.fpr:.3f} | {f.precision:.3f} |")
    return "\n".join(lines)


def latency_ms(text: str, repeats: int = 30) -> float:
    """p50 of ``moderate(text)`` in milliseconds (the model is loaded first)."""
    moderation.moderate("warm up")
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        moderation.moderate(text)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def long_text(rows: list[Scored], tokens: int = 2000) -> str:
    """About ``tokens`` tokens (4 characters each) of the benign cases run together."""
    benign = " ".join(r.text for r in rows if not r.labels)
    return (benign * (1 + tokens * 4 // len(benign)))[: tokens * 4]


def latency_table(rows: list[Scored]) -> str:
    short = latency_ms("How do I kill a Python process that is stuck?")
    long = latency_ms(long_text(rows), repeats=15)
    return ("| input | p50 latency |\n|---|---|\n"
            f"| short prompt (~12 tokens) | {short:.2f} ms |\n| ~2,000 tokens | {long:.1f} ms |")


def misclassified(rows: list[Scored]) -> list[str]:
    out = []
    for r in rows:
        missed = [c for c in r.labels if c not in r.flagged]
        if (not r.labels and r.flagged) or (r.labels and not r.flagged):
            top = ", ".join(f"{c}={r.scores[c]:.2f}" for c in sorted(r.scores, key=r.scores.get, reverse=True)[:2])
            kind = "false positive" if not r.labels else f"missed {'/'.join(missed)}"
            out.append(f"- [{r.split}, {kind}; {top}] {r.text[:110]!r}")
    return out


def split(rows: list[Scored], name: str) -> list[Scored]:
    return [r for r in rows if r.split == name]


def report(show_sweep: bool) -> str:
    rows = score_cases()
    out = [f"Threshold {moderation.DEFAULT_THRESHOLD} for every category.", "",
           "Holdout split (written after the rules were frozen):", "", figures_table(split(rows, "holdout")), "",
           "Dev split (the rules were developed against it):", "", figures_table(split(rows, "dev")), "",
           evasion_table(rows), "", benign_by_kind(rows), "", latency_table(rows)]
    if show_sweep:
        out += ["", "Threshold sweep, holdout (any category):", "", sweep(split(rows, "holdout")),
                "", "Threshold sweep, dev (any category):", "", sweep(split(rows, "dev"))]
    wrong = misclassified(rows)
    out += ["", f"Misclassified ({len(wrong)}; a harmful case counts as missed only if nothing flagged it):", "", *wrong]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    text = report(args.sweep)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
