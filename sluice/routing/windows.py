"""Context windows and a prompt-size estimate, so an oversized prompt is routed before it fails.

The estimate is deliberately simple and errs high for English text: about four characters per
token for text, a flat charge per image, and the tool schemas included. A provider that still
answers "too long" is handled by the same fallback (the error is mapped to
``context_window_exceeded`` by every adapter).
"""

from __future__ import annotations

import re

import msgspec

from sluice.schema import ChatRequest, ImagePart

# Input context windows (tokens) of common models; a deployment's `context_window` overrides.
_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4.1": 1_047_576, "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576, "o1": 200_000, "o3": 200_000, "o3-mini": 200_000, "o4-mini": 200_000,
    "gpt-5": 400_000, "gpt-5-mini": 400_000, "gpt-5-nano": 400_000, "gpt-4-turbo": 128_000, "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "claude-3-5-haiku": 200_000, "claude-3-7-sonnet": 200_000, "claude-sonnet-4": 200_000,
    "claude-sonnet-4-5": 200_000, "claude-opus-4": 200_000, "claude-opus-4-1": 200_000, "claude-haiku-4-5": 200_000,
    "gemini-2.0-flash": 1_048_576, "gemini-2.5-flash": 1_048_576, "gemini-2.5-pro": 1_048_576,
    "gemini-2.5-flash-lite": 1_048_576,
    "mistral-large": 128_000, "mistral-small": 128_000, "codestral": 256_000,
}
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview.*)$")
_IMAGE_TOKENS = 1_000


def context_window(model: str) -> int | None:
    """The model's window from the table: exact name, then without a dated snapshot suffix."""
    name = model.rsplit("/", 1)[-1].lower()
    return _WINDOWS.get(name) or _WINDOWS.get(_SNAPSHOT.sub("", name))


def estimate_prompt_tokens(req: ChatRequest) -> int:
    chars = 0
    images = 0
    for m in req.messages:
        for p in m.content:
            if isinstance(p, ImagePart):
                images += 1
            else:
                chars += len(p.text)
        for call in m.tool_calls or ():
            chars += len(call.arguments) + len(call.name)
        chars += 16  # role and message framing
    if req.tools:
        chars += len(msgspec.json.encode(req.tools))
    return chars // 4 + 1 + images * _IMAGE_TOKENS
