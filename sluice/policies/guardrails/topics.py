"""Topic allow and deny lists: keep a deployment to its subject, keep some subjects out.

A ``Topic`` has keywords and, optionally, example sentences. A text *matches* a topic when one
of its keywords occurs as a whole word or phrase (case-insensitive; a simple plural — ``s``,
``es``, ``y``→``ies`` — counts too; the spaces inside a phrase match any whitespace), or, when
an embedder is given, when the text is semantically close to the topic's examples: the cosine
similarity between the text and the normalised mean of the examples (the centroid) is at least
``threshold``.

``TopicMatcher.check`` reports a violation when the text matches a denied topic, or when an
allow list is set and the text matches none of the allowed topics. Deny wins over allow.

Embedders are duck-typed: any object with ``async embed(texts) -> list[list[float]]`` (the
local ONNX embedder of semantic routing is one). Sentence embedders read only the start of a
long text, so a text is embedded in pieces of at most ``chunk_chars`` characters — a paragraph
each, longer ones cut at sentence ends — at most ``max_chunks`` of them from the start, and each
topic keeps its best piece. Similarities depend on the embedding model: tune ``threshold`` per
model. With paraphrase-MiniLM-L3-v2 the on-topic questions of the tests
(tests/policies/test_guardrail_topics.py) score 0.44-0.60 against topics of three or four
examples and the unrelated ones at most 0.22: there 0.4 separates better than the default 0.5.

When the embedder fails, ``fail="open"`` (the default) decides on keywords alone and says so in
the outcome's ``error``; a text no keyword places on an allowed topic is then allowed, since
whether it is on topic is unknown. ``fail="closed"`` blocks.

``deny_keywords`` is the synchronous, keyword-only part, for checking a stream as it arrives
(``sluice.policies.guardrails.streaming``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from sluice.policies.guardrails.verdict import ACTIONS, Verdict
from sluice.policies.guardrails.outcome import CheckOutcome


class Embedder(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Topic:
    name: str
    keywords: Sequence[str] = ()
    examples: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a topic needs a name")
        if isinstance(self.keywords, str) or isinstance(self.examples, str):
            raise ValueError(f"topic {self.name!r}: keywords and examples are lists of strings")
        if not any(k.strip() for k in self.keywords) and not any(e.strip() for e in self.examples):
            raise ValueError(f"topic {self.name!r} needs keywords or examples")


@dataclass(frozen=True, slots=True)
class TopicHit:
    topic: str
    score: float
    why: str  # "keyword 'refund'" or "similarity 0.62"


def keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``keywords`` as whole words or phrases, plurals included."""
    alternatives = sorted({_keyword_regex(k) for k in keywords if k.strip()}, key=len, reverse=True)
    if not alternatives:
        return None
    # (?<!\w) / (?!\w) rather than \b: keywords may start or end with a symbol ("c++", ".net").
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _keyword_regex(keyword: str) -> str:
    words = keyword.strip().split()
    body = r"\s+".join(re.escape(w) for w in words)
    last = words[-1]
    if not last[-1].isalpha():
        return body
    if len(last) > 1 and last[-1] in "yY" and last[-2].lower() not in "aeiou":
        return body[:-1] + r"(?:y|ies)"  # policy → policies
    if last[-1] in "sS":
        return body + r"(?:es)?"  # bus → buses
    return body + r"(?:s|es)?"  # refund → refunds, tax → taxes


