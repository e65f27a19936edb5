"""What one guardrail check returns: its verdict, replacement text for a redaction, and an error.

``Verdict`` (in ``engine``) is what the gateway reports in ``x-sluice-guardrails``; it cannot carry
the rewritten text a ``redact`` produces, nor say that the check itself failed to run. A
``CheckOutcome`` wraps one verdict with both, so every check — webhook, Python entry point, topic
lists — has one return type:

* ``replacement`` is set only when ``verdict.action == "redact"``: the text to use instead of the
  text that was checked;
* ``error`` is set when the check could not give an answer (a webhook timed out, an entry point
  raised) and its fail policy decided the verdict instead: ``allow`` when failing open, ``block``
  when failing closed. It is for logs and metrics; the verdict's reasons say the same to clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.policies.guardrails.verdict import ACTIONS, Verdict


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    verdict: Verdict
    replacement: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.verdict.action not in ACTIONS:
            raise ValueError(f"unknown guardrail action {self.verdict.action!r}")
        if (self.replacement is not None) != (self.verdict.action == "redact"):
            raise ValueError("a replacement text goes with a 'redact' verdict, and only with one")

    @property
    def action(self) -> str:
        return self.verdict.action

    @property
    def blocked(self) -> bool:
        return self.verdict.action == "block"


__all__ = ["CheckOutcome"]
