"""Content moderation by category, offline by default, with optional model-backed backends.

Six categories (``CATEGORIES``): hate, harassment, violence, sexual, self_harm, illegal. Every
backend answers with a ``ModerationResult``: a score per category in 0..1, the categories flagged,
the backend's name and human-readable reasons. This module makes no network calls and imports
nothing of the gateway; backends that need a model take an injected async callable.

**Offline default** (``moderate``), three layers per category:

* **Normalisation**: ``injection.normalise`` (NFKC, invisible characters, Cyrillic/Greek
  look-alikes, leetspeak, dotted letters, embedded base64/hex) plus two views of its own:
  letters spaced out with wider gaps between words ("k i l l   h i m") and chat spelling
  ("u r a loser"). Rules read every view; a match that needed one is reported "via" it.
* **Rules** (``moderation_rules.RULES``): weighted patterns for what makes text harmful rather
  than its topic — requests for operational help, first-person intent, abuse aimed at a person,
  dehumanising claims about a group, explicit sexual content. Benign contexts (defence,
  education and news, medical and crisis support, fiction summaries, software, banter) discount
  the weak rules and the classifier for the categories they cover; strong rules are not
  discounted.
* **Classifier**: one logistic regression per category over the hashed word and character
  n-grams of ``injection.features`` (folded to ``2**MODEL_BITS`` buckets), trained by
  ``bench/train_moderation.py`` on template data and shipped in ``data/moderation_model.json``.
  Below ``CLASSIFIER_FLOOR`` its probability is no evidence; long texts are read in windows and
  the most harmful window counts, so a paragraph cannot hide in a long benign document.

Per category, ``1 - (1 - rules)(1 - classifier)``; flagged at ``DEFAULT_THRESHOLD`` unless a
per-category threshold says otherwise. ``bench/eval_moderation.py`` measures it on
``tests/data/moderation_cases.jsonl`` (figures in docs/guardrails.md, "Content moderation").

**Backends** (the caller does the I/O): ``moderate_with_endpoint`` posts an OpenAI moderation
request through an injected ``call(payload) -> response`` and maps OpenAI's 13 categories to
ours (``OPENAI_CATEGORY_MAP``); ``llama_guard_prompt`` / ``parse_llama_guard`` build and read a
Llama Guard 3 exchange for a guard model on any chat deployment (``LLAMA_GUARD_MAP``).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import unicodedata
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sluice.policies.guardrails import injection
from sluice.policies.guardrails.moderation_rules import (
    BENIGN_CONTEXTS, CONCEAL, CONCEAL_NEEDS, RULES, BenignContext, ModerationRule, word_keys,
)

CATEGORIES = ("hate", "harassment", "violence", "sexual", "self_harm", "illegal")
# Kept after bench/eval_moderation.py: on the holdout split 0.4 adds a point of recall for twice
# the false positives, and here a false positive costs more than a miss (docs/guardrails.md).
DEFAULT_THRESHOLD = 0.5
CLASSIFIER_FLOOR = 0.5  # classifier probabilities up to this count as no evidence
CONCEAL_WEIGHT = 0.35  # "without getting caught" adds to evidence a category already has
MODEL_BITS = 16
MODEL_PATH = Path(__file__).parent / "data" / "moderation_model.json"
WINDOW_WORDS = 64  # classifier windows on long texts
WINDOW_STRIDE = 48
SEGMENT_CHARS = 500  # rules read long texts in overlapping runs of sentences
CONCEAL_RE = re.compile(CONCEAL)


@dataclass(frozen=True, slots=True)
class ModerationResult:
    scores: dict[str, float]  # category -> 0..1
    flagged: tuple[str, ...]  # categories at or above their threshold, in CATEGORIES order
    backend: str  # "offline", "openai", "llama-guard"
    reasons: tuple[str, ...] = ()

    @property
    def max_score(self) -> float:
        return max(self.scores.values(), default=0.0)


def _threshold(category: str, thresholds: Mapping[str, float] | None) -> float:
    if thresholds and category in thresholds:
        return float(thresholds[category])
    return DEFAULT_THRESHOLD


def _flagged(scores: Mapping[str, float], thresholds: Mapping[str, float] | None) -> tuple[str, ...]:
    return tuple(c for c in CATEGORIES if scores.get(c, 0.0) >= _threshold(c, thresholds))


# ---------------------------------------------------------------------------------------------
# Views of a text: the normalised text and its de-obfuscated variants
# ---------------------------------------------------------------------------------------------

# "k i l l   h i m": single characters separated by single spaces, words by two or more.
_SPACED_WORD = re.compile(r"(?<!\S)(?:\S )+\S(?!\S)")
_CHAT_WORDS = {"u": "you", "ur": "your", "r": "are", "ppl": "people", "pls": "please", "plz": "please",
               "t0": "to", "2": "to", "b4": "before", "n": "and", "y0u": "you"}
_CHAT_TOKEN = re.compile(r"(?<![\w'])(?:" + "|".join(sorted(map(re.escape, _CHAT_WORDS), key=len, reverse=True)) + r")(?![\w'])")


@dataclass(frozen=True, slots=True)
class Views:
    texts: tuple[tuple[str, str], ...]  # (view name, normalised text); "text" first
    classifier_text: str
    signals: tuple[str, ...]


def views(text: str) -> Views:
    """Every reading of ``text`` the rules should see; see the module docstring."""
    norm = injection.normalise(text)
    found: list[tuple[str, str]] = [("text", norm.text)]
    folded = norm.text  # the reading with every fold applied: what the classifier sees
    for name, view in norm.views:
        if name != "spaced-letters":
            found.append((name, view))
            folded = view
    spaced = _spaced_words(text)
    if spaced is not None:  # word breaks kept: better than injection's run-together view
        inner = injection.normalise(spaced)
        folded = inner.views[-1][1] if inner.views else inner.text
        found.append(("spaced-letters", folded))
    else:
        for name, view in norm.views:
            if name == "spaced-letters":
                found.append((name, view))
                folded = view
    for name, view in [] if spaced is not None else list(found):  # no chat words in spaced letters
        chat = _CHAT_TOKEN.sub(lambda m: _CHAT_WORDS[m.group()], view)
        if chat != view:
            found.append(("chat-speak" if name == "text" else name, chat))
    found += norm.decoded
    unique: dict[str, str] = {}
    for name, view in found:
        unique.setdefault(view, name)
    decoded = " ".join(view for _, view in norm.decoded)
    return Views(tuple((name, view) for view, name in unique.items()), f"{folded} {decoded}".strip(), norm.signals)


def _spaced_words(text: str) -> str | None:
    """Collapse letter-spaced runs, keeping the wider gaps between them as word breaks."""
    folded = unicodedata.normalize("NFKC", text)
    chunks = re.split(r"\s{2,}", folded)
    changed = False
    out = []
    for chunk in chunks:
        if len(chunk) >= 3 and _SPACED_WORD.fullmatch(chunk):
            out.append(chunk.replace(" ", ""))
            changed = True
        else:
            out.append(chunk)
    return " ".join(out) if changed else None


# ---------------------------------------------------------------------------------------------
# Classifier: one logistic regression per category over folded hashed n-grams
# ---------------------------------------------------------------------------------------------


def model_features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``injection.features`` folded into ``2**MODEL_BITS`` buckets (collisions add up)."""
    indices, values = injection.features(text)
    return indices & ((1 << MODEL_BITS) - 1), values


