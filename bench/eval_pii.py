"""Precision, recall, F1 and false-positive rate of `sluice.policies.guardrails.pii.detect`.

Span-level scoring, per type T:
- a predicted T span is a true positive when it overlaps a gold T span by at least half of that
  gold span; a gold T span is found when some predicted T span overlaps it that much;
- a predicted span that is not a true positive but overlaps a gold OTHER span is "don't care"
  (OTHER marks entities outside the task: dates, organisations, account numbers…): neither TP nor FP;
- every other predicted T span is a false positive;
- FP rate: the share of rows without any gold T span where at least one T false positive was found.

Data: the shared presidio-research file and tests/data/pii_synthetic.jsonl (bench/make_pii_synthetic.py).
ADDRESS is scored on the presidio file only (the synthetic set has no addresses) and also per split:
the address detector was designed looking at rows whose index % 3 != 0 ("dev") only; rows with
index % 3 == 0 ("holdout") were scored once the design was fixed.
Run: `python bench/eval_pii.py [-v] [--ner]` (Markdown tables, as in docs/guardrails.md; -v lists
misses and false positives; --ner adds PERSON from the optional NER engine, whose named places
then also help ADDRESS).
tests/policies/test_pii_quality.py imports this module and holds the figures to the targets.
"""

from __future__ import annotations

import os

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sluice.policies.guardrails.pii import REGEX_TYPES, STRUCTURED_TYPES, Finding, detect  # noqa: E402

# The shared evaluation data: $SLUICE_DATASETS, else ../shared/datasets beside the checkout,
# else the workplace's copy.
DATASETS = Path(os.environ.get("SLUICE_DATASETS") or next(
    (d for d in (ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")) if d.is_dir()),
    ROOT.parent / "shared" / "datasets"))
PRESIDIO = DATASETS / "pii_presidio-research_synth_v2.jsonl"
SYNTHETIC = ROOT / "tests" / "data" / "pii_synthetic.jsonl"
DATASETS = {"presidio-research synth v2": PRESIDIO, "synthetic (tests/data)": SYNTHETIC}
REPORTED_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS", "SECRET", "ADDRESS")
TARGET = 0.95


@dataclass
class TypeScore:
    gold: int = 0
    found: int = 0  # gold spans found
    true_positives: int = 0  # predictions that match a gold span
    false_positives: int = 0
    rows_without: int = 0
    rows_without_with_fp: int = 0
    fp_examples: list[str] = field(default_factory=list)
    missed_examples: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def fp_rate(self) -> float:
        return self.rows_without_with_fp / self.rows_without if self.rows_without else 0.0

    def add(self, other: "TypeScore") -> None:
        for name in ("gold", "found", "true_positives", "false_positives", "rows_without", "rows_without_with_fp"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def load_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def _matches(prediction: Finding, span: dict) -> bool:
    needed = (span["end"] - span["start"]) / 2
    return _overlap(prediction.start, prediction.end, span["start"], span["end"]) >= needed


def score_row(text: str, gold: list[dict], predictions: list[Finding], kind: str) -> TypeScore:
    """One row's contribution to type ``kind``."""
    score = TypeScore()
    gold_of_kind = [span for span in gold if span["type"] == kind]
    others = [span for span in gold if span["type"] == "OTHER"]
    predicted = [p for p in predictions if p.type == kind]
    score.gold = len(gold_of_kind)
    for span in gold_of_kind:
        if any(_matches(p, span) for p in predicted):
            score.found += 1
        else:
            score.missed_examples.append(text[span["start"] : span["end"]])
    for prediction in predicted:
        if any(_matches(prediction, span) for span in gold_of_kind):
            score.true_positives += 1
        elif not any(_overlap(prediction.start, prediction.end, s["start"], s["end"]) for s in others):
            score.false_positives += 1
            score.fp_examples.append(prediction.text)
    if not gold_of_kind:
        score.rows_without = 1
        score.rows_without_with_fp = int(score.false_positives > 0)
    return score


def evaluate(rows: Iterable[dict], types: Iterable[str] = REPORTED_TYPES) -> dict[str, TypeScore]:
    """Per-type scores plus "structured (micro)" over the six structured identifier types.

    PERSON in ``types`` runs the optional NER engine too (it needs the `ner` extra).
    """
    kinds = list(types)
    scores = {kind: TypeScore() for kind in kinds}
    detect_types = set(REGEX_TYPES) | ({"PERSON"} & set(kinds))
    for row in rows:
        predictions = detect(row["text"], detect_types)
        for kind in kinds:
            row_score = score_row(row["text"], row["spans"], predictions, kind)
            scores[kind].add(row_score)
            scores[kind].fp_examples += row_score.fp_examples
            scores[kind].missed_examples += row_score.missed_examples
    micro = TypeScore()
    for kind in kinds:
        if kind in STRUCTURED_TYPES:
            micro.add(scores[kind])
    scores["structured (micro)"] = micro
    return scores


def split_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """The address detector's design rows and the rows held out until it was fixed."""
    return {
        "dev (index % 3 != 0)": [row for index, row in enumerate(rows) if index % 3],
        "holdout (index % 3 == 0)": [row for index, row in enumerate(rows) if index % 3 == 0],
    }


def markdown_table(scores: dict[str, TypeScore]) -> str:
    lines = [
        "| type | gold spans | found | predicted | precision | recall | F1 | FP rate (rows without type) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in scores.items():
        if s.gold == 0 and s.true_positives + s.false_positives == 0:
            continue
        predicted = s.true_positives + s.false_positives
        lines.append(
            f"| {kind} | {s.gold} | {s.found} | {predicted} | {s.precision:.3f} | {s.recall:.3f} | "
            f"{s.f1:.3f} | {s.fp_rate:.4f} ({s.rows_without_with_fp}/{s.rows_without}) |"
        )
    return "\n".join(lines)


def main() -> None:
    verbose = "-v" in sys.argv
    types = REPORTED_TYPES + (("PERSON",) if "--ner" in sys.argv else ())
    for name, path in DATASETS.items():
        rows = load_rows(path)
        scores = evaluate(rows, types)
        print(f"### {name}: {len(rows)} rows\n\n{markdown_table(scores)}\n")
        if path == PRESIDIO:
            address_types = ("ADDRESS", "PERSON") if "--ner" in sys.argv else ("ADDRESS",)
            for split, split_rows_ in split_rows(rows).items():
                split_scores = evaluate(split_rows_, address_types)
                del split_scores["structured (micro)"]
                print(f"ADDRESS, {split}: {len(split_rows_)} rows\n\n{markdown_table(split_scores)}\n")
        if verbose:
            for kind, s in scores.items():
                if s.fp_examples or s.missed_examples:
                    print(f"{kind}: FP {s.fp_examples[:15]}\n  missed {s.missed_examples[:15]}")


if __name__ == "__main__":
    main()
