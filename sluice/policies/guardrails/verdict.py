"""A guardrail check's answer (``Verdict``) and the error a block becomes.

Kept apart from the engine so that the checks (custom, topics, streaming, moderation) and the
engine that runs them can all use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.schema import GatewayError

ACTIONS = ("allow", "flag", "redact", "block")


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    action: str  # one of ACTIONS
    score: float = 0.0
    reasons: tuple[str, ...] = ()

    def render(self) -> str:
        return f"{self.check}={self.action}" + (f":{self.score:.2f}" if self.score else "")


def blocked(verdict: Verdict, where: str) -> GatewayError:
    why = "; ".join(verdict.reasons[:3]) or verdict.check
    return GatewayError("content_policy", f"The {where} was blocked by the '{verdict.check}' guardrail ({why}).",
                        code="guardrail_blocked")


__all__ = ["ACTIONS", "Verdict", "blocked"]
