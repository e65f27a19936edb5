"""Content moderation in the emulator: OpenAI's ``POST /v1/moderations`` and Llama-Guard-style chat models.

Both answer from the same deterministic trigger rules, so end-to-end tests can make the mock
flag exactly what they want. A text triggers an OpenAI category when it contains (case-insensitive):

* the marker ``[[<category>]]`` for any of the 13 categories — ``[[hate]]``, ``[[hate/threatening]]``,
  ``[[harassment]]``, ``[[harassment/threatening]]``, ``[[self-harm]]``, ``[[self-harm/intent]]``,
  ``[[self-harm/instructions]]``, ``[[sexual]]``, ``[[sexual/minors]]``, ``[[violence]]``,
  ``[[violence/graphic]]``, ``[[illicit]]``, ``[[illicit/violent]]``;
* or one of these phrases (whole words):

  ====================== ==========================================================
  hate                   "subhuman", "vermin"
  hate/threatening       "exterminate them"
  harassment             "worthless loser", "nobody likes you"
  harassment/threatening "i know where you live"
  self-harm/intent       "kill myself"
  self-harm/instructions "how to commit suicide"
  sexual                 "explicit sex scene"
  violence               "i will kill you", "build a bomb"
  violence/graphic       "gore"
  illicit                "cook meth", "shoplift"
  illicit/violent        "untraceable gun"
  ====================== ==========================================================

A sub-category flags its parent too (``self-harm/intent`` flags ``self-harm``; ``illicit/violent``
flags ``illicit``). A flagged category scores 0.99 for a marker and 0.9 for a phrase; every
other category scores 0.0001. Images are accepted (``image_url`` parts) but never flagged.

**Guard models.** A chat model whose name contains "guard" (``llama-guard-3-8b``,
``mock-guard``) answers like Llama Guard 3: ``safe``, or ``unsafe`` and a newline and the
violated codes, comma-separated, in S-number order. The rules read the text between
``<BEGIN CONVERSATION>`` and ``<END CONVERSATION>`` of the last user message when those markers
are there (the instruction itself names the categories and must not trigger them), otherwise the
whole last user message. Codes: hate → S10, harassment → S5, violence and the "/threatening"
sub-categories → S1, sexual → S12, sexual/minors → S4, self-harm → S11, illicit → S2,
illicit/violent → S2 and S1 — the inverse of ``LLAMA_GUARD_MAP`` in
``sluice/policies/guardrails/moderation.py``, so a round trip keeps the category.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from sluice.mock.common import ApiError, send_json
from sluice.mock.faults import Plan
from sluice.mock.state import MockState

CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic",
)
# Categories OpenAI also scores on images (the others apply to text only).
IMAGE_CATEGORIES = frozenset({"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"})
DEFAULT_MODEL = "omni-moderation-latest"
PHRASES: dict[str, tuple[str, ...]] = {
    "hate": ("subhuman", "vermin"),
    "hate/threatening": ("exterminate them",),
    "harassment": ("worthless loser", "nobody likes you"),
    "harassment/threatening": ("i know where you live",),
    "self-harm/intent": ("kill myself",),
    "self-harm/instructions": ("how to commit suicide",),
    "sexual": ("explicit sex scene",),
    "violence": ("i will kill you", "build a bomb"),
    "violence/graphic": ("gore",),
    "illicit": ("cook meth", "shoplift"),
    "illicit/violent": ("untraceable gun",),
}
MARKER_SCORE, PHRASE_SCORE, QUIET_SCORE = 0.99, 0.9, 0.0001
_PHRASE_PATTERNS = {
    category: re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b", re.I)
    for category, phrases in PHRASES.items()
}
LLAMA_GUARD_CODES: dict[str, tuple[str, ...]] = {
    "hate": ("S10",), "hate/threatening": ("S10", "S1"), "harassment": ("S5",), "harassment/threatening": ("S5", "S1"),
    "self-harm": ("S11",), "self-harm/intent": ("S11",), "self-harm/instructions": ("S11",),
    "sexual": ("S12",), "sexual/minors": ("S4",), "violence": ("S1",), "violence/graphic": ("S1",),
    "illicit": ("S2",), "illicit/violent": ("S2", "S1"),
}
_CONVERSATION = re.compile(r"<BEGIN CONVERSATION>(.*?)<END CONVERSATION>", re.S)


def category_scores(text: str) -> dict[str, float]:
    """The score of every OpenAI category for ``text`` under the trigger rules above."""
    scores = dict.fromkeys(CATEGORIES, QUIET_SCORE)
    lowered = text.lower()
    for category in CATEGORIES:
        if f"[[{category}]]" in lowered:
            found = MARKER_SCORE
        elif category in _PHRASE_PATTERNS and _PHRASE_PATTERNS[category].search(text):
            found = PHRASE_SCORE
        else:
            continue
        for name in (category, category.split("/")[0]):
            scores[name] = max(scores[name], found)
    return scores


def flagged_categories(text: str) -> list[str]:
    return [c for c, score in category_scores(text).items() if score > QUIET_SCORE]


# --- POST /v1/moderations ----------------------------------------------------------------------


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    # Same shape as openai_wire.bad; not imported from there, which imports replies, which imports us.
    return ApiError(400, message, param=param, code=code)


def parse_moderation(body: Any) -> tuple[list[tuple[str, set[str]]], str]:
    """Validate a moderation request: ([(text, input types)] one per result, model)."""
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", code=None)
    for key in body:
        if key not in ("input", "model"):
            raise bad(f"Unrecognized request argument supplied: {key}", code=None)
    model = body.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise bad("Invalid type for 'model': expected a string.", "model", "invalid_type")
    if "input" not in body:
        raise bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    value = body["input"]
    if isinstance(value, str):
        return [(value, {"text"})], model
    if not isinstance(value, list) or not value:
        raise bad("Invalid 'input': expected a string, an array of strings or an array of objects with "
                  "at least one element.", "input", "invalid_type")
    if all(isinstance(item, str) for item in value):
        return [(item, {"text"}) for item in value], model
    if all(isinstance(item, dict) for item in value):
        return [_multimodal(value, model)], model
    raise bad("Invalid 'input': an array must hold only strings or only input objects.", "input", "invalid_type")


def _multimodal(parts: list[dict], model: str) -> tuple[str, set[str]]:
    """An array of text and image parts is one input, moderated as a whole."""
    texts: list[str] = []
    kinds: set[str] = set()
    for i, part in enumerate(parts):
        kind = part.get("type")
        where = f"input[{i}]"
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise bad(f"Missing required parameter: '{where}.text'.", f"{where}.text", "missing_required_parameter")
            texts.append(part["text"])
        elif kind == "image_url":
            if not isinstance((part.get("image_url") or {}).get("url"), str):
                raise bad(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url.url",
                          "missing_required_parameter")
            if not model.startswith("omni-moderation"):
                raise bad(f"Model {model} does not support image inputs.", f"{where}.type", "invalid_value")
        else:
            raise bad(f"Invalid value: '{kind}'. Supported values are: 'image_url' and 'text'.", f"{where}.type")
        kinds.add(kind.removesuffix("_url"))
    return " ".join(texts), kinds


def moderation_result(text: str, kinds: set[str]) -> dict[str, Any]:
    scores = category_scores(text) if "text" in kinds else dict.fromkeys(CATEGORIES, QUIET_SCORE)
    flags = {c: s > QUIET_SCORE for c, s in scores.items()}
    applied = {c: sorted(k for k in kinds if k == "text" or c in IMAGE_CATEGORIES) for c in CATEGORIES}
    return {"flagged": any(flags.values()), "categories": flags, "category_scores": scores,
            "category_applied_input_types": applied}


async def respond_moderation(request: web.Request, ctx: tuple, model: str, plan: Plan, state: MockState) -> web.StreamResponse:
    inputs, requested = ctx
    rid = state.next_id()
    body = {"id": f"modr-mock{rid}", "model": requested, "results": [moderation_result(t, k) for t, k in inputs]}
    return await send_json(request, body, plan, {"x-request-id": f"req_mock{rid}", "openai-processing-ms": "1"})


def validate_moderation(request: web.Request, body: Any) -> tuple:
    return parse_moderation(body)


def model_of(request: web.Request, body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else DEFAULT_MODEL


# --- guard chat models -----------------------------------------------------------------------


def is_guard_model(model: str) -> bool:
    return "guard" in model.lower()


def guard_verdict(user_text: str) -> str:
    """What a Llama-Guard-style model answers for the last user message ``user_text``."""
    found = _CONVERSATION.search(user_text)
    conversation = found.group(1) if found else user_text
    codes: set[str] = set()
    for category in flagged_categories(conversation):
        codes.update(LLAMA_GUARD_CODES[category])
    if not codes:
        return "safe"
    return "unsafe\n" + ",".join(sorted(codes, key=lambda code: int(code[1:])))
