"""OpenAI Chat Completions request validation, as strict as the real API, into a Conversation.

Error texts follow the real API's wording where it is known; the point is that a request
Sluice's adapters build wrongly is rejected here exactly as upstream would reject it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.mock.common import ApiError, is_int, is_number
from sluice.mock.replies import Conversation

CHAT_PARAMS = frozenset(
    "model messages audio frequency_penalty function_call functions logit_bias logprobs "
    "max_completion_tokens max_tokens metadata modalities moderation n parallel_tool_calls prediction "
    "presence_penalty prompt_cache_key prompt_cache_options prompt_cache_retention reasoning_effort "
    "response_format safety_identifier seed service_tier stop store stream stream_options temperature "
    "tool_choice tools top_logprobs top_p user verbosity web_search_options".split()
)
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_USER_PARTS = {"text", "image_url", "input_audio", "file"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(slots=True)
class ChatCtx:
    conv: Conversation
    n: int
    stream: bool
    include_usage: bool


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def parse_chat(body: Any) -> ChatCtx:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", code=None)
    for key in body:
        if key not in CHAT_PARAMS:
            raise bad(f"Unrecognized request argument supplied: {key}", code=None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad("you must provide a model parameter", param="model", code=None)
    conv = Conversation()
    _check_sampling(body, conv)
    tool_names = _parse_tools(body, conv)
    _parse_tool_choice(body, conv, tool_names)
    _parse_response_format(body, conv)
    _parse_messages(body.get("messages"), conv)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return ChatCtx(conv=conv, n=body.get("n") or 1, stream=stream, include_usage=include_usage)


def _check_sampling(body: dict, conv: Conversation) -> None:
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)):
        value = body.get(key)
        if value is not None and (not is_number(value) or not low <= value <= high):
            raise bad(f"Invalid '{key}': must be a number between {low} and {high}.", key, "decimal_out_of_range")
    n = body.get("n")
    if n is not None and (not is_int(n) or not 1 <= n <= 128):
        raise bad("Invalid 'n': integer must be between 1 and 128.", "n", "integer_out_of_range")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not is_int(value) or value < 1):
            raise bad(f"Invalid '{key}': integer below minimum value. Expected a value >= 1.", key, "integer_below_min_value")
    conv.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    if isinstance(stop, str):
        conv.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        conv.stop = stop or None
    elif stop is not None:
        raise bad("Invalid 'stop': expected a string or an array of at most 4 strings.", "stop", "invalid_type")


def _parse_tools(body: dict, conv: Conversation) -> set[str]:
    tools = body.get("tools")
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") not in ("function", "custom"):
            raise bad(f"Invalid value for '{where}.type': expected 'function'.", f"{where}.type")
        fn = tool.get(tool["type"])
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name", "missing_required_parameter")
        if not _TOOL_NAME.match(fn["name"]):
            raise bad(f"Invalid '{where}.function.name': string does not match pattern '^[a-zA-Z0-9_-]+$'.", f"{where}.function.name", "invalid_value")
        params = fn.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
            raise bad(f"Invalid schema for function '{fn['name']}': schema must be a JSON Schema of 'type: \"object\"'.", f"{where}.function.parameters", "invalid_function_parameters")
        names.add(fn["name"])
        conv.tools.append((fn["name"], params))
    return names


def _parse_tool_choice(body: dict, conv: Conversation, names: set[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        conv.tool_choice = "auto"
        return
    if not names:
        raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice")
    if choice in ("none", "auto", "required"):
        conv.tool_choice = choice
        return
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if not isinstance(name, str):
        raise bad("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.", "tool_choice")
    if name not in names:
        raise bad(f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.", "tool_choice")
    conv.tool_choice, conv.forced_tool = "required", name


def _parse_response_format(body: dict, conv: Conversation) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        conv.json_object = True
    elif kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema.name", "missing_required_parameter")
        conv.json_schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {"type": "object"}
    elif kind != "text":
        raise bad("Invalid value for 'response_format.type': expected one of 'text', 'json_object', 'json_schema'.", "response_format.type")


def _parse_messages(messages: Any, conv: Conversation) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages", "empty_array")
    pending: dict[str, str] = {}  # tool_call_id -> function name, awaiting a tool message
    names: dict[str, str] = {}
    chars = 0
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise bad(f"Invalid value for '{where}.role': expected one of {', '.join(sorted(_ROLES))}.", f"{where}.role")
        role = msg["role"]
        if role != "tool" and pending:
            raise _unanswered(pending)
        text = _content_text(msg, where)
        chars += len(text)
        if role == "assistant":
            pending = _assistant_calls(msg, where)
            names.update(pending)
            chars += sum(len(str(c.get("function", {}).get("arguments", ""))) for c in msg.get("tool_calls") or [])
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in pending:
                raise bad("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", f"{where}.role")
            pending.pop(call_id)
            conv.last_is_tool_result, conv.tool_result_text, conv.tool_result_name = True, text, names.get(call_id, "")
        elif role == "user":
            conv.last_is_tool_result, conv.last_user_text = False, text
    if pending:
        raise _unanswered(pending)
    conv.input_chars = chars


def _unanswered(pending: dict[str, str]) -> ApiError:
    ids = ", ".join(pending)
    return bad(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {ids}",
        "messages",
    )


def _assistant_calls(msg: dict, where: str) -> dict[str, str]:
    calls = msg.get("tool_calls")
    if calls is None:
        if msg.get("content") is None and msg.get("function_call") is None:
            raise bad(f"Invalid value for '{where}.content': expected a string, got null.", f"{where}.content", "invalid_type")
        return {}
    if not isinstance(calls, list) or not calls:
        raise bad(f"Invalid '{where}.tool_calls': empty array. Expected an array with minimum length 1.", f"{where}.tool_calls", "empty_array")
    out: dict[str, str] = {}
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or call.get("type", "function") != "function" or not isinstance(fn, dict):
            raise bad(f"Invalid value for '{where}.tool_calls[{j}]'.", f"{where}.tool_calls[{j}]")
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise bad(f"Missing required parameter: '{where}.tool_calls[{j}].function.arguments'.", f"{where}.tool_calls[{j}].function", "missing_required_parameter")
        out[call["id"]] = fn["name"]
    return out


def _content_text(msg: dict, where: str) -> str:
    content = msg.get("content")
    if content is None:
        if msg["role"] in ("assistant", "function"):
            return ""
        raise bad(f"Invalid value for '{where}.content': expected a string, got null.", f"{where}.content", "invalid_type")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(f"Invalid type for '{where}.content': expected one of a string or array of objects.", f"{where}.content", "invalid_type")
    allowed = _USER_PARTS if msg["role"] == "user" else {"text", "refusal"}
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise bad(f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(repr(a) for a in allowed))}.", f"{where}.content[{j}].type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise bad(f"Missing required parameter: '{where}.content[{j}].text'.", f"{where}.content[{j}].text", "missing_required_parameter")
            texts.append(part["text"])
        elif kind == "image_url" and not isinstance((part.get("image_url") or {}).get("url"), str):
            raise bad(f"Missing required parameter: '{where}.content[{j}].image_url.url'.", f"{where}.content[{j}].image_url.url", "missing_required_parameter")
    return "".join(texts)


def parse_embeddings(body: Any, default_dims: int) -> tuple[list[str], int, str]:
    """(texts, dimensions, encoding_format) of an embeddings request; token-id input is echoed as text."""
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", code=None)
    for key in body:
        if key not in ("input", "model", "dimensions", "encoding_format", "user"):
            raise bad(f"Unrecognized request argument supplied: {key}", code=None)
    if not isinstance(body.get("model"), str):
        raise bad("you must provide a model parameter", "model", None)
    texts = _embedding_inputs(body.get("input"))
    dims = body.get("dimensions")
    if dims is not None and (not is_int(dims) or dims < 1):
        raise bad("Invalid 'dimensions': integer below minimum value. Expected a value >= 1.", "dimensions", "integer_below_min_value")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad("Invalid value for 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    return texts, dims or default_dims, encoding


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "input")
    if all(is_int(v) for v in value):
        return [orjson.dumps(value).decode()]
    texts = []
    for item in value:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(is_int(v) for v in item):
            texts.append(orjson.dumps(item).decode())
        else:
            raise bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "input")
    return texts
