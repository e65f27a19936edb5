"""The moderation detector must keep its measured quality (figures in docs/guardrails.md).

Recomputes, with the shipped model, what bench/eval_moderation.py reports on
tests/data/moderation_cases.jsonl, with a small margin under the documented figures. The
``holdout`` split was written after the rules were frozen: its figures are the honest ones, and
a change that helps dev but loses holdout recall is a regression. A new model, rule or
threshold must be re-evaluated and the docs updated, not slipped in.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from sluice.policies.guardrails import moderation

from tests.bench_scripts import ROOT, load_bench_script


evaluation = load_bench_script("eval_moderation")
training = load_bench_script("train_moderation")

@pytest.fixture(scope="module")
def rows():
    return evaluation.score_cases()


def test_cases_file_is_labelled_and_large_enough():
    cases = evaluation.load_cases()
    assert len({c["text"] for c in cases}) == len(cases)
    assert {c["split"] for c in cases} == {"dev", "holdout"}
    assert all(set(c["labels"]) <= set(moderation.CATEGORIES) for c in cases)
    dev = [c for c in cases if c["split"] == "dev"]
    per_category = Counter(label for c in dev for label in c["labels"])
    assert all(per_category[c] >= 60 for c in moderation.CATEGORIES), per_category
    assert sum(1 for c in dev if not c["labels"]) >= 250
    holdout = [c for c in cases if c["split"] == "holdout"]
    assert sum(1 for c in holdout if c["labels"]) >= 90 and sum(1 for c in holdout if not c["labels"]) >= 60


def test_overall_target_on_the_whole_file(rows):
    figures = evaluation.overall_figures(rows)
    assert figures.recall >= 0.90, figures
    assert figures.fpr <= 0.05, figures


def test_dev_split_keeps_its_figures(rows):
    dev = evaluation.split(rows, "dev")
    overall = evaluation.overall_figures(dev)
    assert overall.recall >= 0.98 and overall.fpr <= 0.005, overall
    for category in moderation.CATEGORIES:
        figures = evaluation.category_figures(dev, category)
        assert figures.recall >= 0.92, (category, figures)
        assert figures.fpr <= 0.005, (category, figures)
        assert figures.precision >= 0.85, (category, figures)


def test_holdout_split_keeps_its_figures(rows):
    holdout = evaluation.split(rows, "holdout")
    overall = evaluation.overall_figures(holdout)
    assert overall.recall >= 0.72, overall
    assert overall.fpr <= 0.05, overall
    assert overall.precision >= 0.95, overall


def test_every_evasion_case_is_caught(rows):
    evasions = [r for r in rows if r.labels and r.note.startswith("evasion")]
    assert len(evasions) >= 15 and all(r.flagged for r in evasions)


def test_training_rows_never_copy_an_evaluation_case():
    generated = [text for text, _ in training.training_rows(random.Random(training.SEED))]
    cases = [c["text"] for c in evaluation.load_cases()]
    assert not set(generated) & set(cases)
    assert not training.near_duplicates(generated, cases)


def test_docs_state_the_threshold_in_the_code():
    text = (ROOT / "docs" / "guardrails.md").read_text(encoding="utf-8")
    found = re.search(r"\*\*Moderation threshold: (\d\.\d+)\*\*", text)
    assert found, "docs/guardrails.md no longer states the moderation threshold"
    assert float(found.group(1)) == moderation.DEFAULT_THRESHOLD
