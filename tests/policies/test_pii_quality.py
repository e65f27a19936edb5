"""PII detection quality: recomputes docs/guardrails.md's figures and fails below the issue's targets.

Targets (issue 6): precision ≥ 0.95 and recall ≥ 0.95 on each structured identifier type (EMAIL,
PHONE, CREDIT_CARD, IBAN, SSN, IP_ADDRESS), on the shared presidio-research set and on the
synthetic set of tests/data. ADDRESS (a default type because its precision is ≥ 0.95) is held to
its measured figures less a small margin, on the whole presidio set and on its design and held-out
rows. A detector change that costs quality must be re-evaluated, not slipped in.
"""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench_script


evaluation = load_bench_script("eval_pii")
STRUCTURED = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS")

@pytest.fixture(scope="module", params=sorted(evaluation.DATASETS))
def scores(request):
    path = evaluation.DATASETS[request.param]
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    return evaluation.evaluate(evaluation.load_rows(path))

@pytest.mark.parametrize("kind", STRUCTURED)
def test_structured_identifiers_meet_the_targets(scores, kind):
    score = scores[kind]
    assert score.gold > 0
    assert score.precision >= evaluation.TARGET, (kind, score.precision, score.fp_examples[:10])
    assert score.recall >= evaluation.TARGET, (kind, score.recall, score.missed_examples[:10])


def test_false_positive_rate_on_rows_without_identifiers(scores):
    assert scores["structured (micro)"].fp_rate <= 0.01


def test_secrets_on_the_synthetic_set():
    scores = evaluation.evaluate(evaluation.load_rows(evaluation.SYNTHETIC), ["SECRET"])
    assert scores["SECRET"].gold >= 30
    assert scores["SECRET"].precision >= evaluation.TARGET and scores["SECRET"].recall >= evaluation.TARGET


def test_the_committed_synthetic_set_is_what_the_script_generates():
    generator = load_bench_script("make_pii_synthetic")
    assert evaluation.load_rows(evaluation.SYNTHETIC) == generator.generate()


def test_synthetic_set_has_the_promised_variety():
    rows = evaluation.load_rows(evaluation.SYNTHETIC)
    assert len(rows) >= 300
    negatives = [row for row in rows if not row["spans"]]
    assert len(negatives) >= 80
    types = {span["type"] for row in rows for span in row["spans"]}
    assert set(STRUCTURED) | {"SECRET"} <= types


def test_scoring_rules():
    """The scorer itself: half-overlap matching, OTHER as don't-care, FP-rate denominators."""
    Finding = evaluation.Finding
    gold = [{"start": 0, "end": 10, "type": "PHONE"}, {"start": 20, "end": 30, "type": "OTHER"}]
    text = "x" * 40
    half = evaluation.score_row(text, gold, [Finding("PHONE", 5, 12, text[5:12], 1.0)], "PHONE")
    assert (half.found, half.true_positives, half.false_positives) == (1, 1, 0)
    short = evaluation.score_row(text, gold, [Finding("PHONE", 6, 12, text[6:12], 1.0)], "PHONE")
    assert (short.found, short.true_positives, short.false_positives) == (0, 0, 1)
    dont_care = evaluation.score_row(text, gold, [Finding("PHONE", 25, 35, text[25:35], 1.0)], "PHONE")
    assert (dont_care.true_positives, dont_care.false_positives) == (0, 0)
    wrong_type = evaluation.score_row(text, gold, [Finding("SSN", 0, 10, text[:10], 1.0)], "SSN")
    assert (wrong_type.false_positives, wrong_type.rows_without, wrong_type.rows_without_with_fp) == (1, 1, 1)


# ADDRESS figures on the presidio set (docs/guardrails.md), less a margin of about two points:
# split -> (precision, recall) floors; measured 0.994/0.953 overall, 1.000/0.971 dev, 0.980/0.911 holdout.
ADDRESS_FLOORS = {"all": (0.97, 0.93), "dev (index % 3 != 0)": (0.98, 0.95), "holdout (index % 3 == 0)": (0.95, 0.89)}


@pytest.fixture(scope="module")
def presidio_rows():
    if not evaluation.PRESIDIO.exists():
        pytest.skip(f"{evaluation.PRESIDIO} is not on this machine")
    return evaluation.load_rows(evaluation.PRESIDIO)


@pytest.mark.parametrize("split", sorted(ADDRESS_FLOORS))
def test_addresses_on_the_presidio_set(presidio_rows, split):
    rows = presidio_rows if split == "all" else evaluation.split_rows(presidio_rows)[split]
    score = evaluation.evaluate(rows, ["ADDRESS"])["ADDRESS"]
    assert score.gold >= (598 if split == "all" else 150)
    precision, recall = ADDRESS_FLOORS[split]
    assert score.precision >= precision, (score.precision, score.fp_examples[:10])
    assert score.recall >= recall, (score.recall, score.missed_examples[:10])
    assert score.fp_rate <= 0.01


def test_no_addresses_in_the_synthetic_set():
    """Its rows are dense with numbers (cards, IBANs, phones, orders, versions) and hold no address."""
    score = evaluation.evaluate(evaluation.load_rows(evaluation.SYNTHETIC), ["ADDRESS"])["ADDRESS"]
    assert score.gold == 0 and score.false_positives == 0, score.fp_examples[:10]
