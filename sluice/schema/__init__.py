"""Canonical types shared by every layer. Imports nothing else of sluice."""

from sluice.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from sluice.schema.errors import GatewayError, kind_for_status

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ContentPart",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "FinishReason",
    "GatewayError",
    "ImagePart",
    "Message",
    "ResponseFormat",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "kind_for_status",
]
