"""Guardrail policies: which checks run on a call's input and output, and what their verdicts do.

A policy (``guardrails.policies.<name>`` in sluice.yaml) applies to the calls whose model alias,
team and key match it; the first matching policy wins. Each check returns a ``Verdict`` — allow,
flag, redact or block, with a score and reasons:

* ``pii`` (input): ``redact`` replaces each finding with a stable placeholder before the upstream
  sees it and restores the originals in the answer, streamed or not (``mode: reversible``, the
  default), or masks them for good (``mode: mask``); ``block`` refuses; ``flag`` only reports.
* ``pii`` (output): ``redact`` masks what the model produced; ``block`` refuses the answer.
* ``injection`` (input): the layered detector over the user's prompts and, more strictly, the data
  in the conversation (tool results, embedded documents); ``block`` or ``flag`` above a threshold.
* ``max_length``: input or output longer than ``max_chars`` characters.

Verdicts are reported in the ``x-sluice-guardrails`` header (``check=action[:score]`` items) and
a block is a 400 in the client's dialect with code ``guardrail_blocked``. Not yet here (issue 6):
moderation categories, webhooks and Python entry points, output JSON-schema checks, topic lists,
incremental output checks on streams, recording verdicts in the ledger and audit log.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from msgspec import structs

from sluice.schema import ChatChunk, ChatRequest, ChatResponse, GatewayError, Message, TextPart, ToolCall

ACTIONS = ("allow", "flag", "redact", "block")


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    action: str  # one of ACTIONS
    score: float = 0.0
    reasons: tuple[str, ...] = ()

    def render(self) -> str:
        return f"{self.check}={self.action}" + (f":{self.score:.2f}" if self.score else "")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One configured check (the shape of ``sluice.config.GuardrailCheckConfig``)."""

    check: str
    action: str = "block"
    mode: str = "reversible"
    types: tuple[str, ...] | None = None
    threshold: float | None = None
    max_chars: int | None = None


@dataclass(frozen=True, slots=True)
class PolicySpec:
    name: str
    input: tuple[CheckSpec, ...] = ()
    output: tuple[CheckSpec, ...] = ()
    models: tuple[str, ...] = ("*",)
    teams: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None

    def applies(self, principal: Any, alias: str) -> bool:
        if not any(fnmatch.fnmatchcase(alias, pattern) for pattern in self.models):
            return False
        if self.teams is not None and getattr(principal, "team_id", None) not in self.teams:
            return False
        return self.keys is None or getattr(principal, "key_id", None) in self.keys


def blocked(verdict: Verdict, where: str) -> GatewayError:
    why = "; ".join(verdict.reasons[:3]) or verdict.check
    return GatewayError("content_policy", f"The {where} was blocked by the '{verdict.check}' guardrail ({why}).",
                        code="guardrail_blocked")


@dataclass
class Session:
    """One call's guardrail state: the verdicts so far and the vault of reversible placeholders."""

    policy: PolicySpec
    verdicts: list[Verdict] = field(default_factory=list)
    vault: Any | None = None  # sluice.policies.guardrails.redact.Vault

    def header(self) -> str:
        return ", ".join(v.render() for v in self.verdicts)

    # ---- output -------------------------------------------------------------------------------

    def finish_response(self, resp: ChatResponse) -> ChatResponse:
        """Restore reversible placeholders, then run the output checks (may raise a block)."""
        choices = [structs.replace(c, message=self._restore_message(c.message)) for c in resp.choices]
        resp = structs.replace(resp, choices=choices)
        for spec in self.policy.output:
            resp = self._check_output(spec, resp)
        return resp

    def _restore_message(self, message: Message) -> Message:
        if self.vault is None or not len(self.vault):
            return message
        content = [structs.replace(p, text=self.vault.restore(p.text)) if isinstance(p, TextPart) else p
                   for p in message.content]
        calls = [structs.replace(c, arguments=self.vault.restore(c.arguments, _json_escape))
                 for c in message.tool_calls] if message.tool_calls else message.tool_calls
        return structs.replace(message, content=content, tool_calls=calls)

    def _check_output(self, spec: CheckSpec, resp: ChatResponse) -> ChatResponse:
        text = "\n".join(c.message.text() for c in resp.choices)
        if spec.check == "max_length":
            if spec.max_chars is not None and len(text) > spec.max_chars:
                verdict = Verdict("max_length", spec.action, 1.0, (f"{len(text)} > {spec.max_chars} characters",))
                self.verdicts.append(verdict)
                if spec.action == "block":
                    raise blocked(verdict, "answer")
            return resp
        if spec.check == "pii":
            from sluice.policies.guardrails.pii import detect
            from sluice.policies.guardrails.redact import mask

            types = None if spec.types is None else set(spec.types)
            findings = detect(text, types)
            if not findings:
                return resp
            verdict = Verdict("pii", spec.action, 1.0, tuple(sorted({f.type for f in findings})))
            self.verdicts.append(verdict)
            if spec.action == "block":
                raise blocked(verdict, "answer")
            if spec.action == "redact":
                choices = [structs.replace(c, message=structs.replace(c.message, content=[
                    structs.replace(p, text=mask(p.text, spec.types)) if isinstance(p, TextPart) else p
                    for p in c.message.content])) for c in resp.choices]
                return structs.replace(resp, choices=choices)
        return resp

    def restore_stream(self, stream: AsyncIterator[list[ChatChunk]]) -> AsyncIterator[list[ChatChunk]]:
        """Placeholders restored in streamed text, also when one is split across chunks."""
        if self.vault is None or not len(self.vault):
            return stream
        return _RestoredStream(stream, self.vault)


