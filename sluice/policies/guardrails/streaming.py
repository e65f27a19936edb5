"""Checking a streamed answer while it arrives, in bounded memory and linear time.

A ``StreamScanner`` is fed the answer's text deltas and runs synchronous text checks
(``str -> Verdict | None``: a PII regex, a deny-keyword list, …) over it as it grows. It never
keeps the whole answer: after a scan it holds the scanned text's tail that the next scan looks at
again (its context) and the text not scanned yet, never more than ``window`` characters in all.
The context reaches at least ``overlap`` characters back from where the scan ended, and further
back to the start of a word (at most ``overlap // 2`` more), so a check never sees the end of a
word as a whole word. Hence a match is found even when it straddles two scans, provided it starts
at most ``overlap`` characters before the first scan's end: any match up to ``overlap + 1``
characters long.

A scan runs when ``every`` new characters have arrived, earlier at the end of a sentence or line
(once ``every // 2`` new characters are waiting), when the buffer reaches ``window``, and at
``finish()``. Before ``finish()`` a scan stops at the last whitespace and leaves the word being
written for the next scan, so ``ban`` is not reported in a ``banana`` still arriving (unless that
word is longer than ``overlap``, which is then scanned as it is). Each scan looks at its new text
plus at most 2.5 × ``overlap`` characters it has seen before, so the work is linear in the
answer's length — at most (1 + 5·overlap/every) times it — never a rescan of the whole answer.

The first ``block`` verdict ends the scan: ``feed`` and ``finish`` return it from then on. Other
non-allow verdicts (``flag``, and ``redact``, which a scanner cannot apply to text already sent)
are kept in ``verdicts``, the first per check. ``max_chars`` blocks an answer that grows longer.

``cleared`` is how many leading characters no later scan can revisit: text a gateway may release
to the client without risk that a check finds something in it later.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from sluice.policies.guardrails.verdict import Verdict
from sluice.policies.guardrails.outcome import CheckOutcome

TextCheck = Callable[[str], "Verdict | CheckOutcome | None"]

_BOUNDARY = re.compile(r"[.!?](?:\s|$)|\n")


class StreamScanner:
    """Incremental text checks over a stream of deltas (see the module docs)."""

    def __init__(self, checks: Sequence[TextCheck], *, window: int = 2000, overlap: int = 200, every: int = 200,
                 max_chars: int | None = None, max_chars_check: str = "max_length") -> None:
        if overlap < 0 or every < 1 or window <= 3 * overlap:
            raise ValueError(f"need overlap >= 0, every >= 1 and window > 3 * overlap "
                             f"(window={window}, overlap={overlap}, every={every})")
        if max_chars is not None and max_chars < 0:
            raise ValueError(f"max_chars must be >= 0, not {max_chars}")
        self.checks = list(checks)
        self.window, self.overlap, self.every, self.max_chars = window, overlap, every, max_chars
        self.max_chars_check = max_chars_check
        self._boundary_min = max(1, every // 2)
        self._parts: list[str] = []  # the buffer: scanned context first, then unscanned text
        self._buffered = 0
        self._context = 0  # how many characters at the start of the buffer were scanned already
        self._start = 0  # the buffer's first character's offset in the answer
        self._new = 0  # characters received since the last scan
        self.total_chars = 0
        self.scanned_chars = 0  # absolute offset where the last scan ended
        self.scans = 0
        self.blocked: Verdict | None = None
        self.verdicts: list[Verdict] = []
        self.finished = False

    @property
    def buffered(self) -> int:
        """Characters held right now (never more than ``window``)."""
        return self._buffered

    @property
    def cleared(self) -> int:
        if self.finished and self.blocked is None:
            return self.total_chars
        return self._start

    def feed(self, delta: str) -> Verdict | None:
        """Take the next piece of the answer; the blocking verdict once there is one."""
        if self.finished:
            raise RuntimeError("feed() after finish()")
        if self.blocked is not None or not delta:
            return self.blocked
        self.total_chars += len(delta)
        if self.max_chars is not None and self.total_chars > self.max_chars:
            self.blocked = Verdict(self.max_chars_check, "block", 1.0,
                                   (f"the answer is longer than {self.max_chars} characters",))
            return self.blocked
        at = 0
        while at < len(delta) and self.blocked is None:
            piece = delta[at:at + self.window - self._buffered]  # never hold more than window
            at += len(piece)
            self._parts.append(piece)
            self._buffered += len(piece)
            self._new += len(piece)
            if self._new >= self.every or self._buffered >= self.window or \
                    (self._new >= self._boundary_min and _BOUNDARY.search(piece)):
                self._scan(final=False)
        return self.blocked

    def finish(self) -> Verdict | None:
        """Scan what is left; the blocking verdict, if any. Idempotent."""
        if not self.finished:
            if self.blocked is None and self._buffered > self._context:
                self._scan(final=True)
            self.finished = True
            self._parts, self._buffered = [], 0
        return self.blocked

    def _scan(self, final: bool) -> None:
        text = "".join(self._parts)
        cut = len(text) if final else self._cut(text)
        self._run_checks(text[:cut])
        self.scans += 1
        self.scanned_chars = self._start + cut
        keep_from = self._keep_from(text, cut)
        rest = text[keep_from:]
        self._parts, self._buffered = [rest], len(rest)
        self._start += keep_from
        self._context = cut - keep_from
        # The held-back word is not counted as new: counting it would rescan its context on every
        # delta while it grows, quadratic in its length. It is scanned with the next new text.
        self._new = 0

    def _cut(self, text: str) -> int:
        """Where a non-final scan stops: after the last whitespace, unless the word after it is long."""
        last_space = _last_space(text, self._context, len(text))
        if last_space < 0 or len(text) - (last_space + 1) > self.overlap:
            return len(text)
        return last_space + 1

    def _keep_from(self, text: str, cut: int) -> int:
        """Where the next scan's context starts: ``overlap`` back from ``cut``, then back to a word start.

        A context starting mid-word would show a check "nana" as a whole word out of "banana".
        """
        start = cut - self.overlap
        if start <= 0:
            return 0  # the buffer starts where the last context did: a word start, or the answer's
        low = max(0, start - self.overlap // 2)
        space = _last_space(text, low, start)
        if space >= 0:
            return space + 1
        return 0 if low == 0 else start  # a word longer than overlap / 2: cannot align cheaply

    def _run_checks(self, text: str) -> None:
        for check in self.checks:
            verdict = _as_verdict(check(text))
            if verdict is None or verdict.action == "allow":
                continue
            if verdict.action == "block":
                self.blocked = verdict
                return
            if all(v.check != verdict.check for v in self.verdicts):
                self.verdicts.append(verdict)


def _last_space(text: str, low: int, high: int) -> int:
    return max(text.rfind(" ", low, high), text.rfind("\n", low, high), text.rfind("\t", low, high),
               text.rfind("\r", low, high))


def _as_verdict(result: Any) -> Verdict | None:
    return result.verdict if isinstance(result, CheckOutcome) else result


def regex_check(name: str, pattern: str | re.Pattern[str], *, action: str = "block",
                reason: str | None = None) -> TextCheck:
    """A stream check that gives ``action`` when ``pattern`` occurs (case-insensitive for a str)."""
    compiled = re.compile(pattern, re.IGNORECASE) if isinstance(pattern, str) else pattern

    def check(text: str) -> Verdict | None:
        found = compiled.search(text)
        if found is None:
            return None
        return Verdict(name, action, 1.0, (reason or f"matched {found.group(0)[:40]!r}",))

    return check


__all__ = ["StreamScanner", "TextCheck", "regex_check"]
