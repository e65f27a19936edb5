"""Canonical embedding types."""

from __future__ import annotations

import msgspec


class EmbeddingRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    input: list[str]
    dimensions: int | None = None
    user: str | None = None
    # OpenAI's "float" | "base64": applied by the inbound API, providers always return floats.
    encoding_format: str = "float"
    task_type: str | None = None  # Gemini's taskType, passed through when given


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    model: str
    vectors: list[list[float]]
    usage: EmbeddingUsage = msgspec.field(default_factory=EmbeddingUsage)
