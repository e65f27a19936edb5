"""Guardrail policies: which checks run on a call's input and output, and what their verdicts do.

A policy (``guardrails.policies.<name>`` in sluice.yaml) applies to the calls whose model alias,
team and key match it; the first matching policy wins. Its checks run in the order configured,
each returning a ``Verdict`` — allow, flag, redact or block, with a score and reasons. The checks
are in ``builtin`` (pii, injection, max_length, moderation, json_schema, topics) and ``checks``
(webhook and Python entry points).

Verdicts are reported in the ``x-sluice-guardrails`` header (``check=action[:score]`` items), kept
in the ledger row and, when not ``allow``, in the audit log; a block is a 400 in the client's
dialect with code ``guardrail_blocked``.

Streams (``Session.guard_stream``): placeholders are restored across chunk boundaries; the checks
that can run incrementally (regex PII, local moderation, deny keywords, length) scan bounded
windows of the text as it arrives, and text is released to the client only once scanned, so a
violation ends the stream with an error event before the offending text leaves. Checks that need
the whole answer (webhooks, entry points, remote moderation, JSON schema, allow lists) run when
the upstream finishes, before the stream's end; their block ends the stream with an error event.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from sluice.policies.guardrails.checks import Check, GuardServices
from sluice.policies.guardrails.verdict import ACTIONS, Verdict, blocked
from sluice.schema import ChatChunk, ChatRequest, ChatResponse, GatewayError


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One configured check (the shape of ``sluice.config.GuardrailCheckConfig``)."""

    check: str
    action: str = "block"
    mode: str = "reversible"
    types: tuple[str, ...] | None = None
    threshold: float | None = None
    max_chars: int | None = None
    name: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    timeout: float = 2.0
    fail: str = "closed"
    backend: str = "local"
    model: str | None = None
    judge: str | None = None
    categories: tuple[str, ...] | None = None
    schema: Any = None
    repair: bool = False
    allow: tuple[TopicSpec, ...] | None = None
    deny: tuple[TopicSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamSpec:
    every: int = 200  # scan after this many new characters
    window: int = 2000  # characters held for scanning at most
    overlap: int = 200  # characters scanned again so a match across two scans is found


@dataclass(frozen=True, slots=True)
class PolicySpec:
    name: str
    input: tuple[CheckSpec, ...] = ()
    output: tuple[CheckSpec, ...] = ()
    models: tuple[str, ...] = ("*",)
    teams: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    stream: StreamSpec = StreamSpec()

    def applies(self, principal: Any, alias: str) -> bool:
        if not any(fnmatch.fnmatchcase(alias, pattern) for pattern in self.models):
            return False
        if self.teams is not None and getattr(principal, "team_id", None) not in self.teams:
            return False
        return self.keys is None or getattr(principal, "key_id", None) in self.keys


@dataclass
class Policy:
    """A policy with its checks built."""

    spec: PolicySpec
    input: list[Check]
    output: list[Check]

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Session:
    """One call's guardrail state: verdicts so far, the vault of reversible placeholders, the
    request as the upstream sees it (for repairs), and how to ask the model again."""

    policy: Policy
    context: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    vault: Any | None = None  # sluice.policies.guardrails.redact.Vault
    request: ChatRequest | None = None
    retry: Callable[[ChatRequest], Awaitable[ChatResponse]] | None = None
    owner: Any = None  # the gateway's call, opaque here: calls a check makes are accounted to it

    def header(self) -> str:
        return ", ".join(v.render() for v in self.verdicts)

    def acted(self) -> bool:
        return any(v.action != "allow" for v in self.verdicts)

    async def finish_response(self, resp: ChatResponse) -> ChatResponse:
        """Output checks that must see what the upstream produced (``before_restore``: the JSON
        schema check, whose repair quotes the answer) run first; then placeholders are restored
        and the other output checks run."""
        from sluice.policies.guardrails.stream_guard import restore_response

        for check in self.policy.output:
            if check.before_restore:
                resp = await check.on_output(resp, self)
        resp = restore_response(resp, self.vault)
        for check in self.policy.output:
            if not check.before_restore:
                resp = await check.on_output(resp, self)
        return resp

    def watches_output(self) -> bool:
        """Whether the answer must pass through this session (placeholders or output checks)."""
        return bool(self.policy.output) or (self.vault is not None and len(self.vault) > 0)

    def guard_stream(self, stream: AsyncIterator[list[ChatChunk]]) -> AsyncIterator[list[ChatChunk]]:
        from sluice.policies.guardrails.stream_guard import GuardedStream

        return GuardedStream(stream, self) if self.watches_output() else stream


class Guardrails:
    """The configured policies; ``start`` picks one for a call and runs its input checks."""

    def __init__(self, policies: Sequence[PolicySpec], services: GuardServices | None = None) -> None:
        from sluice.policies.guardrails.build import build_check

        self.services = services or GuardServices()

        def checks(policy: PolicySpec, stage: str) -> list[Check]:
            built = []
            for i, spec in enumerate(getattr(policy, stage), start=1):
                try:
                    built.append(build_check(spec, stage, self.services))
                except ValueError as exc:
                    raise ValueError(f"policy '{policy.name}', {stage} check {i} ({spec.check}): {exc}") from None
            return built

        self.policies = [Policy(p, checks(p, "input"), checks(p, "output")) for p in policies]

    def policy_for(self, principal: Any, alias: str) -> Policy | None:
        for policy in self.policies:
            if policy.spec.applies(principal, alias):
                return policy
        return None

    async def start(self, principal: Any, req: ChatRequest, context: dict[str, Any] | None = None,
                    retry: Callable[[ChatRequest], Awaitable[ChatResponse]] | None = None,
                    owner: Any = None) -> tuple[ChatRequest, Session | None]:
        policy = self.policy_for(principal, req.model)
        if policy is None:
            return req, None
        session = Session(policy, context=dict(context or {}), retry=retry, owner=owner)
        try:
            for check in policy.input:
                req = await check.on_input(req, session)
            for check in policy.output:
                check.prepare(req)
        except GatewayError as err:
            err.guardrails = session.header()  # type: ignore[attr-defined]  # the verdicts, the block included
            raise
        session.request = req
        return req, session

    async def close(self) -> None:
        for policy in self.policies:
            for check in (*policy.input, *policy.output):
                await check.close()


__all__ = ["ACTIONS", "CheckSpec", "GuardServices", "Guardrails", "Policy", "PolicySpec", "Session", "StreamSpec",
           "TopicSpec", "Verdict", "blocked"]
