"""Redaction of PII findings: reversible per request (`Vault`, `StreamRestorer`) or not (`mask`).

Reversible mode replaces each value with a placeholder such as ``[EMAIL_1]`` before the upstream
sees the prompt, and puts the value back into the answer. Within one vault the same value always
gets the same placeholder, so the model can still tell that two mentions are the same person.

Collisions: a prompt may already contain text shaped like a placeholder (``[EMAIL_1]`` quoted
from an earlier redacted log, or typed on purpose to make the gateway leak another value). Such
text is treated like a finding of its own: it is swapped for a fresh placeholder and restored
verbatim. So every placeholder-shaped token the upstream sees was issued by this vault, and
restoring is a single, unambiguous pass; a placeholder the model invents is left as it is.

Streams: `StreamRestorer` restores placeholders in text deltas. A placeholder may arrive split
across deltas (``"[EMA"`` + ``"IL_1] thanks"``); the restorer holds back only a tail that is a
prefix of a placeholder this vault issued (at most `MAX_PLACEHOLDER_LENGTH` characters), and
everything else passes through at once.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from sluice.policies.guardrails.pii import ALL_TYPES, Finding, detect

MAX_COUNTER = 999_999
_TYPE_ALTERNATION = "|".join(sorted(ALL_TYPES, key=len, reverse=True))
PLACEHOLDER_RE = re.compile(rf"\[({_TYPE_ALTERNATION})_([1-9][0-9]{{0,5}})\]")
MAX_PLACEHOLDER_LENGTH = 2 + max(len(kind) for kind in ALL_TYPES) + 1 + len(str(MAX_COUNTER))

Detector = Callable[[str], list[Finding]]


def placeholder(kind: str, number: int) -> str:
    return f"[{kind}_{number}]"


class Vault:
    """The placeholders of one request, and the originals they stand for.

    ``types`` limits what is redacted (default: every regex type); ``detector`` replaces `detect`
    (for example one that also runs the optional NER). Not thread-safe: one vault per request.
    """

    def __init__(self, types: Iterable[str] | None = None, detector: Detector | None = None) -> None:
        wanted = None if types is None else frozenset(types)
        self._detect: Detector = detector or (lambda text: detect(text, wanted))
        self._originals: dict[str, str] = {}  # placeholder -> original text
        self._placeholders: dict[tuple[str, str], str] = {}  # (type, original) -> placeholder
        self._counters: dict[str, int] = {}

    @property
    def originals(self) -> dict[str, str]:
        """A copy of placeholder → original, for logs of *what kind* was redacted, never the values."""
        return dict(self._originals)

    def __len__(self) -> int:
        return len(self._originals)

    def redact(self, text: str, findings: Iterable[Finding] | None = None) -> str:
        """Replace findings (detected now unless given) and placeholder look-alikes with placeholders."""
        spans = list(self._detect(text) if findings is None else findings)
        spans = _merge_lookalikes(spans, text)
        pieces: list[str] = []
        position = 0
        for finding in spans:
            pieces.append(text[position : finding.start])
            pieces.append(self._placeholder_for(finding.type, text[finding.start : finding.end]))
            position = finding.end
        pieces.append(text[position:])
        return "".join(pieces)

    def restore(self, text: str, encode: Callable[[str], str] | None = None) -> str:
        """Put the originals back. ``encode`` escapes them for where they land (e.g. inside JSON strings)."""
        if not self._originals or "[" not in text:
            return text

        def original(match: re.Match[str]) -> str:
            value = self._originals.get(match.group())
            if value is None:
                return match.group()  # not ours: leave what the model wrote
            return encode(value) if encode else value

        return PLACEHOLDER_RE.sub(original, text)

    def stream_restorer(self, encode: Callable[[str], str] | None = None) -> "StreamRestorer":
        return StreamRestorer(self, encode)

    def could_be_partial(self, tail: str) -> bool:
        """Whether ``tail`` (starting with "[") is the start of a placeholder this vault issued."""
        return any(issued.startswith(tail) and issued != tail for issued in self._originals)

    def _placeholder_for(self, kind: str, original: str) -> str:
        key = (kind, original)
        existing = self._placeholders.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(kind, 0) + 1
        if number > MAX_COUNTER:
            raise OverflowError(f"more than {MAX_COUNTER} distinct {kind} values in one request")
        self._counters[kind] = number
        issued = placeholder(kind, number)
        self._placeholders[key] = issued
        self._originals[issued] = original
        return issued


def _merge_lookalikes(findings: list[Finding], text: str) -> list[Finding]:
    """Findings plus placeholder-shaped text already in ``text``, sorted and non-overlapping."""
    if "[" not in text:
        return sorted(findings, key=lambda f: f.start)
    lookalikes = [
        Finding(match.group(1), match.start(), match.end(), match.group(), 1.0)
        for match in PLACEHOLDER_RE.finditer(text)
    ]
    merged: list[Finding] = []
    for finding in sorted(lookalikes + findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1].end:
            continue  # look-alikes come first at a position; a detector never finds PII inside one
        merged.append(finding)
    return merged


class StreamRestorer:
    """Restores a vault's placeholders in a stream of text deltas, split anywhere."""

    def __init__(self, vault: Vault, encode: Callable[[str], str] | None = None) -> None:
        self._vault = vault
        self._encode = encode
        self._held = ""

    @property
    def held(self) -> str:
        """Text waiting for the next delta: a possible placeholder prefix, never longer than one."""
        return self._held

    def feed(self, chunk: str) -> str:
        buffer = self._held + chunk
        cut = self._hold_from(buffer)
        self._held = buffer[cut:]
        return self._vault.restore(buffer[:cut], self._encode)

    def flush(self) -> str:
        """The end of the stream: whatever was held is plain text after all."""
        rest, self._held = self._held, ""
        return self._vault.restore(rest, self._encode)

    def _hold_from(self, buffer: str) -> int:
        # Only the last "[" can open an unfinished placeholder: placeholders hold no other "[".
        window_start = max(0, len(buffer) - MAX_PLACEHOLDER_LENGTH + 1)
        bracket = buffer.rfind("[", window_start)
        if bracket == -1 or not self._vault.could_be_partial(buffer[bracket:]):
            return len(buffer)
        return bracket


def mask(text: str, types: Iterable[str] | None = None, findings: Iterable[Finding] | None = None) -> str:
    """Irreversible redaction: each finding becomes its type, ``[EMAIL]``; nothing is kept."""
    spans = sorted(detect(text, None if types is None else set(types)) if findings is None else findings,
                   key=lambda f: f.start)
    pieces: list[str] = []
    position = 0
    for finding in spans:
        if finding.start < position:
            continue
        pieces.append(text[position : finding.start])
        pieces.append(f"[{finding.type}]")
        position = finding.end
    pieces.append(text[position:])
    return "".join(pieces)
