"""How often would the semantic cache serve a wrong answer? An evaluation on labelled prompt pairs.

For each pair ``(a, b)`` of tests/data/paraphrase_pairs.jsonl the question is: with ``b``'s answer
cached, is it right to serve it for ``a``? A **hit** is ``cosine(a, b) >= threshold`` (and, with
the guard, ``signatures_compatible``); it is correct when the pair is labelled "paraphrase".

* precision = correct hits / hits (the issue's target: >= 0.95)
* recall    = correct hits / paraphrase pairs
* hit rate  = hits / all pairs

The threshold is chosen on the ``dev`` split: the lowest one from which precision stays >= the
target at every higher threshold. The ``holdout`` split (pairs written after the guard's rules
were fixed) is then scored at that threshold, and a crowd test puts every ``b`` of the file in
one ``SemanticIndex`` scope and asks it for each ``a``: a hit on any other pair's ``b`` is wrong.

    .venv/bin/python bench/eval_semantic_cache.py                # print the tables
    .venv/bin/python bench/eval_semantic_cache.py --write-docs   # and update docs/caching.md
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sluice.policies.semantic_cache import SemanticIndex, prompt_signature, signatures_compatible
from sluice.routing.local_embedder import LocalOnnxEmbedder

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "tests" / "data" / "paraphrase_pairs.jsonl"
DOCS = ROOT / "docs" / "caching.md"
START, END = "<!-- semantic-eval:start -->", "<!-- semantic-eval:end -->"
TARGET = 0.95
GRID = [round(t, 2) for t in np.arange(0.50, 0.995, 0.01)]


@dataclass(frozen=True)
class Score:
    threshold: float
    hits: int
    correct: int
    positives: int
    total: int

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


@dataclass
class Pairs:
    rows: list[dict]
    a: np.ndarray  # (n, dim) unit vectors
    b: np.ndarray
    cosine: np.ndarray
    paraphrase: np.ndarray  # bool
    guard_ok: np.ndarray  # bool

    def subset(self, mask: np.ndarray) -> Pairs:
        rows = [r for r, keep in zip(self.rows, mask) if keep]
        return Pairs(rows, self.a[mask], self.b[mask], self.cosine[mask], self.paraphrase[mask], self.guard_ok[mask])


def load_rows(path: Path = PAIRS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def embed_pairs(rows: list[dict], embedder: LocalOnnxEmbedder) -> Pairs:
    a = embedder.embed_sync([r["a"] for r in rows])
    b = embedder.embed_sync([r["b"] for r in rows])
    guard = [signatures_compatible(prompt_signature(r["a"]), prompt_signature(r["b"])) for r in rows]
    return Pairs(rows, a, b, np.einsum("ij,ij->i", a, b), np.array([r["label"] == "paraphrase" for r in rows]),
                 np.array(guard))


def score(pairs: Pairs, threshold: float, *, guard: bool) -> Score:
    hit = pairs.cosine >= threshold
    if guard:
        hit &= pairs.guard_ok
    return Score(threshold, int(hit.sum()), int((hit & pairs.paraphrase).sum()), int(pairs.paraphrase.sum()),
                 len(pairs.rows))


def choose_threshold(pairs: Pairs, *, guard: bool, target: float = TARGET) -> float | None:
    """The lowest grid threshold from which precision stays >= ``target`` all the way up."""
    chosen = None
    for threshold in reversed(GRID):
        result = score(pairs, threshold, guard=guard)
        if result.hits and result.precision < target:
            break
        if result.hits:
            chosen = threshold
    return chosen


def crowd(pairs: Pairs, threshold: float) -> Score:
    """Every ``b`` in one scope; ask for each ``a``.

    Right: its own ``b`` when the pair is a paraphrase, or any ``b`` with the same normalised
    words as ``a``. Any other hit counts as wrong, even when it happens to be a rewording of
    ``a`` that no label covers, so this precision is a lower bound.
    """
    index = SemanticIndex(threshold=threshold, max_entries=len(pairs.rows) + 1)
    signatures_b = [prompt_signature(row["b"]) for row in pairs.rows]
    for i, signature in enumerate(signatures_b):
        index.add("eval", pairs.b[i], str(i), ttl=3600, signature=signature)
    hits = correct = 0
    for i, row in enumerate(pairs.rows):
        signature = prompt_signature(row["a"])
        match = index.nearest("eval", pairs.a[i], signature)
        if match is not None:
            j = int(match.entry_key)
            hits += 1
            correct += int((j == i and bool(pairs.paraphrase[i])) or signatures_b[j] == signature)
    return Score(threshold, hits, correct, int(pairs.paraphrase.sum()), len(pairs.rows))


def false_hits_by_kind(pairs: Pairs, threshold: float) -> Counter:
    hit = (pairs.cosine >= threshold) & pairs.guard_ok & ~pairs.paraphrase
    return Counter(r["kind"] for r, h in zip(pairs.rows, hit) if h)


def _row(s: Score, g: Score) -> str:
    return (f"| {s.threshold:.2f} | {s.precision:.3f} | {s.recall:.3f} | {s.hit_rate:.3f} "
            f"| {g.precision:.3f} | {g.recall:.3f} | {g.hit_rate:.3f} |")


def sweep_table(pairs: Pairs, chosen: float | None) -> str:
    lines = ["| threshold | precision (cosine) | recall | hit rate | precision (cosine + guard) | recall | hit rate |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    shown = sorted({t for t in GRID if round(t * 100) % 4 == 0 and t >= 0.6} | ({chosen} if chosen else set()))
    for t in shown:
        line = _row(score(pairs, t, guard=False), score(pairs, t, guard=True))
        lines.append(line.replace(f"| {t:.2f} |", f"| **{t:.2f}** |") if t == chosen else line)
    return "\n".join(lines)


def report(pairs: Pairs, seconds: float) -> tuple[str, float | None]:
    dev = pairs.subset(np.array([r.get("split", "dev") == "dev" for r in pairs.rows]))
    holdout = pairs.subset(np.array([r.get("split") == "holdout" for r in pairs.rows]))
    chosen = choose_threshold(dev, guard=True)
    cosine_only = choose_threshold(dev, guard=False)
    kinds = Counter(r["label"] for r in pairs.rows)
    out = [f"Pairs: {len(pairs.rows)} ({kinds['paraphrase']} paraphrase, {kinds['different']} different); "
           f"dev {len(dev.rows)}, holdout {len(holdout.rows)}. Embedded in {seconds:.1f} s "
           f"with the local ONNX paraphrase-MiniLM-L3-v2.", "",
           "Dev split, every pair scored on its own:", "", sweep_table(dev, chosen), ""]
    out.append(f"Cosine alone: {'no threshold reaches' if cosine_only is None else 'first reaches'} "
               f"precision {TARGET} on the dev split" + ("." if cosine_only is None else f" at {cosine_only:.2f}."))
    if chosen is None:
        out.append(f"With the guard: no threshold reaches precision {TARGET}.")
        return "\n".join(out), None
    summary = [("dev", score(dev, chosen, guard=True)), ("holdout", score(holdout, chosen, guard=True)),
               ("all pairs", score(pairs, chosen, guard=True)), ("crowd, all pairs in one scope", crowd(pairs, chosen))]
    out += [f"**Chosen threshold: {chosen:.2f}** (cosine + guard; lowest from which dev precision stays "
            f">= {TARGET}).", "", "| at the chosen threshold | hits | precision | recall | hit rate |",
            "|---|---:|---:|---:|---:|"]
    out += [f"| {name} | {s.hits} | {s.precision:.3f} | {s.recall:.3f} | {s.hit_rate:.3f} |" for name, s in summary]
    wrong = false_hits_by_kind(pairs, chosen)
    out += ["", "Wrong hits left at the chosen threshold, by kind of pair: "
            + (", ".join(f"{k} {n}" for k, n in wrong.most_common()) or "none") + "."]
    return "\n".join(out), chosen


def write_docs(text: str, path: Path = DOCS) -> None:
    doc = path.read_text(encoding="utf-8")
    head, start, rest = doc.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{path} has no {START} … {END} block to replace")
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--write-docs", action="store_true", help=f"replace the results block of {DOCS.name}")
    args = parser.parse_args()
    rows = load_rows(args.pairs)
    embedder = LocalOnnxEmbedder()
    started = time.perf_counter()
    pairs = embed_pairs(rows, embedder)
    text, chosen = report(pairs, time.perf_counter() - started)
    embedder.close()
    print(text)
    print(f"\nchosen threshold: {chosen if chosen is None else f'{chosen:.2f}'}")
    if args.write_docs:
        write_docs(text)
        print(f"updated {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
