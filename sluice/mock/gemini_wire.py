"""Gemini generateContent request validation, as strict as the real API, into a Conversation.

Google's JSON parser accepts both ``lowerCamel`` and ``snake_case`` field names and rejects
unknown ones with ``Invalid JSON payload received. Unknown name "x" at '<path>': Cannot find
field.`` — including JSON Schema keys the OpenAPI-subset ``Schema`` does not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.mock.common import ApiError, is_int, is_number
from sluice.mock.replies import Conversation

REQUEST_FIELDS = {"model", "contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig", "cachedContent", "labels"}
GENERATION_FIELDS = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities", "candidateCount",
    "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs",
    "logprobs", "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "imageConfig", "mediaResolution",
}  # fmt: skip
SCHEMA_FIELDS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties", "required",
    "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
    "default", "items", "minimum", "maximum",
}  # fmt: skip
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult"}
_PART_FIELDS = _PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "mediaResolution", "partMetadata"}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "TYPE_UNSPECIFIED"}
_FN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")


@dataclass(slots=True)
class GenerateCtx:
    conv: Conversation
    candidates: int


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def norm(obj: dict) -> dict:
    """The object with snake_case keys folded to lowerCamel, as Google's parser treats them."""
    return {camel(k): v for k, v in obj.items()}


def unknown(name: str, where: str | None) -> str:
    at = f" at '{where}'" if where else ""
    return f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'


def check_fields(obj: dict, allowed: set[str], where: str | None) -> dict:
    for raw in obj:
        if camel(raw) not in allowed:
            raise bad(unknown(raw, where))
    return norm(obj)


def parse_generate(body: Any) -> GenerateCtx:
    if not isinstance(body, dict):
        raise bad("Invalid JSON payload received. Expected an object.")
    body = check_fields(body, REQUEST_FIELDS, None)
    conv = Conversation()
    names = _parse_tools(body.get("tools"), conv)
    _parse_tool_config(body.get("toolConfig"), conv, names)
    candidates = _parse_generation(body.get("generationConfig"), conv)
    chars = _system_chars(body.get("systemInstruction"))
    conv.input_chars = chars + _parse_contents(body.get("contents"), conv)
    return GenerateCtx(conv=conv, candidates=candidates)