class _RestoredStream:
    __slots__ = ("_inner", "_restorers", "_vault")

    def __init__(self, inner: AsyncIterator[list[ChatChunk]], vault: Any) -> None:
        self._inner, self._vault = inner, vault
        self._restorers: dict[int, Any] = {}

    def __aiter__(self) -> "_RestoredStream":
        return self

    async def __anext__(self) -> list[ChatChunk]:
        try:
            batch = await self._inner.__anext__()
        except StopAsyncIteration:
            held = [ChatChunk(index=i, text=r.flush()) for i, r in self._restorers.items() if r.held]
            if held:  # a stream that ended without a finish chunk: what was held is plain text
                return held
            raise
        out: list[ChatChunk] = []
        for chunk in batch:
            restorer = self._restorers.get(chunk.index)
            if restorer is None:
                restorer = self._restorers[chunk.index] = self._vault.stream_restorer()
            text = restorer.feed(chunk.text) if chunk.text else chunk.text
            if chunk.finish_reason is not None and restorer.held:
                text = (text or "") + restorer.flush()
            if text != chunk.text:
                chunk = structs.replace(chunk, text=text)
            if chunk.tool_calls:
                chunk = structs.replace(chunk, tool_calls=[
                    structs.replace(t, arguments=self._vault.restore(t.arguments, _json_escape))
                    for t in chunk.tool_calls])
            if chunk.text == "" and chunk.finish_reason is None and not chunk.tool_calls and chunk.usage is None \
                    and chunk.role is None:
                continue  # everything in it is held back for now
            out.append(chunk)
        return out

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


def _json_escape(text: str) -> str:
    import orjson

    return orjson.dumps(text).decode()[1:-1]  # inside a JSON string (tool-call arguments)


class Guardrails:
    """The configured policies; ``start`` picks one for a call and runs its input checks."""

    def __init__(self, policies: Sequence[PolicySpec]) -> None:
        self.policies = tuple(policies)

    def policy_for(self, principal: Any, alias: str) -> PolicySpec | None:
        for policy in self.policies:
            if policy.applies(principal, alias):
                return policy
        return None

    def start(self, principal: Any, req: ChatRequest) -> tuple[ChatRequest, Session | None]:
        policy = self.policy_for(principal, req.model)
        if policy is None:
            return req, None
        session = Session(policy)
        try:
            for spec in policy.input:
                req = _check_input(spec, req, session)
        except GatewayError as err:
            err.guardrails = session.header()  # type: ignore[attr-defined]  # the verdicts, the block included
            raise
        return req, session


def _check_input(spec: CheckSpec, req: ChatRequest, session: Session) -> ChatRequest:
    if spec.check == "pii":
        return _pii_input(spec, req, session)
    if spec.check == "injection":
        _injection_input(spec, req, session)
    elif spec.check == "max_length":
        size = sum(len(m.text()) for m in req.messages)
        if spec.max_chars is not None and size > spec.max_chars:
            verdict = Verdict("max_length", spec.action, 1.0, (f"{size} > {spec.max_chars} characters",))
            session.verdicts.append(verdict)
            if spec.action == "block":
                raise blocked(verdict, "request")
    return req


def _pii_input(spec: CheckSpec, req: ChatRequest, session: Session) -> ChatRequest:
    from sluice.policies.guardrails.pii import detect
    from sluice.policies.guardrails.redact import Vault, mask

    types = None if spec.types is None else set(spec.types)
    found = sorted({f.type for m in req.messages for p in m.content if isinstance(p, TextPart)
                    for f in detect(p.text, types)}
                   | {f.type for m in req.messages for c in (m.tool_calls or ()) for f in detect(c.arguments, types)})
    if not found:
        session.verdicts.append(Verdict("pii", "allow"))
        return req
    verdict = Verdict("pii", spec.action, 1.0, tuple(found))
    session.verdicts.append(verdict)
    if spec.action == "block":
        raise blocked(verdict, "request")
    if spec.action != "redact":
        return req
    if spec.mode == "mask":
        return _map_text(req, lambda text: mask(text, spec.types))
    vault = session.vault = session.vault or Vault(spec.types)
    return _map_text(req, vault.redact)


def _map_text(req: ChatRequest, fn) -> ChatRequest:
    messages = []
    for m in req.messages:
        content = [structs.replace(p, text=fn(p.text)) if isinstance(p, TextPart) else p for p in m.content]
        calls = [ToolCall(id=c.id, name=c.name, arguments=fn(c.arguments)) for c in m.tool_calls] \
            if m.tool_calls else m.tool_calls
        messages.append(structs.replace(m, content=content, tool_calls=calls))
    return structs.replace(req, messages=messages)


def _injection_input(spec: CheckSpec, req: ChatRequest, session: Session) -> None:
    from sluice.policies.guardrails.injection import DEFAULT_THRESHOLD, scan_messages

    threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLD
    scan = scan_messages(req.messages, threshold=threshold)
    flagged = [f for f in scan.findings if f.flagged]
    if not flagged:
        session.verdicts.append(Verdict("injection", "allow", scan.max_score))
        return
    worst = max(flagged, key=lambda f: f.result.score)
    reasons = (f"{worst.kind} in message {worst.message_index}", *worst.result.reasons[:3])
    verdict = Verdict("injection", spec.action, worst.result.score, reasons)
    session.verdicts.append(verdict)
    if spec.action == "block":
        raise blocked(verdict, "request")


__all__ = ["ACTIONS", "CheckSpec", "Guardrails", "PolicySpec", "Session", "Verdict", "blocked"]
