"""Configured check specs → check objects, with the config errors a user can act on."""

from __future__ import annotations

from sluice.policies.guardrails.builtin import (
    InjectionCheck,
    JsonSchemaCheck,
    MaxLengthCheck,
    ModerationCheck,
    PiiCheck,
    TopicsCheck,
)
from sluice.policies.guardrails.checks import Check, CustomCheck, GuardServices

INPUT_ONLY = {"injection"}
OUTPUT_ONLY = {"json_schema"}


def build_check(spec, stage: str, services: GuardServices) -> Check:
    """One ``CheckSpec`` as a check for ``stage`` ("input" or "output"); ``ValueError`` for a
    check that cannot run there or lacks what it needs."""
    kind = spec.check
    if stage == "output" and kind in INPUT_ONLY:
        raise ValueError(f"the '{kind}' check runs on input only")
    if stage == "input" and kind in OUTPUT_ONLY:
        raise ValueError(f"the '{kind}' check runs on output only")
    if spec.action == "redact" and kind not in ("pii", "webhook", "python"):
        raise ValueError(f"the '{kind}' check can block or flag, not redact")
    if kind == "pii":
        return PiiCheck(spec.action, spec.mode, spec.types)
    if kind == "injection":
        return InjectionCheck(spec.action, spec.threshold, spec.judge, services)
    if kind == "max_length":
        if spec.max_chars is None:
            raise ValueError("the 'max_length' check needs max_chars")
        return MaxLengthCheck(spec.action, spec.max_chars)
    if kind == "moderation":
        if spec.backend != "local" and not spec.model:
            raise ValueError(f"moderation backend '{spec.backend}' needs model (the alias that serves it)")
        return ModerationCheck(spec.action, spec.backend, spec.model, spec.categories, spec.threshold, spec.fail,
                               services)
    if kind == "json_schema":
        return JsonSchemaCheck(spec.action, spec.schema, spec.repair)
    if kind == "topics":
        return _topics(spec, services)
    if kind == "webhook":
        from sluice.policies.guardrails.custom import WebhookCheck

        if not spec.url:
            raise ValueError("the 'webhook' check needs url")
        name = spec.name or "webhook"
        return CustomCheck(WebhookCheck(spec.url, timeout=spec.timeout, fail=spec.fail,
                                        headers=dict(spec.headers) or None, name=name), name)
    if kind == "python":
        from sluice.policies.guardrails.custom import EntryPointCheck

        if not spec.target:
            raise ValueError("the 'python' check needs target ('package.module:function')")
        runner = EntryPointCheck(spec.target, fail=spec.fail, timeout=spec.timeout, name=spec.name)
        return CustomCheck(runner, runner.name)
    raise ValueError(f"unknown guardrail check '{kind}'")


def _topics(spec, services: GuardServices) -> Check:
    from sluice.policies.guardrails.topics import Topic, TopicMatcher

    def topics(specs) -> list[Topic]:
        return [Topic(t.name, list(t.keywords), list(t.examples)) for t in specs]

    allow = topics(spec.allow) if spec.allow is not None else None
    deny = topics(spec.deny)
    if allow is None and not deny:
        raise ValueError("the 'topics' check needs an allow or a deny list")
    examples = any(t.examples for t in (*(allow or ()), *deny))
    matcher = TopicMatcher(allow, deny, services.embedder if examples else None,
                           spec.threshold if spec.threshold is not None else 0.4,
                           action=spec.action, name=spec.name or "topics",
                           fail="open" if spec.fail == "open" else "closed")
    return TopicsCheck(matcher, spec.action)


__all__ = ["build_check"]
