"""What a semantic cache lookup costs: search at 1k / 10k / 50k entries in one scope, and the rest.

Vectors are 384-dimensional (paraphrase-MiniLM-L3-v2's size), unit length, drawn around 500
random topic centres so that neighbours exist as they do for real prompts. For each size the
index is filled, then ``nearest`` is timed for queries near stored vectors (hits) and for
random ones (misses), with exact search and, where the ``voyager`` package is installed, with
the HNSW index. Also timed: inserting, building the HNSW index, the lexical guard, and embedding
a prompt with the local ONNX model (the other half of a lookup).

    .venv/bin/python bench/semantic_cache.py                 # print the table
    .venv/bin/python bench/semantic_cache.py --write-docs    # and update docs/caching.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from sluice.policies import semantic_cache
from sluice.policies.semantic_cache import SemanticIndex, prompt_signature, signatures_compatible

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "caching.md"
START, END = "<!-- semantic-bench:start -->", "<!-- semantic-bench:end -->"
DIM = 384
SIZES = (1_000, 10_000, 50_000)
QUERIES = 400
INSERTS_TIMED = 500


def clustered_vectors(n: int, rng: np.random.Generator, centres: int = 500) -> np.ndarray:
    centre = rng.standard_normal((centres, DIM)).astype(np.float32)
    vectors = centre[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = vectors + 0.02 * rng.standard_normal(vectors.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.99 * (len(ordered) - 1))] * 1e3


def time_lookups(index: SemanticIndex, queries: np.ndarray) -> tuple[list[float], int]:
    samples, hits = [], 0
    for query in queries:
        started = time.perf_counter()
        match = index.nearest("scope", query)
        samples.append(time.perf_counter() - started)
        hits += match is not None
    return samples, hits


def measure(n: int, *, ann: bool, rng: np.random.Generator) -> dict:
    vectors = clustered_vectors(n, rng)
    index = SemanticIndex(threshold=0.9, max_entries=n + 1, ann_threshold=semantic_cache.DEFAULT_ANN_THRESHOLD
                          if ann else math.inf)
    last = n - INSERTS_TIMED
    for i, vector in enumerate(vectors[:last]):
        index.add("scope", vector, f"k{i}", ttl=3600)
    started = time.perf_counter()
    index.wait_for_ann_builds()  # a real gateway keeps serving (exact search) meanwhile
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    for i, vector in enumerate(vectors[last:], start=last):
        index.add("scope", vector, f"k{i}", ttl=3600)
    add_ms = (time.perf_counter() - started) / INSERTS_TIMED * 1e3
    picks = rng.integers(0, n, QUERIES)
    hit_samples, hits = time_lookups(index, near(vectors[picks], rng))
    miss_samples, _ = time_lookups(index, clustered_vectors(QUERIES, np.random.default_rng(12345)))
    index.close()
    return {"n": n, "ann": index.uses_ann("scope"), "add_ms": add_ms, "build_wait_s": build_s,
            "hit": percentiles_ms(hit_samples), "miss": percentiles_ms(miss_samples), "found": hits / QUERIES}


def guard_cost() -> float:
    a = "Convert 10 miles to kilometers and explain the formula you used, step by step."
    b = prompt_signature("Please convert 10 miles into kilometers and explain the formula step by step.")
    started = time.perf_counter()
    for _ in range(2000):
        signatures_compatible(prompt_signature(a), b)
    return (time.perf_counter() - started) / 2000 * 1e3


def embed_cost() -> tuple[float, float] | None:
    try:
        from sluice.routing.local_embedder import LocalOnnxEmbedder
    except ImportError:
        return None
    embedder = LocalOnnxEmbedder()
    prompts = ["How do I reverse a list in Python?",
               "I'm building a REST API in Flask and I want to add authentication with JSON Web Tokens. How "
               "should I structure the login endpoint and protect the other routes?"]
    results = []
    for prompt in prompts:
        embedder.embed_sync([prompt])
        samples = []
        for _ in range(50):
            started = time.perf_counter()
            embedder.embed_sync([prompt])
            samples.append(time.perf_counter() - started)
        results.append(statistics.median(samples) * 1e3)
    embedder.close()
    return results[0], results[1]


def report(rows: list[dict], guard_ms: float, embed_ms: tuple[float, float] | None) -> str:
    lines = ["| entries in the scope | search | lookup, hit: median / p99 | lookup, miss: median / p99 "
             "| queries that found their neighbour | insert | waited for the HNSW build |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {'HNSW (voyager)' if r['ann'] else 'exact'} "
                     f"| {r['hit'][0]:.3f} / {r['hit'][1]:.3f} ms | {r['miss'][0]:.3f} / {r['miss'][1]:.3f} ms "
                     f"| {r['found']:.1%} | {r['add_ms']:.3f} ms | {r['build_wait_s']:.1f} s |")
    lines += ["", f"Guard (signature of the new prompt + comparison with one candidate): {guard_ms:.3f} ms."]
    if embed_ms:
        lines.append(f"Embedding the prompt with the local ONNX model (one thread): {embed_ms[0]:.1f} ms for a "
                     f"short question, {embed_ms[1]:.1f} ms for a 30-word one.")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOCS.read_text(encoding="utf-8")
    head, start, rest = doc.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{DOCS} has no {START} … {END} block to replace")
    DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    rows = []
    for n in SIZES:
        rows.append(measure(n, ann=False, rng=rng))
        if n >= semantic_cache.DEFAULT_ANN_THRESHOLD and semantic_cache.ANN_AVAILABLE:
            rows.append(measure(n, ann=True, rng=rng))
    text = report(rows, guard_cost(), embed_cost())
    print(text)
    if args.write_docs:
        write_docs(text)
        print(f"updated {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
