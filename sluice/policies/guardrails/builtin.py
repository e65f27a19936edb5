"""Sluice's own checks: PII, prompt injection, length, content moderation, JSON schema, topics.

Each is a ``Check`` (``sluice.policies.guardrails.checks``); the detectors themselves live in
their modules (``pii``, ``redact``, ``injection``, ``moderation``, ``structured``, ``topics``) and
know nothing about requests or policies.
"""

from __future__ import annotations

import logging
from typing import Any

from sluice.policies.guardrails.checks import (
    Check,
    GuardServices,
    SessionLike,
    TextCheck,
    answer_text,
    map_answer_text,
    map_request_text,
    report,
    request_text,
    user_message,
)
from sluice.policies.guardrails.verdict import Verdict
from sluice.schema import ChatRequest, ChatResponse, GatewayError, TextPart

log = logging.getLogger("sluice.guardrails")


class PiiCheck(Check):
    """Input: ``redact`` (reversible placeholders, or ``mode: mask``), ``block`` or ``flag``.
    Output: ``redact`` masks what the model wrote, ``block`` refuses, ``flag`` reports."""

    name = "pii"

    def __init__(self, action: str, mode: str = "reversible", types: tuple[str, ...] | None = None) -> None:
        self.action, self.mode, self.types = action, mode, types
        self._types = None if types is None else set(types)

    def _findings(self, texts: list[str]) -> dict[str, list]:
        """Each distinct text's findings, detected once: redaction reuses them."""
        from sluice.policies.guardrails.pii import detect

        return {text: detect(text, self._types) for text in dict.fromkeys(texts)}

    def _found(self, texts: list[str]) -> tuple[str, ...]:
        return tuple(sorted({f.type for found in self._findings(texts).values() for f in found}))

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        texts = [p.text for m in req.messages for p in m.content if isinstance(p, TextPart)]
        texts += [c.arguments for m in req.messages for c in (m.tool_calls or ())]
        findings = self._findings(texts)
        found = tuple(sorted({f.type for spans in findings.values() for f in spans}))
        if not found:
            session.verdicts.append(Verdict("pii", "allow"))
            return req
        report(session, Verdict("pii", self.action, 1.0, found), "request")
        if self.action != "redact":
            return req
        if self.mode == "mask":
            from sluice.policies.guardrails.redact import mask

            return map_request_text(req, lambda text: mask(text, self.types, findings.get(text)))
        from sluice.policies.guardrails.redact import Vault

        vault = session.vault = session.vault or Vault(self.types)
        return map_request_text(req, lambda text: vault.redact(text, findings.get(text)))

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        found = self._found([answer_text(resp)])
        if not found:
            return resp
        report(session, Verdict("pii", self.action, 1.0, found), "answer")
        if self.action == "redact":
            from sluice.policies.guardrails.redact import mask

            return map_answer_text(resp, lambda text: mask(text, self.types))
        return resp

    def stream_check(self) -> TextCheck | None:
        if self.action == "redact":
            return None  # masking a stream's text after the fact is not possible: flag/block only
        def check(text: str) -> Verdict | None:
            found = self._found([text])
            return Verdict("pii", self.action, 1.0, found) if found else None
        return check


class InjectionCheck(Check):
    """The layered detector over the user's prompts and, more strictly, data in the conversation;
    with ``judge: <alias>``, a model's opinion is one more layer (the higher score wins; a judge
    that fails or answers nonsense leaves the local score)."""

    name = "injection"

    def __init__(self, action: str, threshold: float | None, judge: str | None, services: GuardServices) -> None:
        from sluice.policies.guardrails.injection import DEFAULT_THRESHOLD

        self.action = action
        self.threshold = threshold if threshold is not None else DEFAULT_THRESHOLD
        self.judge, self.services = judge, services

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        from sluice.policies.guardrails.injection import scan_messages

        scan = scan_messages(req.messages, threshold=self.threshold)
        flagged = [f for f in scan.findings if f.flagged]
        score, reasons = scan.max_score, ()
        if flagged:
            worst = max(flagged, key=lambda f: f.result.score)
            score = worst.result.score
            reasons = (f"{worst.kind} in message {worst.message_index}", *worst.result.reasons[:3])
        elif self.judge is not None:
            judged = await self._judge(request_text(req), session.owner)
            if judged is not None and judged >= self.threshold:
                score, reasons = judged, (f"judge '{self.judge}' scored {judged:.2f}",)
        if not reasons:
            session.verdicts.append(Verdict("injection", "allow", score))
            return req
        report(session, Verdict("injection", self.action, score, reasons), "request")
        return req

    async def _judge(self, text: str, owner: Any) -> float | None:
        from sluice.policies.guardrails.injection import judge_prompt, parse_judge

        if self.services.complete is None or not text.strip():
            return None
        try:
            resp = await self.services.complete(self.judge, user_message(self.judge, judge_prompt(text), 128), owner)
            return parse_judge(answer_text(resp))
        except Exception as exc:  # noqa: BLE001 - the judge is an extra layer, not a dependency
            log.warning("injection judge '%s' failed: %s", self.judge, exc)
            return None


