"""Guardrails on answers: placeholders restored (JSON and streams), streamed text checked as it goes.

``GuardedStream`` wraps a call's stream of chunk batches:

* reversible placeholders are restored in text (a placeholder split across chunks is held back
  until it is whole) and in tool-call arguments;
* the output checks that can run incrementally scan the first choice's text through a
  ``StreamScanner``: bounded windows, each character scanned at least once with enough overlap
  that a match across two scans is found. Chunks are released only once the text they carry has
  been scanned, so the client never receives text a later scan refuses; memory stays bounded by
  the scanner's window;
* checks that need the whole answer (``Check.on_text``) run when the upstream ends, on the text
  kept for them (only kept when such a check is configured);
* a block raises the guardrail error: the API layer turns it into the dialect's error event and
  ends the stream without its normal ending.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from msgspec import structs

from sluice.policies.guardrails.verdict import blocked
from sluice.schema import ChatChunk, ChatResponse, Message, TextPart


def _json_escape(text: str) -> str:
    import orjson

    return orjson.dumps(text).decode()[1:-1]  # inside a JSON string (tool-call arguments)


def restore_message(message: Message, vault: Any) -> Message:
    content = [structs.replace(p, text=vault.restore(p.text)) if isinstance(p, TextPart) else p
               for p in message.content]
    calls = [structs.replace(c, arguments=vault.restore(c.arguments, _json_escape))
             for c in message.tool_calls] if message.tool_calls else message.tool_calls
    return structs.replace(message, content=content, tool_calls=calls)


def restore_response(resp: ChatResponse, vault: Any) -> ChatResponse:
    if vault is None or not len(vault):
        return resp
    return structs.replace(resp, choices=[structs.replace(c, message=restore_message(c.message, vault))
                                          for c in resp.choices])


class GuardedStream:
    __slots__ = ("_inner", "_session", "_vault", "_restorers", "_scanner", "_held", "_full", "_ended",
                 "_final_checks")

    def __init__(self, inner: AsyncIterator[list[ChatChunk]], session: Any) -> None:
        from sluice.policies.guardrails.builtin import MaxLengthCheck
        from sluice.policies.guardrails.streaming import StreamScanner

        self._inner, self._session = inner, session
        vault = session.vault
        self._vault = vault if vault is not None and len(vault) else None
        self._restorers: dict[int, Any] = {}
        output = session.policy.output
        checks = [c for c in (check.stream_check() for check in output) if c is not None]
        max_chars = min((c.max_chars for c in output if isinstance(c, MaxLengthCheck) and c.action == "block"),
                        default=None)
        spec = session.policy.spec.stream
        self._scanner = StreamScanner(checks, window=spec.window, overlap=spec.overlap, every=spec.every,
                                      max_chars=max_chars) if checks or max_chars is not None else None
        self._final_checks = [c for c in output if c.wants_full_stream]
        self._full: list[str] | None = [] if self._final_checks else None
        self._held: list[tuple[int, ChatChunk]] = []  # (text offset after the chunk, chunk)
        self._ended = False

    def __aiter__(self) -> "GuardedStream":
        return self

    async def __anext__(self) -> list[ChatChunk]:
        while True:
            if self._ended:
                raise StopAsyncIteration
            try:
                batch = await self._inner.__anext__()
            except StopAsyncIteration:
                self._ended = True
                out = await self._finish()
                if out:
                    return out
                raise
            out = self._admit(batch)
            if out:
                return out

    def _admit(self, batch: list[ChatChunk]) -> list[ChatChunk]:
        scanner = self._scanner
        ready: list[ChatChunk] = []
        for chunk in batch:
            chunk = self._restore(chunk)
            if chunk is None:
                continue
            if chunk.text and chunk.index == 0:
                if self._full is not None:
                    self._full.append(chunk.text)
                if scanner is not None:
                    self._raise_if_blocked(scanner.feed(chunk.text))
            if scanner is None:
                ready.append(chunk)
            else:
                self._held.append((scanner.total_chars, chunk))
        if scanner is None:
            return ready
        # Release the chunks whose text has been scanned (and everything before them, in order).
        cleared, released = scanner.cleared, 0
        while released < len(self._held) and self._held[released][0] <= cleared:
            released += 1
        out = [c for _, c in self._held[:released]]
        del self._held[:released]
        return out

    def _drain(self) -> list[tuple[int, ChatChunk]]:
        held, self._held = self._held, []
        return held

    async def _finish(self) -> list[ChatChunk]:
        tail = [ChatChunk(index=i, text=r.flush()) for i, r in self._restorers.items() if r.held]
        for chunk in tail:
            if chunk.index == 0:
                if self._full is not None:
                    self._full.append(chunk.text or "")
                if self._scanner is not None:
                    self._raise_if_blocked(self._scanner.feed(chunk.text or ""))
            self._held.append((0, chunk))
        if self._scanner is not None:
            self._raise_if_blocked(self._scanner.finish())
            self._session.verdicts.extend(v for v in self._scanner.verdicts if v.action != "block")
        if self._full is not None:
            text = "".join(self._full)
            for check in self._final_checks:
                verdict = await check.on_text(text, self._session)
                if verdict is not None and (verdict.action != "allow" or verdict.reasons):
                    self._session.verdicts.append(verdict)
                    if verdict.action == "block":
                        raise blocked(verdict, "answer")
        return [c for _, c in self._drain()]

    def _raise_if_blocked(self, verdict: Any) -> None:
        if verdict is not None and verdict.action == "block":
            self._session.verdicts.append(verdict)
            raise blocked(verdict, "answer")

    def _restore(self, chunk: ChatChunk) -> ChatChunk | None:
        vault = self._vault
        if vault is None:
            return chunk
        restorer = self._restorers.get(chunk.index)
        if restorer is None:
            restorer = self._restorers[chunk.index] = vault.stream_restorer()
        text = restorer.feed(chunk.text) if chunk.text else chunk.text
        if chunk.finish_reason is not None and restorer.held:
            text = (text or "") + restorer.flush()
        if text != chunk.text:
            chunk = structs.replace(chunk, text=text)
        if chunk.tool_calls:
            chunk = structs.replace(chunk, tool_calls=[
                structs.replace(t, arguments=vault.restore(t.arguments, _json_escape)) for t in chunk.tool_calls])
        if chunk.text == "" and chunk.finish_reason is None and not chunk.tool_calls and chunk.usage is None \
                and chunk.role is None:
            return None  # everything in it is held back for now
        return chunk

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = ["GuardedStream", "restore_message", "restore_response"]
