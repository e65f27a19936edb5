"""The injection detector must keep its measured quality (figures in docs/guardrails.md).

Recomputes, with the shipped model, what bench/eval_injection.py reports, on data never trained
on: the held-out split of the shared dataset, its length-matched subset, and Sluice's own cases.
A new model, rule or threshold must be re-evaluated, not slipped in.
"""

from __future__ import annotations

import re

import pytest

from sluice.policies.guardrails import injection

from tests.bench_scripts import ROOT, load_bench_script


RECALL_TARGET = 0.90
FPR_TARGET = 0.05

evaluation = load_bench_script("eval_injection")

needs_dataset = pytest.mark.skipif(
    not evaluation.training.DATASET.exists(), reason=f"dataset not found: {evaluation.training.DATASET}"
)

@pytest.fixture(scope="module")
def held_out():
    return evaluation.held_out()

@pytest.fixture(scope="module")
def cases():
    return evaluation.own_cases()

@needs_dataset
def test_held_out_split_meets_the_target(held_out):
    figures = evaluation.figures(held_out)
    assert figures.n_injection > 150 and figures.n_benign > 150
    assert figures.recall >= RECALL_TARGET, figures
    assert figures.fpr <= FPR_TARGET, figures

@needs_dataset
def test_length_matched_subset_meets_the_target(held_out):
    matched = evaluation.length_matched(held_out)
    figures = evaluation.figures(matched)
    assert figures.n_injection == figures.n_benign >= 50
    assert figures.recall >= RECALL_TARGET, figures
    assert figures.fpr <= FPR_TARGET, figures

@needs_dataset
def test_the_split_never_overlaps_training():
    rows = evaluation.training.load_dataset()
    test = {r["text"] for r in rows if evaluation.training.split_of(r["text"]) == "test"}
    train = {r["text"] for r in rows if evaluation.training.split_of(r["text"]) == "train"}
    assert test and train and not test & train
    written = {text for text, _ in evaluation.training.written_examples()}
    assert not written & {case["text"] for case in evaluation.load_cases()}


def test_sluice_cases_file_is_labelled_and_large_enough():
    rows = evaluation.load_cases()
    assert len(rows) >= 150
    assert {r["label"] for r in rows} == {"injection", "benign"}
    assert {r["source"] for r in rows} == {"user", "tool", "document"}


def test_sluice_cases_keep_their_figures(cases):
    injections = [c for c in cases if c.injection]
    plain_benign = [c for c in cases if c.kind in ("benign", "data")]
    look_alikes = [c for c in cases if c.kind == "lookalike"]
    assert evaluation.figures(injections).recall >= 0.95
    assert evaluation.figures([c for c in cases if c.kind == "indirect"]).recall >= 0.90
    assert evaluation.figures(plain_benign).fpr == 0.0
    # Look-alikes are adversarially close to attacks (docs/guardrails.md lists the misses).
    assert evaluation.figures(look_alikes).fpr <= 0.25


def test_docs_state_the_threshold_in_the_code():
    text = (ROOT / "docs" / "guardrails.md").read_text(encoding="utf-8")
    found = re.search(r"\*\*Injection threshold: (\d\.\d+)\*\* \(prompts\), \*\*(\d\.\d+)\*\* \(data\)", text)
    assert found, "docs/guardrails.md no longer states the injection thresholds"
    assert float(found.group(1)) == injection.DEFAULT_THRESHOLD
    assert float(found.group(2)) == injection.DATA_THRESHOLD