class MaxLengthCheck(Check):
    name = "max_length"

    def __init__(self, action: str, max_chars: int) -> None:
        self.action, self.max_chars = action, max_chars

    def _verdict(self, size: int) -> Verdict | None:
        if size <= self.max_chars:
            return None
        return Verdict("max_length", self.action, 1.0, (f"{size} > {self.max_chars} characters",))

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        verdict = self._verdict(sum(len(m.text()) for m in req.messages))
        if verdict is not None:
            report(session, verdict, "request")
        return req

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        verdict = self._verdict(len(answer_text(resp)))
        if verdict is not None:
            report(session, verdict, "answer")
        return resp

    # On streams the scanner counts characters itself (``StreamScanner(max_chars=...)``).


class ModerationCheck(Check):
    """Content moderation by category. ``backend``: ``local`` (offline, in process), ``endpoint``
    (an OpenAI-style ``/v1/moderations`` of the provider behind ``model``) or ``llama_guard`` (a
    Llama Guard-style model served by the alias ``model``). A backend that fails follows ``fail``."""

    name = "moderation"

    def __init__(self, action: str, backend: str, model: str | None, categories: tuple[str, ...] | None,
                 threshold: float | None, fail: str, services: GuardServices) -> None:
        self.action, self.backend, self.model = action, backend, model
        self.categories = None if categories is None else set(categories)
        self.threshold, self.fail, self.services = threshold, fail, services

    def _local(self, text: str):
        from sluice.policies.guardrails.moderation import CATEGORIES, moderate

        thresholds = None if self.threshold is None else dict.fromkeys(CATEGORIES, self.threshold)
        return moderate(text, thresholds)

    async def _moderate(self, text: str, role: str, owner: Any):
        if self.backend == "local":
            return self._local(text)
        from sluice.policies.guardrails import moderation

        if self.backend == "endpoint":
            if self.services.moderations is None:
                raise RuntimeError("no moderation endpoint available")
            async def call(payload: dict) -> dict:
                return await self.services.moderations(self.model, payload, owner)
            return (await moderation.moderate_with_endpoint([text], call))[0]
        if self.services.complete is None:
            raise RuntimeError("no model available for the Llama Guard backend")
        prompt = moderation.llama_guard_prompt(role, text)
        resp = await self.services.complete(self.model, user_message(self.model, prompt, 32), owner)
        return moderation.parse_llama_guard(answer_text(resp))

    def _verdict(self, result: Any) -> Verdict:
        flagged = [c for c in result.flagged if self.categories is None or c in self.categories]
        if not flagged:
            return Verdict("moderation", "allow", result.max_score)
        score = max(result.scores.get(c, 1.0) for c in flagged)
        return Verdict("moderation", self.action, score, tuple(flagged))

    async def _check(self, text: str, role: str, owner: Any) -> Verdict:
        try:
            return self._verdict(await self._moderate(text, role, owner))
        except Exception as exc:  # noqa: BLE001 - a backend failing follows the fail policy
            log.warning("moderation backend '%s' failed: %s", self.backend, exc)
            if self.fail == "open":
                return Verdict("moderation", "allow", 0.0, (f"moderation unavailable: {exc}",))
            return Verdict("moderation", "block", 1.0, ("moderation unavailable (the check fails closed)",))

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        texts = [m.text() for m in req.messages if m.role in ("user", "tool")]
        verdict = await self._check("\n".join(texts), "User", session.owner)
        if verdict.action == "allow" and not verdict.reasons:
            session.verdicts.append(verdict)
        else:
            report(session, verdict, "request")
        return req

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        verdict = await self._check(answer_text(resp), "Agent", session.owner)
        if verdict.action != "allow" or verdict.reasons:
            report(session, verdict, "answer")
        return resp

    def stream_check(self) -> TextCheck | None:
        if self.backend != "local":
            return None
        def check(text: str) -> Verdict | None:
            verdict = self._verdict(self._local(text))
            return verdict if verdict.action != "allow" else None
        return check

    async def on_text(self, text: str, session: SessionLike) -> Verdict | None:
        if self.backend == "local":
            return None  # already checked window by window
        return await self._check(text, "Agent", session.owner)

    @property
    def wants_full_stream(self) -> bool:
        return self.backend != "local"


