"""Same-dialect relay: an OpenAI-compatible stream passed to an OpenAI client without re-encoding.

When the client speaks the upstream's dialect and no stage needs the text (no guardrail, no
cache store), decoding every event into canonical chunks and encoding it back is pure cost —
about a third of a streamed call's gateway CPU. The relay forwards whole events instead, one
``ChatChunk(raw=...)`` per network read, and looks inside only where the gateway must:

* the **usage** report (events containing ``"usage":{``) is decoded, for the ledger and limits;
* an **error** event (``"error":`` key, or vLLM's ``"object":"error"``) is decoded, so it fails
  the stream as the decoder would (the client then gets the gateway's error event);
* **finish reasons** outside OpenAI's set (``eos``, ``model_length``, …) are rewritten to the
  ones the decoding path gives;

these come at a stream's end, so only the last few events of each network read are searched
(one more per extra choice): the cost per read stays a few short passes over the bytes;
* events are counted (``raw_tokens``, the first one, which announces the role, excepted): the
  router's first-token wait and the estimate of what a client that left mid-stream consumed
  need no more than that.

When the client did not ask for usage (``stream_options.include_usage``), the usage report the
gateway asked for upstream is cut out here, where it was found anyway, and so is the
``"usage":null`` the upstream then puts on every other event: the client gets what OpenAI would
have sent it.

A stream that is not ``data:`` SSE (newline-delimited JSON, which a few servers send) falls back
to full decoding for its whole length. What the API layer still does to relayed bytes (the model
alias, a missing ``[DONE]``) is in ``sluice.api.openai_dialect``.
"""

from __future__ import annotations

import re
from typing import Any

from sluice.providers.answer_relay import OPENAI_FINISH_REASONS, reported_usage
from sluice.providers.http import parse_events
from sluice.schema import ChatChunk

_SSE_START = re.compile(rb"\s*(?:data:|:|event:|id:|retry:)")
_FINISH_REASON = re.compile(rb'"finish_reason":"([^"]*)"')
_USAGE_ONLY = b'"choices":[]'  # a usage report with no choice in it: only asked-for usage events carry one
_OPENAI_FINISH = frozenset(r.encode() for r in OPENAI_FINISH_REASONS)
# A finish reason outside that set: found in C, without looking at each one in Python.
_ODD_FINISH = re.compile(rb'"finish_reason":"(?!(?:' + "|".join(OPENAI_FINISH_REASONS).encode() + rb')")')


class OpenAIRelay:
    """Turns network reads of an OpenAI-style SSE body into relay batches.

    ``decoder`` is the dialect's ``OpenAIStreamDecoder``: it decodes the few events the relay
    must understand, and every event when the body is not SSE. ``finish`` maps an upstream's
    finish reason to the one an OpenAI client gets on the decoding path.
    """

    __slots__ = ("_decoder", "_finish", "_buf", "_sse", "_first", "_tail_events", "_keep_usage")

    def __init__(self, decoder: Any, finish: Any, choices: int = 1, keep_usage: bool = True) -> None:
        self._decoder = decoder
        self._finish = finish
        self._buf = b""
        self._sse: bool | None = None  # decided by the first bytes
        self._first = True
        self._tail_events = 3 + max(choices, 1)  # finish per choice, usage, [DONE], a keep-alive
        self._keep_usage = keep_usage  # False: the client did not ask for usage events

    def feed(self, data: bytes) -> list[ChatChunk]:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        block, self._buf = buf[:end + 2], buf[end + 2:]
        if self._sse is None:
            self._sse = _SSE_START.match(block) is not None
        if not self._sse:
            return self._decode(block)
        return self._relay(block)

    def finish(self) -> list[ChatChunk]:
        tail, self._buf = self._buf.strip(), b""
        if not tail:
            return []
        if not self._sse:
            return self._decode(tail)
        return self._relay(tail + b"\n\n")

    def _relay(self, block: bytes) -> list[ChatChunk]:
        first, self._first = self._first, False
        # Usage reports, error events and finish reasons end a stream: only the read's last
        # few events are looked at (one more per extra choice), which keeps a read's cost to
        # a few short passes whatever its length.
        tail = len(block) - 2
        for _ in range(self._tail_events):
            tail = block.rfind(b"\n\n", 0, tail)
            if tail < 0:
                break
        tail = max(tail, 0)
        usage = None
        # 'rror"' covers an "error": key and vLLM's "object":"error"; text that merely ends in
        # "error" only costs a closer look.
        if block.find(b'rror"', tail) >= 0:
            for event in _events(block[tail:]):
                if b'"usage":{' in event or b'rror"' in event:
                    usage = self._usage_of(event, usage)  # raises for an error event
        else:
            at = block.find(b'"usage":{', tail)
            while at >= 0:  # usually one event: the report after the finish
                before, after = block.rfind(b"\n\n", 0, at), block.find(b"\n\n", at)
                start = 0 if before < 0 else before + 2
                end = len(block) if after < 0 else after + 2
                usage = reported_usage(block[start:end]) or self._usage_of(block[start:end], usage)
                if not self._keep_usage and _USAGE_ONLY in block[start:end]:
                    block = block[:start] + block[end:]
                    at = block.find(b'"usage":{', start)
                else:
                    at = block.find(b'"usage":{', end)
        if _ODD_FINISH.search(block, tail) is not None:
            block = block[:tail] + _FINISH_REASON.sub(self._canonical_finish, block[tail:])
        events = 0
        if not self._keep_usage:
            # split/join is one pass fewer than replace; and when the upstream marks its chunks
            # with "usage":null (OpenAI does, once asked for usage), the pieces count the events.
            pieces = block.split(b',"usage":null')
            if len(pieces) > 1:
                events, block = len(pieces) - 1, b"".join(pieces)
        if not events:
            events = block.count(b"\n") // 2  # an event is "data: …" and a blank line
        if first:
            events -= 1  # the first event announces the role: not a token yet
        return [ChatChunk(raw=block, raw_tokens=max(events, 0), usage=usage)]

    def _usage_of(self, event: bytes, usage: Any) -> Any:
        for parsed in parse_events(event.strip(b"\n")):
            for chunk in self._decoder.feed(parsed):
                usage = chunk.usage if chunk.usage is not None else usage
        return usage

    def _canonical_finish(self, match: re.Match[bytes]) -> bytes:
        reason = match.group(1)
        if reason in _OPENAI_FINISH:
            return match.group(0)
        return b'"finish_reason":"' + self._finish(reason.decode()).encode() + b'"'

    def _decode(self, block: bytes) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for lines in _events(block):
            for event in parse_events(lines):
                out.extend(self._decoder.feed(event))
        return out


def _events(block: bytes) -> list[bytes]:
    return [e for e in block.split(b"\n\n") if e.strip()]


__all__ = ["OpenAIRelay"]
