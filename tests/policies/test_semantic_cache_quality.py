"""The semantic cache must keep serving the right answer: hit precision at the documented threshold.

Recomputes, with the real local embedder, the figures that bench/eval_semantic_cache.py wrote
into docs/caching.md, and fails if precision at the documented threshold drops below 0.95 (a
new embedder, a guard change or a threshold change must be re-evaluated, not slipped in).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from sluice.policies.semantic_cache import DEFAULT_THRESHOLD, prompt_signature, signatures_compatible
from sluice.routing.local_embedder import LocalOnnxEmbedder

from tests.bench_scripts import ROOT, load_bench_script


evaluation = load_bench_script("eval_semantic_cache")

TARGET = 0.95

@pytest.fixture(scope="session")
def embedder():
    emb = LocalOnnxEmbedder()
    yield emb
    emb.close()

@pytest.fixture(scope="module")
def pairs(embedder) -> evaluation.Pairs:
    return evaluation.embed_pairs(evaluation.load_rows(), embedder)


def documented_threshold() -> float:
    text = (ROOT / "docs" / "caching.md").read_text(encoding="utf-8")
    found = re.search(r"\*\*Chosen threshold: (\d\.\d+)\*\*", text)
    assert found, "docs/caching.md no longer states the chosen threshold"
    return float(found.group(1))


def split(pairs: evaluation.Pairs, name: str) -> evaluation.Pairs:
    return pairs.subset(np.array([row["split"] == name for row in pairs.rows]))


def test_the_labelled_set_is_large_balanced_and_clean():
    rows = evaluation.load_rows()
    labels = Counter(row["label"] for row in rows)
    assert len(rows) >= 240 and set(labels) == {"paraphrase", "different"}
    assert labels["different"] / len(rows) >= 0.40
    assert {row["split"] for row in rows} == {"dev", "holdout"}
    assert all(row["a"].strip() and row["b"].strip() and row["a"] != row["b"] for row in rows)
    assert len({(row["a"], row["b"]) for row in rows}) == len(rows)
    hard = {"numbers", "entity", "programming_language", "human_language", "negation", "task", "date", "unit",
            "same_topic", "direction"}
    assert sum(row["kind"] in hard for row in rows if row["label"] == "different") >= 0.8 * labels["different"]


def test_code_and_docs_use_the_same_threshold():
    assert DEFAULT_THRESHOLD == documented_threshold()


def test_precision_at_the_documented_threshold_meets_the_target(pairs):
    threshold = documented_threshold()
    for name in ("dev", "holdout"):
        result = evaluation.score(split(pairs, name), threshold, guard=True)
        assert result.precision >= TARGET, f"{name}: precision {result.precision:.3f} at {threshold}"
        assert result.recall >= 0.6, f"{name}: recall {result.recall:.3f} at {threshold}: the cache would rarely hit"
    assert evaluation.crowd(pairs, threshold).precision >= TARGET


def test_the_threshold_is_still_the_lowest_that_meets_the_target(pairs):
    assert evaluation.choose_threshold(split(pairs, "dev"), guard=True) == documented_threshold()


def test_cosine_alone_would_not_be_safe(pairs):
    """Why the guard exists: without it, every threshold serves too many wrong answers."""
    assert evaluation.choose_threshold(split(pairs, "dev"), guard=False) is None


def test_guard_alone_decides_the_hard_cases():
    swaps = [row for row in evaluation.load_rows() if row["kind"] in ("direction", "unit", "numbers")]
    refused = sum(not signatures_compatible(prompt_signature(r["a"]), prompt_signature(r["b"])) for r in swaps)
    assert refused >= 0.9 * len(swaps)
