"""The configured checks, each one object with the same small interface the engine drives.

A check looks at the request going up (``on_input``), at the answer coming back (``on_output``),
and — for streamed answers — offers a synchronous ``stream_check`` the engine runs incrementally
over bounded windows of the text, and/or an asynchronous ``on_text`` it runs once on the whole
answer when the stream ends. Every check appends its ``Verdict`` to the call's session and raises
the dialect-neutral block error (``verdict.blocked``) when its action is ``block``.

The checks that call a model or an endpoint (the moderation backends, the injection LLM judge)
get them from ``GuardServices``, which the gateway fills: this layer never imports the router.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from msgspec import structs

from sluice.policies.guardrails.outcome import CheckOutcome
from sluice.policies.guardrails.verdict import Verdict, blocked
from sluice.schema import ChatRequest, ChatResponse, Message, TextPart, ToolCall

log = logging.getLogger("sluice.guardrails")

TextCheck = Callable[[str], "Verdict | None"]


@dataclass(slots=True)
class GuardServices:
    """What checks may call, provided by the gateway: a chat call to a model alias (Llama Guard,
    the injection judge), an OpenAI-style moderation request to an alias's provider, and the
    in-process text embedder (topic examples). The last argument of the first two is the
    session's ``owner``: the gateway records each such call in the ledger against it."""

    complete: Callable[[str, ChatRequest, Any], Awaitable[ChatResponse]] | None = None
    moderations: Callable[[str, dict, Any], Awaitable[dict]] | None = None
    embedder: Any | None = None


class SessionLike(Protocol):
    verdicts: list[Verdict]
    vault: Any
    context: dict[str, Any]
    request: ChatRequest | None
    retry: Callable[[ChatRequest], Awaitable[ChatResponse]] | None
    owner: Any


class Check:
    """Base: a check that does nothing at a stage it does not override."""

    name = "check"
    action = "block"
    before_restore = False  # output: runs on the answer as the upstream wrote it (placeholders in)

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        return req

    def prepare(self, req: ChatRequest) -> None:
        """Before the call, for an output check: refuse a request it could never pass."""
        return None

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        return resp

    def stream_check(self) -> TextCheck | None:
        """A synchronous text check to run incrementally over a streamed answer."""
        return None

    async def on_text(self, text: str, session: SessionLike) -> Verdict | None:
        """An asynchronous check of a whole streamed answer, run when the stream ends."""
        return None

    @property
    def wants_full_stream(self) -> bool:
        return type(self).on_text is not Check.on_text

    async def close(self) -> None:
        return None


def report(session: SessionLike, verdict: Verdict, where: str) -> Verdict:
    """Record a verdict; a block becomes the error the client gets."""
    session.verdicts.append(verdict)
    if verdict.action == "block":
        raise blocked(verdict, where)
    return verdict


# ---- text helpers -----------------------------------------------------------------------------


def request_text(req: ChatRequest) -> str:
    return "\n".join(m.text() for m in req.messages)


def last_user_index(req: ChatRequest) -> int | None:
    for i in range(len(req.messages) - 1, -1, -1):
        if req.messages[i].role == "user":
            return i
    return None


def answer_text(resp: ChatResponse) -> str:
    return "\n".join(c.message.text() for c in resp.choices)


def map_request_text(req: ChatRequest, fn: Callable[[str], str]) -> ChatRequest:
    """Every text part and tool-call argument of the request through ``fn``."""
    messages = []
    for m in req.messages:
        content = [structs.replace(p, text=fn(p.text)) if isinstance(p, TextPart) else p for p in m.content]
        calls = [ToolCall(id=c.id, name=c.name, arguments=fn(c.arguments)) for c in m.tool_calls] \
            if m.tool_calls else m.tool_calls
        messages.append(structs.replace(m, content=content, tool_calls=calls))
    return structs.replace(req, messages=messages)


def map_answer_text(resp: ChatResponse, fn: Callable[[str], str]) -> ChatResponse:
    choices = [structs.replace(c, message=structs.replace(c.message, content=[
        structs.replace(p, text=fn(p.text)) if isinstance(p, TextPart) else p for p in c.message.content]))
        for c in resp.choices]
    return structs.replace(resp, choices=choices)


def replace_last_user_text(req: ChatRequest, text: str) -> ChatRequest:
    i = last_user_index(req)
    if i is None:
        return req
    m = req.messages[i]
    others = [p for p in m.content if not isinstance(p, TextPart)]
    messages = list(req.messages)
    messages[i] = structs.replace(m, content=[TextPart(text=text), *others])
    return structs.replace(req, messages=messages)


def replace_answer_text(resp: ChatResponse, text: str) -> ChatResponse:
    if not resp.choices:
        return resp
    first = resp.choices[0]
    others = [p for p in first.message.content if not isinstance(p, TextPart)]
    message = structs.replace(first.message, content=[TextPart(text=text), *others])
    return structs.replace(resp, choices=[structs.replace(first, message=message), *resp.choices[1:]])


def user_message(model: str, text: str, max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text=text)])],
                       max_tokens=max_tokens, temperature=0.0)


# ---- custom checks (webhook, Python entry point) --------------------------------------------


class CustomCheck(Check):
    """A webhook or Python entry point (``sluice.policies.guardrails.custom``) on input and/or output.

    Input checks see the last user message (and the whole conversation in ``messages``); a
    ``redact`` answer replaces that message's text. Output checks see the answer's text; a
    ``redact`` replaces the first choice's text. On streams the check runs once on the whole
    answer when it ends (a block then ends the stream with an error event)."""

    def __init__(self, runner: Any, name: str) -> None:
        self.runner = runner
        self.name = name

    def _context(self, session: SessionLike, messages: list[Message] | None) -> dict[str, Any]:
        return {**session.context, "messages": messages} if messages is not None else dict(session.context)

    async def _run(self, stage: str, text: str, context: dict[str, Any]) -> CheckOutcome:
        outcome: CheckOutcome = await self.runner.run(stage, text, context)
        if outcome.error is not None:  # the fail policy decided; an operator wants to know
            log.warning("guardrail '%s' could not check the %s (%s); it fails %s", self.name, stage,
                        outcome.error, "closed" if outcome.action == "block" else "open",
                        extra={"request_id": context.get("request_id")})
        return outcome

    async def on_input(self, req: ChatRequest, session: SessionLike) -> ChatRequest:
        i = last_user_index(req)
        text = req.messages[i].text() if i is not None else request_text(req)
        outcome = await self._run("input", text, self._context(session, req.messages))
        report(session, outcome.verdict, "request")
        if outcome.replacement is not None:
            req = replace_last_user_text(req, outcome.replacement)
        return req

    async def on_output(self, resp: ChatResponse, session: SessionLike) -> ChatResponse:
        outcome = await self._run("output", answer_text(resp), self._context(session, None))
        report(session, outcome.verdict, "answer")
        if outcome.replacement is not None:
            resp = replace_answer_text(resp, outcome.replacement)
        return resp

    async def on_text(self, text: str, session: SessionLike) -> Verdict | None:
        outcome = await self._run("output", text, self._context(session, None))
        return outcome.verdict

    async def close(self) -> None:
        await self.runner.close()


__all__ = ["Check", "CustomCheck", "GuardServices", "TextCheck", "answer_text", "map_answer_text",
           "map_request_text", "report", "request_text", "user_message"]