class TopicMatcher:
    """Allow/deny topic lists over a text; see the module docs for the rules."""

    def __init__(self, allow: Sequence[Topic] | None, deny: Sequence[Topic] = (), embedder: Embedder | None = None,
                 threshold: float = 0.5, *, action: str = "block", name: str = "topics",
                 fail: Literal["open", "closed"] = "open", chunk_chars: int = 500, max_chunks: int = 8) -> None:
        if allow is not None and not allow:
            raise ValueError("an empty allow list would refuse everything: leave it unset instead")
        if action not in ACTIONS or action in ("allow", "redact"):
            raise ValueError(f"a topic violation can 'block' or 'flag', not {action!r}")
        if fail not in ("open", "closed"):
            raise ValueError(f"fail must be 'open' or 'closed', not {fail!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
        names = [t.name for t in (*deny, *(allow or ()))]
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be unique across the allow and deny lists: {names}")
        self.allow = list(allow) if allow is not None else None
        self.deny = list(deny)
        self.embedder, self.threshold = embedder, threshold
        self.action, self.name, self.fail = action, name, fail
        self.chunk_chars, self.max_chunks = chunk_chars, max_chunks
        self._patterns = {t.name: keyword_pattern(t.keywords) for t in (*self.deny, *(self.allow or ()))}
        self._centroids: dict[str, np.ndarray] | None = None
        self._lock = asyncio.Lock()

    # ---- keywords (synchronous) -----------------------------------------------------------

    def keyword_hits(self, text: str, topics: Sequence[Topic]) -> list[TopicHit]:
        hits = []
        for topic in topics:
            pattern = self._patterns[topic.name]
            found = pattern.search(text) if pattern is not None else None
            if found is not None:
                hits.append(TopicHit(topic.name, 1.0, f"keyword {found.group(0)!r}"))
        return hits

    def deny_keywords(self, text: str) -> Verdict | None:
        """The deny list's keywords only: a ``str -> Verdict | None`` check for stream scanning."""
        hits = self.keyword_hits(text, self.deny)
        return self._denied(hits[0]) if hits else None

    # ---- embeddings ---------------------------------------------------------------------

    async def start(self) -> None:
        """Embed every topic's examples, once. Called by ``check``; call it at start-up to load early."""
        if self.embedder is None or self._centroids is not None:
            return
        async with self._lock:
            if self._centroids is None:
                self._centroids = await self._build_centroids()

    async def _build_centroids(self) -> dict[str, np.ndarray]:
        topics = [t for t in (*self.deny, *(self.allow or ())) if _has_examples(t)]
        texts = [e.strip() for t in topics for e in t.examples if e.strip()]
        vectors = _unit_rows(await self.embedder.embed(texts)) if texts else np.zeros((0, 0), np.float32)
        if len(vectors) != len(texts):
            raise ValueError(f"embedder returned {len(vectors)} vectors for {len(texts)} examples")
        centroids, at = {}, 0
        for topic in topics:
            count = sum(1 for e in topic.examples if e.strip())
            centroids[topic.name] = _unit_rows(vectors[at:at + count].sum(axis=0, keepdims=True))[0]
            at += count
        return centroids

    async def similarities(self, text: str) -> dict[str, float]:
        """Each topic with examples: its best similarity over the text's pieces."""
        await self.start()
        if not self._centroids:
            return {}
        pieces = chunks(text, self.chunk_chars, self.max_chunks)
        if not pieces:
            return {}
        vectors = _unit_rows(await self.embedder.embed(pieces))
        return {name: float(np.max(vectors @ centroid)) for name, centroid in self._centroids.items()}

    # ---- the check ----------------------------------------------------------------------

    async def check(self, text: str) -> CheckOutcome:
        if not text.strip():
            return CheckOutcome(Verdict(self.name, "allow"))
        error = None
        try:
            sims = await self.similarities(text) if self.embedder is not None else {}
        except Exception as exc:  # an embedding outage must not take chat down unless asked to
            error = f"embedder unavailable: {type(exc).__name__}: {exc}"
            if self.fail == "closed":
                return CheckOutcome(Verdict(self.name, "block", 1.0, (f"{error} (the check fails closed)",)),
                                    error=error)
            sims = {}
        denied = self._hits(text, self.deny, sims)
        if denied:
            return CheckOutcome(self._denied(max(denied, key=lambda h: h.score)), error=error)
        if self.allow is not None:
            allowed = self._hits(text, self.allow, sims)
            if not allowed and error is not None and any(_has_examples(t) for t in self.allow):
                # Failing open: without the embedder, "on none of the allowed topics" is not known.
                return CheckOutcome(Verdict(self.name, "allow", 0.0, (f"allow list not judged: {error}",)),
                                    error=error)
            if not allowed:
                best = max((sims.get(t.name, 0.0) for t in self.allow), default=0.0)
                names = ", ".join(t.name for t in self.allow)
                verdict = Verdict(self.name, self.action, round(max(0.0, 1.0 - best), 4),
                                  (f"off topic: matches none of the allowed topics ({names})",))
                return CheckOutcome(verdict, error=error)
            best_hit = max(allowed, key=lambda h: h.score)
            return CheckOutcome(Verdict(self.name, "allow", 0.0, (f"on topic '{best_hit.topic}' ({best_hit.why})",)),
                                error=error)
        return CheckOutcome(Verdict(self.name, "allow"), error=error)

    def _hits(self, text: str, topics: Sequence[Topic], sims: dict[str, float]) -> list[TopicHit]:
        hits = self.keyword_hits(text, topics)
        matched = {h.topic for h in hits}
        for topic in topics:
            score = sims.get(topic.name)
            if topic.name not in matched and score is not None and score >= self.threshold:
                hits.append(TopicHit(topic.name, round(score, 4), f"similarity {score:.2f}"))
        return hits

    def _denied(self, hit: TopicHit) -> Verdict:
        return Verdict(self.name, self.action, hit.score, (f"denied topic '{hit.topic}' ({hit.why})",))


def _has_examples(topic: Topic) -> bool:
    return any(e.strip() for e in topic.examples)


def chunks(text: str, size: int, limit: int) -> list[str]:
    """Up to ``limit`` pieces of at most ``size`` characters from the start of ``text``.

    A paragraph (a line) starts a new piece, so a passage on one subject tends to get a piece of
    its own; short lines (list items) are gathered until a piece reaches ``size // 4``. A longer
    paragraph is cut at a sentence end in a piece's second half, else at a space.
    """
    pieces: list[str] = []
    gathered = ""
    for line in text[: 2 * size * limit].split("\n"):  # only the start is used: do not split a huge text
        line = line.strip()
        if not line:
            continue
        if gathered and (len(gathered) >= size // 4 or len(gathered) + 1 + len(line) > size):
            pieces.append(gathered)
            gathered = ""
        if len(line) > size:
            pieces.extend(_cut_paragraph(line, size, limit - len(pieces)))
        else:
            gathered = f"{gathered}\n{line}" if gathered else line
        if len(pieces) >= limit:
            return pieces[:limit]
    if gathered:
        pieces.append(gathered)
    return pieces[:limit]


def _cut_paragraph(text: str, size: int, limit: int) -> list[str]:
    pieces: list[str] = []
    at, end = 0, len(text)
    while at < end and len(pieces) < limit:
        stop = min(at + size, end)
        if stop < end:
            stop = _piece_end(text, at + size // 2, stop) or stop
        piece = text[at:stop].strip()
        if piece:
            pieces.append(piece)
        at = stop
    return pieces


def _piece_end(text: str, low: int, high: int) -> int | None:
    sentence = max(text.rfind(". ", low, high), text.rfind("? ", low, high), text.rfind("! ", low, high))
    if sentence >= 0:
        return sentence + 2
    space = text.rfind(" ", low, high)
    return space + 1 if space >= 0 else None


def _unit_rows(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embedder returned vectors of shape {arr.shape}, expected (n, dim)")
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


__all__ = ["Embedder", "Topic", "TopicHit", "TopicMatcher", "chunks", "keyword_pattern"]