@dataclass(frozen=True)
class ModerationModel:
    weights: np.ndarray  # float32, (len(CATEGORIES), 2**MODEL_BITS)
    bias: np.ndarray  # float32, (len(CATEGORIES),)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def probabilities(self, text: str) -> np.ndarray:
        """Per-category probability for ``text``; long texts by their most harmful window."""
        windows = _windows(text)
        best = np.zeros(len(CATEGORIES), dtype=np.float64)
        for window in windows:
            indices, values = model_features(window)
            logits = self.bias + self.weights[:, indices] @ values
            best = np.maximum(best, 1.0 / (1.0 + np.exp(-logits)))
        return best

    def save(self, path: Path) -> None:
        """int8 weights with one scale per category, zlib-compressed: well under 1 MB."""
        scales = np.maximum(np.abs(self.weights).max(axis=1), 1e-9) / 127.0
        quantised = np.round(self.weights / scales[:, None]).astype(np.int8)
        document = {
            "format": 1, "model_bits": MODEL_BITS, "hash_bits": injection.HASH_BITS, "categories": list(CATEGORIES),
            "bias": [float(b) for b in self.bias], "scales": [float(s) for s in scales], "meta": dict(self.meta),
            "weights_i8_zlib_b64": base64.b64encode(zlib.compress(quantised.tobytes(), 9)).decode("ascii"),
        }
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> ModerationModel:
        document = json.loads(path.read_text(encoding="utf-8"))
        if (document.get("format") != 1 or document.get("model_bits") != MODEL_BITS
                or document.get("hash_bits") != injection.HASH_BITS or tuple(document.get("categories", ())) != CATEGORIES):
            raise ValueError(f"{path}: not a moderation model of this version")
        raw = np.frombuffer(zlib.decompress(base64.b64decode(document["weights_i8_zlib_b64"])), dtype=np.int8)
        scales = np.asarray(document["scales"], dtype=np.float32)
        weights = raw.reshape(len(CATEGORIES), 1 << MODEL_BITS).astype(np.float32) * scales[:, None]
        return cls(np.ascontiguousarray(weights), np.asarray(document["bias"], dtype=np.float32), document.get("meta", {}))


