"""Anthropic Messages request validation, as strict as the real API, into a Conversation.

Error messages use the real API's ``<path>: <problem>`` style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.mock.common import ApiError, is_int, is_number
from sluice.mock.replies import Conversation

PARAMS = frozenset(
    "model messages max_tokens system metadata stop_sequences stream temperature top_k top_p tools tool_choice "
    "thinking service_tier container mcp_servers context_management output_config output_format cache_control "
    "inference_geo speed diagnostics".split()
)
_BLOCKS = {
    "user": {"text", "image", "document", "tool_result", "search_result", "container_upload"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result"},
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


@dataclass(slots=True)
class MessagesCtx:
    conv: Conversation
    stream: bool


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def parse_messages_request(body: Any) -> MessagesCtx:
    if not isinstance(body, dict):
        raise bad("Input should be a valid dictionary")
    for key in body:
        if key not in PARAMS:
            raise bad(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            raise bad(f"{key}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise bad("model: Input should be a valid string")
    if not is_int(body["max_tokens"]) or body["max_tokens"] < 1:
        raise bad("max_tokens: Input should be greater than or equal to 1")
    conv = Conversation(max_tokens=body["max_tokens"])
    _check_sampling(body, conv)
    _check_thinking(body)
    names = _parse_tools(body, conv)
    _parse_tool_choice(body, conv, names)
    chars = _system_chars(body.get("system"))
    conv.input_chars = chars + _parse_messages(body["messages"], conv)
    _parse_output_format(body, conv)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream: Input should be a valid boolean")
    return MessagesCtx(conv=conv, stream=stream)


def _check_sampling(body: dict, conv: Conversation) -> None:
    for key, high in (("temperature", 1), ("top_p", 1)):
        value = body.get(key)
        if value is not None and (not is_number(value) or not 0 <= value <= high):
            raise bad(f"{key}: Input should be less than or equal to {high}")
    if body.get("top_k") is not None and (not is_int(body["top_k"]) or body["top_k"] < 0):
        raise bad("top_k: Input should be greater than or equal to 0")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("stop_sequences: Input should be a valid list of strings")
        conv.stop = stops or None


def _check_thinking(body: dict) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise bad("thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not is_int(budget) or budget < 1024:
            raise bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if body["max_tokens"] <= budget:
            raise bad("`max_tokens` must be greater than `thinking.budget_tokens`.")


def _parse_tools(body: dict, conv: Conversation) -> set[str]:
    tools = body.get("tools")
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise bad("tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise bad(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            names.add(str(tool.get("name")))  # a server tool (web search, ...): nothing for the mock to call
            continue
        if not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
            raise bad(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if schema is None:
            raise bad(f"tools.{i}.custom.input_schema: Field required")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise bad(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        names.add(tool["name"])
        conv.tools.append((tool["name"], schema))
    return names


def _parse_tool_choice(body: dict, conv: Conversation, names: set[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise bad("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
    if not names and kind != "none":
        raise bad("tool_choice: tool_choice may only be specified while providing tools.")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise bad("tool_choice.tool.name: Field required")
        if name not in names:
            raise bad(f"tool_choice.tool.name: Tool '{name}' not found in provided tools")
        conv.forced_tool = name
    conv.tool_choice = {"auto": "auto", "any": "required", "tool": "required", "none": "none"}[kind]


def _parse_output_format(body: dict, conv: Conversation) -> None:
    fmt = body.get("output_format")
    if fmt is None and isinstance(body.get("output_config"), dict):
        fmt = body["output_config"].get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        conv.json_schema = fmt.get("schema") if isinstance(fmt.get("schema"), dict) else {"type": "object"}


def _system_chars(system: Any) -> int:
    if system is None:
        return 0
    if isinstance(system, str):
        return len(system)
    if not isinstance(system, list):
        raise bad("system: Input should be a valid string or list of text blocks")
    total = 0
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad(f"system.{i}: Input should be a text block")
        total += len(block["text"])
    return total


def _parse_messages(messages: Any, conv: Conversation) -> int:
    if not isinstance(messages, list):
        raise bad("messages: Input should be a valid list")
    if not messages:
        raise bad("messages: at least one message is required")
    chars = 0
    previous_uses: dict[str, str] = {}
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _BLOCKS:
            role = msg.get("role") if isinstance(msg, dict) else None
            if role == "system":
                raise bad('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.')
            raise bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(msg, i, last=i == len(messages) - 1)
        results = _check_results(blocks, previous_uses, i)
        if previous_uses:
            _results_follow(previous_uses, results, i - 1)
        chars += _account(blocks, conv, msg["role"], results)
        if results:
            conv.tool_result_name = previous_uses[results[-1]["tool_use_id"]]
        previous_uses = {b["id"]: b["name"] for b in blocks if b["type"] == "tool_use"}
    return chars


def _blocks(msg: dict, i: int, last: bool) -> list[dict]:
    content = msg.get("content")
    if isinstance(content, str):
        if not content and not (last and msg["role"] == "assistant"):
            raise bad(f"messages.{i}: all messages must have non-empty content except for the optional final assistant message")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad(f"messages.{i}.content: Input should be a valid string or list of content blocks")
    if not content and not (last and msg["role"] == "assistant"):
        raise bad(f"messages.{i}: all messages must have non-empty content except for the optional final assistant message")
    allowed = _BLOCKS[msg["role"]]
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in allowed:
            raise bad(f"messages.{i}.content.{j}: Input tag '{kind}' found using 'type' does not match any of the expected tags for role '{msg['role']}'")
        _check_block(block, f"messages.{i}.content.{j}")
    return content


def _check_block(block: dict, where: str) -> None:
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise bad(f"{where}.text.text: Field required")
        if not block["text"]:
            raise bad("messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise bad(f"{where}.tool_use: 'id' and 'name' are required")
        if not isinstance(block.get("input"), dict):
            raise bad(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise bad(f"{where}.tool_result.tool_use_id: Field required")
        content = block.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad(f"{where}.tool_result.content: Input should be a valid string or list")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
            raise bad(f"{where}.image.source: Input tag does not match any of the expected tags: 'base64', 'url', 'file'")


def _check_results(blocks: list[dict], previous_uses: dict[str, str], i: int) -> list[dict]:
    results = [b for b in blocks if b["type"] == "tool_result"]
    for j, block in enumerate(blocks):
        if block["type"] == "tool_result" and block["tool_use_id"] not in previous_uses:
            raise bad(
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
    return results


def _results_follow(uses: dict[str, str], results: list[dict], i: int) -> None:
    answered = {b["tool_use_id"] for b in results}
    missing = [u for u in uses if u not in answered]
    if missing:
        raise bad(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(missing)}. "
            "Each `tool_use` block must have a corresponding `tool_result` block in the next message."
        )


def _account(blocks: list[dict], conv: Conversation, role: str, results: list[dict]) -> int:
    """Characters for token counting; updates what the last user turn said."""
    chars = 0
    texts = []
    for b in blocks:
        if b["type"] == "text":
            texts.append(b["text"])
        elif b["type"] == "tool_use":
            chars += len(orjson.dumps(b["input"]))
        elif b["type"] == "tool_result":
            chars += len(result_text(b))
    text = "".join(texts)
    if role == "user":
        conv.last_user_text = text
        conv.last_is_tool_result = bool(results)
        if results:
            conv.tool_result_text = result_text(results[-1])
    return chars + len(text)


def result_text(block: dict) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