def _parse_generation(config: Any, conv: Conversation) -> int:
    if config is None:
        return 1
    if not isinstance(config, dict):
        raise bad("Invalid value at 'generation_config': expected an object.")
    config = check_fields(config, GENERATION_FIELDS, "generation_config")
    count = config.get("candidateCount", 1)
    if not is_int(count) or not 1 <= count <= 8:
        raise bad("* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8")
    temp = config.get("temperature")
    if temp is not None and (not is_number(temp) or not 0 <= temp <= 2):
        raise bad("* GenerateContentRequest.generation_config.temperature: must be between 0 and 2")
    max_out = config.get("maxOutputTokens")
    if max_out is not None and (not is_int(max_out) or max_out < 1):
        raise bad("* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
    conv.max_tokens = max_out
    stops = config.get("stopSequences")
    if stops is not None:
        conv.stop = [s for s in stops if isinstance(s, str)] or None
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema")
        if config.get("responseSchema") is not None:
            schema = check_schema(config["responseSchema"], "generation_config.response_schema")
        conv.json_schema = schema if isinstance(schema, dict) else None
        conv.json_object = conv.json_schema is None
    return count


def check_schema(schema: Any, where: str) -> dict:
    """Validate an OpenAPI-subset Schema; all unknown keys are reported, like the real API."""
    problems: list[str] = []
    _walk_schema(schema, where, problems)
    if problems:
        raise bad("\n".join(problems))
    return schema


def _walk_schema(schema: Any, where: str, problems: list[str]) -> None:
    if not isinstance(schema, dict):
        problems.append(f"Invalid value at '{where}': expected a Schema object.")
        return
    for raw in schema:
        key = camel(raw)
        if key not in SCHEMA_FIELDS:
            problems.append(unknown(raw, where))
        elif key == "type" and isinstance(schema[raw], list):
            problems.append(f"Invalid JSON payload received. Unknown name \"{raw}\" at '{where}': Proto field is not repeating, cannot start list.")
        elif key == "type" and str(schema[raw]).upper() not in _TYPES:
            problems.append(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{schema[raw]}\"")
    props = schema.get("properties")
    if isinstance(props, dict):
        for i, (name, sub) in enumerate(props.items()):
            _walk_schema(sub, f"{where}.properties[{i}].value", problems)
    if "items" in schema:
        _walk_schema(schema["items"], f"{where}.items", problems)
    for i, sub in enumerate(schema.get("anyOf") or schema.get("any_of") or []):
        _walk_schema(sub, f"{where}.any_of[{i}]", problems)


def _parse_tools(tools: Any, conv: Conversation) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise bad("Invalid value at 'tools': expected a list.")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        tool = norm(tool) if isinstance(tool, dict) else {}
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            decl = check_fields(decl, {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}, where)
            name = decl.get("name")
            if not isinstance(name, str) or not _FN_NAME.match(name):
                raise bad(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a letter or an underscore. "
                    "Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64."
                )
            params = decl.get("parameters")
            if params is not None:
                check_schema(params, f"{where}.parameters")
            else:
                params = decl.get("parametersJsonSchema")
            names.add(name)
            conv.tools.append((name, params))
    return names


def _parse_tool_config(config: Any, conv: Conversation, names: set[str]) -> None:
    fcc = norm(norm(config).get("functionCallingConfig") or {}) if isinstance(config, dict) else {}
    mode = fcc.get("mode", "AUTO")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise bad(f"Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\"")
    allowed = fcc.get("allowedFunctionNames") or []
    for name in allowed:
        if name not in names:
            raise bad(f"* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function {name} is not declared.")
    conv.tool_choice = {"ANY": "required", "NONE": "none"}.get(mode, "auto")
    if mode == "ANY" and allowed:
        conv.forced_tool = allowed[0]


def _system_chars(system: Any) -> int:
    if system is None:
        return 0
    if not isinstance(system, dict):
        raise bad("Invalid value at 'system_instruction': expected a Content object.")
    return sum(len(p.get("text", "")) for p in system.get("parts") or [] if isinstance(p, dict))


def _parse_contents(contents: Any, conv: Conversation) -> int:
    if not contents:
        raise bad("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise bad("Invalid value at 'contents': expected a list.")
    chars, prev_calls, prev_role = 0, 0, None
    for i, content in enumerate(contents):
        role, parts = _content(content, i)
        calls = sum(1 for p in parts if "functionCall" in p)
        answers = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if answers and not prev_calls:
            raise bad("Please ensure that function response turn comes immediately after a function call turn.")
        if answers and len(answers) != prev_calls:
            raise bad("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.")
        if calls and prev_role == "model":
            raise bad("Please ensure that function call turn comes immediately after a user turn or after a function response turn.")
        chars += _account(parts, answers, role, conv)
        prev_calls, prev_role = calls, role
    return chars


def _content(content: Any, i: int) -> tuple[str, list[dict]]:
    if not isinstance(content, dict):
        raise bad(f"Invalid value at 'contents[{i}]': expected a Content object.")
    role = content.get("role", "user")
    if role not in ("user", "model", "function"):
        raise bad("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not parts or not isinstance(parts, list):
        raise bad(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
    out = []
    for j, part in enumerate(parts):
        part = check_fields(part if isinstance(part, dict) else {}, _PART_FIELDS, f"contents[{i}].parts[{j}]")
        if sum(1 for k in part if k in _PART_DATA) != 1:
            raise bad(f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n")
        out.append(part)
    return role, out


def _account(parts: list[dict], answers: list[dict], role: str, conv: Conversation) -> int:
    text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    chars = len(text)
    for p in parts:
        if "functionCall" in p:
            chars += len(orjson.dumps(p["functionCall"].get("args") or {}))
    for a in answers:
        chars += len(orjson.dumps(a.get("response") or {}))
    if role != "model":
        conv.last_user_text = text
        conv.last_is_tool_result = bool(answers)
        if answers:
            conv.tool_result_name = str(answers[-1].get("name", ""))
            conv.tool_result_text = orjson.dumps(answers[-1].get("response") or {}).decode()
    return chars


def parse_embed_request(body: Any, where: str) -> tuple[str, int | None]:
    """(text, outputDimensionality) of one EmbedContentRequest."""
    if not isinstance(body, dict):
        raise bad(f"Invalid value at '{where}': expected an object.")
    body = check_fields(body, {"model", "content", "taskType", "title", "outputDimensionality", "embedContentConfig"}, where or None)
    content = body.get("content")
    if not isinstance(content, dict) or not content.get("parts"):
        raise bad(f"* {where or 'EmbedContentRequest'}.content: content is not specified")
    text = "".join(p.get("text", "") for p in content["parts"] if isinstance(p, dict))
    dims = body.get("outputDimensionality")
    if dims is not None and (not is_int(dims) or dims < 1):
        raise bad(f"* {where}.output_dimensionality: must be positive")
    return text, dims