def _windows(text: str) -> list[str]:
    words = text.split()
    if len(words) <= WINDOW_WORDS:
        return [text]
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [" ".join(words[start : start + WINDOW_WORDS]) for start in starts]


@functools.lru_cache(maxsize=1)
def default_model() -> ModerationModel:
    return ModerationModel.load(MODEL_PATH)


# ---------------------------------------------------------------------------------------------
# Offline scoring
# ---------------------------------------------------------------------------------------------


def _noisy_or(weights: Iterable[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return 1.0 - remaining


@dataclass(frozen=True, slots=True)
class _Hit:
    rule: ModerationRule
    view: str  # "text", or the evasion the match needed


def _rule_hits(all_views: Views) -> list[_Hit]:
    """Each rule that matches some view, once (the first view that matches).

    A rule is tried only on the segments of a view that contain one of its ``needs``.
    """
    # A segment another view already holds unchanged cannot match anything new there: most of a
    # long text reads the same in every view, so each distinct segment is searched once.
    seen: set[str] = set()
    segmented = []
    for name, text in all_views.texts:
        fresh = [segment for segment in _segments(text) if segment not in seen]
        seen.update(fresh)
        segmented.append((name, [(segment, word_keys(segment)) for segment in fresh]))
    hits = []
    for rule in RULES:
        for view, segments in segmented:
            if any((not rule.needs or not rule.needs.isdisjoint(keys)) and rule.pattern.search(segment)
                   for segment, keys in segments):
                hits.append(_Hit(rule, view))
                break
    return hits


_SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+")


def _segments(text: str) -> list[str]:
    """Runs of whole sentences of about ``SEGMENT_CHARS``, each overlapping the next by a sentence,
    so that a pattern spanning two sentences is still seen; a text that short is one segment."""
    if len(text) <= SEGMENT_CHARS:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_BREAK.split(text):
        while len(sentence) > SEGMENT_CHARS:  # a run-on sentence: cut at a space, keeping an overlap
            cut = sentence.rfind(" ", SEGMENT_CHARS // 2, SEGMENT_CHARS)
            cut = cut if cut > 0 else SEGMENT_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[max(0, cut - SEGMENT_CHARS // 5):]
        pieces.append(sentence)
    segments, start = [], 0
    while start < len(pieces):
        end, size = start + 1, len(pieces[start])
        while end < len(pieces) and size + len(pieces[end]) < SEGMENT_CHARS:
            size += len(pieces[end]) + 1
            end += 1
        segments.append(" ".join(pieces[start:end]))
        if end >= len(pieces):
            break
        start = max(start + 1, end - 1)
    return segments


def _contexts(text: str) -> list[BenignContext]:
    return [context for context in BENIGN_CONTEXTS if context.pattern.search(text)]


def _discount(category: str, names: Iterable[str], contexts: Sequence[BenignContext]) -> float:
    factors = [c.factor for c in contexts if category in c.categories and (c.name in names)]
    return min(factors, default=1.0)


def _concealed(all_views: Views) -> bool:
    return any(not CONCEAL_NEEDS.isdisjoint(word_keys(text)) and CONCEAL_RE.search(text) for _, text in all_views.texts)


def moderate(text: str, thresholds: Mapping[str, float] | None = None,
             model: ModerationModel | None = None) -> ModerationResult:
    """Score ``text`` in every category with the offline rules and classifier."""
    if not text or not text.strip():
        return ModerationResult(dict.fromkeys(CATEGORIES, 0.0), (), "offline")
    all_views = views(text)
    hits = _rule_hits(all_views)
    contexts = _contexts(all_views.texts[0][1])
    concealed = _concealed(all_views)
    probabilities = (model or default_model()).probabilities(all_views.classifier_text)
    context_names = [c.name for c in contexts]
    scores: dict[str, float] = {}
    for i, category in enumerate(CATEGORIES):
        factor = _discount(category, context_names, contexts)
        mine = [hit.rule for hit in hits if category in hit.rule.categories]
        strong = _noisy_or(r.weight * _discount(category, r.discounted_by, contexts) for r in mine if r.strong)
        weak = _noisy_or(r.weight for r in mine if not r.strong)
        classifier = max(0.0, (float(probabilities[i]) - CLASSIFIER_FLOOR) / (1.0 - CLASSIFIER_FLOOR))
        if concealed and (mine or classifier >= 0.2):
            weak = _noisy_or([weak, CONCEAL_WEIGHT])
        rules = 1.0 - (1.0 - strong) * (1.0 - weak * factor)
        scores[category] = round(1.0 - (1.0 - rules) * (1.0 - classifier * factor), 6)
    reasons = [f"rule:{hit.rule.name}" + (f" (via {hit.view})" if hit.view != "text" else "") for hit in hits]
    reasons += [f"context:{name}" for name in context_names]
    if concealed:
        reasons.append("cue:concealment")
    evasions = [name for name, _ in all_views.texts[1:]] + list(all_views.signals)
    reasons += [f"evasion:{name}" for name in dict.fromkeys(evasions)]
    reasons += [f"classifier:{c}={p:.2f}" for c, p in zip(CATEGORIES, probabilities) if p >= 0.3]
    return ModerationResult(scores, _flagged(scores, thresholds), "offline", tuple(reasons))


def is_flagged(text: str, thresholds: Mapping[str, float] | None = None) -> bool:
    return bool(moderate(text, thresholds).flagged)


# ---------------------------------------------------------------------------------------------
# Backend: an OpenAI-compatible moderation endpoint (POST /v1/moderations)
# ---------------------------------------------------------------------------------------------

# OpenAI category -> ours. The "/threatening" and "illicit/violent" sub-categories threaten or
# facilitate violence, so they count for violence too; sexual content with minors is also illegal.
OPENAI_CATEGORY_MAP: dict[str, tuple[str, ...]] = {
    "hate": ("hate",), "hate/threatening": ("hate", "violence"),
    "harassment": ("harassment",), "harassment/threatening": ("harassment", "violence"),
    "self-harm": ("self_harm",), "self-harm/intent": ("self_harm",), "self-harm/instructions": ("self_harm",),
    "sexual": ("sexual",), "sexual/minors": ("sexual", "illegal"),
    "violence": ("violence",), "violence/graphic": ("violence",),
    "illicit": ("illegal",), "illicit/violent": ("illegal", "violence"),
}


def moderation_request(texts: Sequence[str], model: str = "omni-moderation-latest") -> dict[str, Any]:
    """The body of ``POST /v1/moderations`` for ``texts`` (one result comes back per text)."""
    return {"model": model, "input": list(texts)}


def moderation_from_openai(payload: Mapping[str, Any], thresholds: Mapping[str, float] | None = None) -> list[ModerationResult]:
    """Map an OpenAI moderation response to our categories.

    A category's score is the maximum of the OpenAI scores mapped to it; it is flagged when any
    of those OpenAI categories is flagged (``categories`` booleans), or, for the categories given
    in ``thresholds``, when its score reaches the threshold instead. ``ValueError`` on a response
    of another shape (the caller decides whether that fails open or closed).
    """
    results = payload.get("results") if isinstance(payload, Mapping) else None
    if not isinstance(results, list):
        raise ValueError("moderation response has no 'results' list")
    return [_openai_result(item, thresholds) for item in results]


def _openai_result(item: Any, thresholds: Mapping[str, float] | None) -> ModerationResult:
    flags = item.get("categories") if isinstance(item, Mapping) else None
    raw_scores = item.get("category_scores") if isinstance(item, Mapping) else None
    if not isinstance(flags, Mapping) or not isinstance(raw_scores, Mapping):
        raise ValueError("moderation result lacks 'categories' or 'category_scores'")
    scores = dict.fromkeys(CATEGORIES, 0.0)
    by_flag: set[str] = set()
    reasons = []
    for name, ours in OPENAI_CATEGORY_MAP.items():
        value = raw_scores.get(name)
        score = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
        for category in ours:
            scores[category] = max(scores[category], min(1.0, max(0.0, score)))
        if flags.get(name) is True:
            by_flag.update(ours)
            reasons.append(f"openai:{name}")
    flagged = tuple(c for c in CATEGORIES
                    if (scores[c] >= thresholds[c] if thresholds and c in thresholds else c in by_flag))
    return ModerationResult({c: round(s, 6) for c, s in scores.items()}, flagged, "openai", tuple(reasons))


async def moderate_with_endpoint(
    texts: list[str],
    call: Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]],
    *,
    model: str = "omni-moderation-latest",
    thresholds: Mapping[str, float] | None = None,
) -> list[ModerationResult]:
    """Moderate ``texts`` with an OpenAI-compatible endpoint; ``call`` posts the request body to
    ``/v1/moderations`` and returns the response JSON (and raises on HTTP errors)."""
    if not texts:
        return []
    results = moderation_from_openai(await call(moderation_request(texts, model)), thresholds)
    if len(results) != len(texts):
        raise ValueError(f"moderation endpoint returned {len(results)} results for {len(texts)} inputs")
    return results


# ---------------------------------------------------------------------------------------------
# Backend: a Llama Guard 3 style model served by any chat deployment
# ---------------------------------------------------------------------------------------------

# The Llama Guard 3 hazard taxonomy (MLCommons hazards plus code-interpreter abuse), with the
# short names its standard prompt uses.
LLAMA_GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex Crimes", "S4": "Child Exploitation",
    "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy", "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons", "S10": "Hate", "S11": "Self-Harm", "S12": "Sexual Content",
    "S13": "Elections", "S14": "Code Interpreter Abuse",
}
# S-code -> our categories. Llama Guard has no harassment category: defamation (a false attack
# on a real person's reputation) is the nearest, so S5 maps there. S6 (specialized advice),
# S7 (privacy: the PII check's business), S8 (IP) and S13 (elections) have no counterpart and
# flag nothing; they stay in ``reasons`` as "llama-guard:S6".
LLAMA_GUARD_MAP: dict[str, tuple[str, ...]] = {
    "S1": ("violence",), "S2": ("illegal",), "S3": ("sexual", "illegal"), "S4": ("sexual", "illegal"),
    "S5": ("harassment",), "S6": (), "S7": (), "S8": (), "S9": ("violence", "illegal"), "S10": ("hate",),
    "S11": ("self_harm",), "S12": ("sexual",), "S13": (), "S14": ("illegal",),
}
_LLAMA_GUARD_ROLES = {"user": "User", "agent": "Agent", "assistant": "Agent"}


def llama_guard_prompt(role: str, conversation_text: str) -> str:
    """The Llama Guard 3 instruction for the last ``role`` turn ("User" for input, "Agent" for
    output) of ``conversation_text`` (``"User: …\\n\\nAgent: …"``; see ``llama_guard_conversation``).

    Sent as the user message of a chat request; the deployment's chat template adds the special
    tokens. The conversation cannot close its own block: the markers are defused inside it.
    """
    who = _LLAMA_GUARD_ROLES.get(role.strip().lower())
    if who is None:
        raise ValueError(f"role must be 'User' or 'Agent', not {role!r}")
    categories = "\n".join(f"{code}: {name}." for code, name in LLAMA_GUARD_CATEGORIES.items())
    safe_text = conversation_text.replace("<BEGIN", "< BEGIN").replace("<END", "< END")
    return (
        f"Task: Check if there is unsafe content in '{who}' messages in conversations according our safety "
        f"policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n"
        f"<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{safe_text.strip()}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {who} message in the above conversation:\n"
        f" - First line must read 'safe' or 'unsafe'.\n"
        f" - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def llama_guard_conversation(turns: Iterable[tuple[str, str]]) -> str:
    """``(role, text)`` turns as Llama Guard expects them: "User: …" and "Agent: …" blocks."""
    lines = []
    for role, text in turns:
        who = _LLAMA_GUARD_ROLES.get(role.strip().lower())
        if who is not None and text.strip():
            lines.append(f"{who}: {text.strip()}")
    return "\n\n".join(lines)


_S_CODE = re.compile(r"\bS(1[0-4]|[1-9])\b", re.I)


def parse_llama_guard(answer: str) -> ModerationResult:
    """Read "safe" or "unsafe\\nS1,S10" into a result (score 1.0 for each mapped category).

    ``ValueError`` if the answer starts with neither word. An "unsafe" verdict whose codes map to
    none of our categories flags nothing; its reasons say ``llama-guard:unsafe`` and the codes.
    """
    text = answer.strip()
    verdict = text.split(None, 1)[0].strip(".:,").lower() if text else ""
    if verdict == "safe":
        return ModerationResult(dict.fromkeys(CATEGORIES, 0.0), (), "llama-guard", ("llama-guard:safe",))
    if verdict != "unsafe":
        raise ValueError(f"Llama Guard answer is neither 'safe' nor 'unsafe': {answer[:80]!r}")
    codes = list(dict.fromkeys(f"S{m.group(1)}" for m in _S_CODE.finditer(text[len("unsafe"):])))
    scores = dict.fromkeys(CATEGORIES, 0.0)
    for code in codes:
        for category in LLAMA_GUARD_MAP.get(code, ()):
            scores[category] = 1.0
    reasons = ("llama-guard:unsafe", *(f"llama-guard:{code}" for code in codes))
    return ModerationResult(scores, tuple(c for c in CATEGORIES if scores[c] == 1.0), "llama-guard", reasons)


async def moderate_with_llama_guard(
    conversation_text: str, call: Callable[[str], Awaitable[str]], role: str = "User"
) -> ModerationResult:
    """Ask a guard model through ``call(prompt) -> answer text`` (one chat completion)."""
    return parse_llama_guard(await call(llama_guard_prompt(role, conversation_text)))
