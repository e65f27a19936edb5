"""Entry-point functions for tests/policies/test_guardrail_custom.py (imported by name, as config does)."""

from __future__ import annotations

import asyncio
import time

from sluice.policies.guardrails.verdict import Verdict
from sluice.policies.guardrails.outcome import CheckOutcome

NOT_CALLABLE = 42
calls: list[tuple[str, str, dict]] = []


def keyword_sync(stage, text, context):
    calls.append((stage, text, dict(context)))
    if "forbidden" in text:
        return {"action": "block", "score": 0.9, "reasons": [f"{stage} says forbidden"]}
    return {"action": "allow"}


async def redact_async(stage, text, context):
    await asyncio.sleep(0)
    return {"action": "redact", "text": text.replace("secret", "[removed]"), "reasons": ["secret"]}


def verdict_sync(stage, text, context):
    return Verdict("whatever-name", "flag", 0.4, (f"team {context.get('team_id')}",))


def outcome_redact(stage, text, context):
    return CheckOutcome(Verdict("x", "redact", 1.0), replacement=text.upper())


def bool_check(stage, text, context):
    return "no" not in text.split()


def raising(stage, text, context):
    raise RuntimeError("the classifier is down")


def slow_sync(stage, text, context):
    time.sleep(0.6)
    return True


async def slow_async(stage, text, context):
    await asyncio.sleep(5)
    return True


def returns_none(stage, text, context):
    return None


def redact_verdict_without_text(stage, text, context):
    return Verdict("x", "redact", 1.0)


class Checks:
    @staticmethod
    async def nested(stage, text, context):
        return {"action": "flag", "reasons": ["nested"]}