class JsonSchemaCheck(Check):
    """Structured output: the answer must be JSON matching the schema the client asked for
    (``response_format``), or ``schema`` from the config. With ``repair``, one more call asks the
    model to fix its answer, quoting the errors; only then does ``action`` apply."""

    name = "json_schema"
    before_restore = True  # a repair quotes the answer to the upstream: with its placeholders

    def __init__(self, action: str, schema: dict | None, repair: bool) -> None:
        from sluice.policies.guardrails.structured import schema_problem

        problem = schema_problem(schema) if schema is not None else None
        if problem is not None:
            raise ValueError(f"schema is not a valid JSON Schema: {problem}")
        self.action, self.schema, self.repair = action, schema, repair

    def prepare(self, req: ChatRequest) -> None:
        from sluice.policies.guardrails.structured import schema_of, schema_problem

        asked = schema_of(req) if self.schema is None else None
        problem = schema_problem(asked) if asked else None
        if problem is not None:
            raise GatewayError("invalid_request", f"Invalid schema for response_format: {problem}",
                               param="response_format")

    def _schema(self, req: ChatRequest | None) -> tuple[bool, dict | None]:
        from sluice.policies.guardrails.structured import schema_of

        asked = schema_of(req) if req is not None else None
        if self.schema is not None:
            return True, self.schema
        return asked is not None, asked

    def _errors(self, text: str, req: ChatRequest | None) -> list[str] | None:
        from sluice.policies.guardrails.structured import validate_json_output

        applies, schema = self._schema(req)
        if not applies:
            return None
        return validate_json_output(text, schema)

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        if not resp.choices or resp.choices[0].message.tool_calls:
            return resp
        text = resp.choices[0].message.text()
        errors = self._errors(text, session.request)
        if errors is None:
            return resp
        if errors and self.repair and session.retry is not None and session.request is not None:
            from sluice.policies.guardrails.structured import repair_request

            repaired = await session.retry(repair_request(session.request, text, errors))
            fixed = repaired.choices[0].message.text() if repaired.choices else ""
            if not self._errors(fixed, session.request):
                session.verdicts.append(Verdict("json_schema", "redact", 1.0, ("repaired",)))
                return repaired
            errors = self._errors(fixed, session.request) or errors
            resp = repaired
        if not errors:
            session.verdicts.append(Verdict("json_schema", "allow"))
            return resp
        report(session, Verdict("json_schema", self.action, 1.0, tuple(errors[:3])), "answer")
        return resp

    async def on_text(self, text: str, session: SessionLike) -> Verdict | None:
        errors = self._errors(text, session.request)
        if not errors:
            return None
        return Verdict("json_schema", self.action, 1.0, tuple(errors[:3]))


class TopicsCheck(Check):
    """Allow / deny topic lists (keywords, and example texts compared with the local embedder)."""

    name = "topics"

    def __init__(self, matcher: Any, action: str) -> None:
        self.matcher, self.action = matcher, action

    async def _verdict(self, text: str) -> Verdict:
        outcome = await self.matcher.check(text)  # embeds the topic examples on first use
        if outcome.error is not None:  # the embedder failed: keywords decided, or the fail policy
            log.warning("topics check '%s': %s", self.matcher.name, outcome.error)
        return outcome.verdict

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        texts = [m.text() for m in req.messages if m.role == "user"]
        verdict = await self._verdict(texts[-1] if texts else "")
        if verdict.action == "allow":
            session.verdicts.append(verdict)
        else:
            report(session, verdict, "request")
        return req

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        verdict = await self._verdict(answer_text(resp))
        if verdict.action != "allow":
            report(session, verdict, "answer")
        return resp

    def stream_check(self) -> TextCheck | None:
        return self.matcher.deny_keywords if self.matcher.deny else None

    async def on_text(self, text: str, session: SessionLike) -> Verdict | None:
        if self.matcher.allow is None and self.matcher.embedder is None:
            return None  # deny keywords only: the stream scanner has seen everything
        verdict = await self._verdict(text)
        return verdict if verdict.action != "allow" else None


__all__ = ["InjectionCheck", "JsonSchemaCheck", "MaxLengthCheck", "ModerationCheck", "PiiCheck", "TopicsCheck"]
