"""Offline token counting (sluice.policies.tokens) against published known answers.

Known answers come from OpenAI's cookbook "How to count tokens with tiktoken" (token ids of its
example strings, and the prompt_tokens the API reported for its example chat and tool calls)
and OpenAI's vision guide (image token costs). Requests are built from the cookbook's wire
payloads with the OpenAI dialect parser, so what is counted is what a client would send.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib

import bpe_openai
import pytest

from sluice.api.openai_dialect import parse_chat_request
from sluice.policies.tokens import (
    NON_OPENAI_SAFETY_FACTOR,
    count_embedding_tokens,
    count_prompt_tokens,
    count_text_tokens,
    encoding_name_for,
    reserve_tokens,
    warm_up,
)
from sluice.schema import ChatRequest, ImagePart, Message, TextPart, ToolCall

# --- model → encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-oss-120b", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("openrouter/openai/gpt-4.1", "o200k_base"),
        ("GPT-4O", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),  # Azure's spelling
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("anthropic/claude-3-5-haiku", None),
        ("gemini-2.5-pro", None),
        ("llama3.1:8b", None),
        ("mistral-large-latest", None),
        ("o1mini-local", None),  # a name that merely starts with o1
        ("my-azure-deployment", None),
        ("", None),
        (None, None),
    ],
)
def test_encoding_name_for(model, encoding):
    assert encoding_name_for(model) == encoding


# --- known token ids (cookbook, section 3 and 5) ---------------------------------------------

KNOWN_IDS = [
    ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
    ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
    ("o200k_base", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
    ("cl100k_base", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
    ("o200k_base", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
    ("cl100k_base", "お誕生日おめでとう", [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]),
    ("o200k_base", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
]
MODEL_OF = {"cl100k_base": "gpt-4", "o200k_base": "gpt-4o"}


@pytest.mark.parametrize(("encoding", "text", "ids"), KNOWN_IDS)
def test_bpe_openai_ids_equal_tiktoken(encoding, text, ids):
    assert bpe_openai.get_encoding(encoding).encode_ordinary(text) == ids


@pytest.mark.parametrize(("encoding", "text", "ids"), KNOWN_IDS)
def test_text_count_is_exact_for_openai_models(encoding, text, ids):
    assert count_text_tokens(text, MODEL_OF[encoding]) == len(ids)


def test_special_token_text_is_counted_as_plain_text():
    # A user typing "<|endoftext|>" must not be counted as (or rejected for) one special token.
    assert count_text_tokens("<|endoftext|>", "gpt-4o") > 1


def test_unicode_and_emoji():
    for text in ["🦊", "👩‍👩‍👧‍👦 family", "naïve café — Ünïcödé", "مرحبا بالعالم", "\U0001f600" * 50]:
        for encoding, model in MODEL_OF.items():
            assert count_text_tokens(text, model) == len(bpe_openai.get_encoding(encoding).encode_ordinary(text))
    # a lone surrogate (possible from a JSON "\ud83e" escape) is counted, not an exception
    assert count_text_tokens("broken \ud83e pair", "gpt-4o") > 0


def test_long_texts_are_counted_in_pieces_without_changing_the_count():
    # bpe-openai refuses >= 1,000,000 characters or > 200,000 tokens in one call. Each
    # " The quick … dog." unit starts a new pre-token, so the whole counts N × one unit.
    unit = " The quick brown fox jumps over the lazy dog."
    repeats = 1_500_000 // len(unit)
    assert count_text_tokens(unit * repeats, "gpt-4o") == repeats * count_text_tokens(unit, "gpt-4o")
    assert count_text_tokens(unit * repeats, "gpt-4") == repeats * count_text_tokens(unit, "gpt-4")


def test_long_text_without_spaces_is_close():
    # No safe place to cut: blind cuts may move the count by a token per seam, no more.
    text = "A" * 1_200_000
    expected = (len(text) // 960) * count_text_tokens("A" * 960, "gpt-4o")
    assert abs(count_text_tokens(text, "gpt-4o") - expected) <= len(text) // 20_000


def test_empty_texts():
    assert count_text_tokens("", "gpt-4o") == 0
    assert count_text_tokens("", "claude-sonnet-4-5") == 0
    assert count_embedding_tokens([], "text-embedding-3-small") == 0


# --- chat framing (cookbook section 6 and 7: counts reported by the OpenAI API) ---------------

COOKBOOK_MESSAGES = [
    {"role": "system",
     "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user",
     "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user",
     "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]

COOKBOOK_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return",
                         "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}]
COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def _chat(messages, **fields) -> ChatRequest:
    return parse_chat_request({"model": "any", "messages": messages, **fields})


@pytest.mark.parametrize(
    ("model", "prompt_tokens"),
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124),
     ("openai/gpt-4o-2024-08-06", 124)],
)
def test_chat_count_matches_the_api_in_openais_example(model, prompt_tokens):
    assert count_prompt_tokens(_chat(COOKBOOK_MESSAGES), model) == prompt_tokens


@pytest.mark.parametrize(
    ("model", "prompt_tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tool_definitions_match_the_api_in_openais_example(model, prompt_tokens):
    req = _chat(COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS)
    assert count_prompt_tokens(req, model) == prompt_tokens


def test_nested_tool_schemas_count_more_than_flat_ones():
    flat = _chat(COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS)
    nested_tool = {"type": "function", "function": {
        "name": "get_current_weather", "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {
            **COOKBOOK_TOOLS[0]["function"]["parameters"]["properties"],
            "days": {"type": "array", "description": "Days to forecast",
                     "items": {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}}},
        }},
    }}
    nested = _chat(COOKBOOK_TOOL_MESSAGES, tools=[nested_tool])
    items_json = '{"items":{"type":"object","properties":{"date":{"type":"string","format":"date"}}}}'
    assert count_prompt_tokens(nested, "gpt-4o") >= (
        count_prompt_tokens(flat, "gpt-4o") + count_text_tokens(items_json, "gpt-4o"))


def test_schema_definitions_beside_the_properties_count():
    definitions = {"$defs": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}
    tool = {"type": "function", "function": {
        **COOKBOOK_TOOLS[0]["function"],
        "parameters": {**COOKBOOK_TOOLS[0]["function"]["parameters"], **definitions},
    }}
    flat = _chat(COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS)
    with_definitions = _chat(COOKBOOK_TOOL_MESSAGES, tools=[tool])
    added = count_prompt_tokens(with_definitions, "gpt-4o") - count_prompt_tokens(flat, "gpt-4o")
    assert added == count_text_tokens('{"$defs":{"unit":{"type":"string","enum":["celsius","fahrenheit"]}}}', "gpt-4o")


def test_empty_messages():
    # Only the reply priming; then each empty message costs its framing (3) and role (1 token).
    assert count_prompt_tokens(ChatRequest(model="m", messages=[]), "gpt-4o") == 3
    empty = ChatRequest(model="m", messages=[Message(role="user"), Message(role="user", content=[TextPart(text="")])])
    assert count_prompt_tokens(empty, "gpt-4o") == 3 + 2 * (3 + 1)


def test_several_text_parts_all_count():
    one = _chat([{"role": "user", "content": "tiktoken is great!"}])
    two = _chat([{"role": "user", "content": [{"type": "text", "text": "tiktoken is great!"},
                                              {"type": "text", "text": "tiktoken is great!"}]}])
    assert count_prompt_tokens(two, "gpt-4") == count_prompt_tokens(one, "gpt-4") + 6


def test_tool_calls_and_results_count():
    arguments = '{"location": "San Francisco, CA", "unit": "celsius"}'
    plain = _chat(COOKBOOK_TOOL_MESSAGES)
    with_call = ChatRequest(model="m", messages=[
        *plain.messages,
        Message(role="assistant", tool_calls=[ToolCall(id="call_1", name="get_current_weather", arguments=arguments)]),
        Message(role="tool", tool_call_id="call_1", content=[TextPart(text="18 degrees, sunny")]),
    ])
    added = count_prompt_tokens(with_call, "gpt-4o") - count_prompt_tokens(plain, "gpt-4o")
    assert added >= (count_text_tokens(arguments, "gpt-4o") + count_text_tokens("get_current_weather", "gpt-4o")
                     + count_text_tokens("18 degrees, sunny", "gpt-4o") + 2 * 3)


def test_json_schema_response_format_counts():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    plain = _chat(COOKBOOK_TOOL_MESSAGES)
    structured = _chat(COOKBOOK_TOOL_MESSAGES, response_format={
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema}})
    assert count_prompt_tokens(structured, "gpt-4o") > count_prompt_tokens(plain, "gpt-4o") + 10


# --- non-OpenAI estimate -----------------------------------------------------------------------

SAMPLES = [
    "The quick brown fox jumps over the lazy dog.",
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "お誕生日おめでとう 🎉🦊",
    "x" * 1000,
]


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash", "llama3.1:70b", "azure-deployment-1"])
@pytest.mark.parametrize("text", SAMPLES)
def test_non_openai_estimate_is_o200k_scaled(model, text):
    o200k = len(bpe_openai.get_encoding("o200k_base").encode_ordinary(text))
    estimate = count_text_tokens(text, model)
    assert estimate >= o200k
    assert estimate == math.ceil(o200k * NON_OPENAI_SAFETY_FACTOR)  # slightly high, never wildly


def test_non_openai_chat_estimate_is_at_least_the_o200k_count():
    req = _chat(COOKBOOK_MESSAGES, tools=COOKBOOK_TOOLS)
    exact = count_prompt_tokens(req, "gpt-4o")
    estimate = count_prompt_tokens(req, "claude-sonnet-4-5")
    assert exact < estimate <= math.ceil(exact * NON_OPENAI_SAFETY_FACTOR)


def test_embedding_tokens():
    inputs = ["tiktoken is great!", "antidisestablishmentarianism"]
    assert count_embedding_tokens(inputs, "text-embedding-3-small") == 6 + 6  # cl100k ids above
    assert count_embedding_tokens(inputs, "openai/text-embedding-ada-002") == 12
    assert count_embedding_tokens(inputs, "gemini-embedding-001") == math.ceil(12 * NON_OPENAI_SAFETY_FACTOR)


# --- images ------------------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A real PNG (1-bit greyscale, all black) of the given size."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = (b"\x00" + b"\x00" * ((width + 7) // 8)) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _jpeg(width: int, height: int, metadata_bytes: int = 0) -> bytes:
    """A JPEG's header segments: SOI, APP0 (JFIF), optional APP1 padding, SOF0 (size), EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    padding = b""
    while metadata_bytes > 0:  # segments hold at most 65,533 bytes each
        size = min(metadata_bytes, 65_000)
        padding += b"\xff\xe1" + struct.pack(">H", size + 2) + b"\x00" * size
        metadata_bytes -= size
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + padding + sof0 + b"\xff\xd9"


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def _webp(chunk: bytes, body: bytes) -> bytes:
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def _webp_lossy(width: int, height: int) -> bytes:
    return _webp(b"VP8 ", b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8)


def _webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return _webp(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8)


def _webp_extended(width: int, height: int) -> bytes:
    return _webp(b"VP8X", b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def _image_tokens(model: str, image: dict) -> int:
    """Tokens one image adds to a user message, for ``model``."""
    text = {"type": "text", "text": "What is in this image?"}
    with_image = _chat([{"role": "user", "content": [text, {"type": "image_url", "image_url": image}]}])
    without = _chat([{"role": "user", "content": [text]}])
    return count_prompt_tokens(with_image, model) - count_prompt_tokens(without, model)


def _inline(data: bytes, media_type: str = "image/png", detail: str | None = None) -> dict:
    image = {"url": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}
    if detail:
        image["detail"] = detail
    return image


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # the vision guide's examples
        ((2048, 4096), "high", 1105),
        ((4096, 8192), "low", 85),
        ((1024, 1024), None, 765),  # auto is counted as high
        ((512, 512), "auto", 255),  # one tile
        ((513, 500), "high", 425),  # two tiles
    ],
)
def test_image_tokens_gpt_4o(size, detail, tokens):
    assert _image_tokens("gpt-4o", _inline(_png(*size), detail=detail)) == tokens


@pytest.mark.parametrize(
    "data",
    [_jpeg(2048, 4096), _jpeg(2048, 4096, metadata_bytes=120_000), _gif(2048, 4096), _webp_lossy(2048, 4096),
     _webp_lossless(2048, 4096), _webp_extended(2048, 4096)],
    ids=["jpeg", "jpeg-after-long-metadata", "gif", "webp-lossy", "webp-lossless", "webp-extended"],
)
def test_image_size_is_read_from_every_common_format(data):
    assert _image_tokens("gpt-4o", _inline(data, "image/x")) == 1105


def test_image_of_unknown_size_assumes_the_worst_case():
    # A URL: the size is unknown, so the most tiles an image can take after resizing (8).
    assert _image_tokens("gpt-4o", {"url": "https://example.com/cat.png"}) == 85 + 170 * 8
    assert _image_tokens("gpt-4o", {"url": "https://example.com/cat.png", "detail": "low"}) == 85
    assert _image_tokens("gpt-4o", _inline(b"not an image at all")) == 85 + 170 * 8


@pytest.mark.parametrize(
    ("model", "size", "tokens"),
    [
        ("gpt-4o-mini", (1024, 1024), 2833 + 4 * 5667),  # billed like gpt-4o's price, in more tokens
        ("o1", (1024, 1024), 75 + 4 * 150),
        ("gpt-5", (1024, 1024), 70 + 4 * 140),
        ("gpt-4.1", (1024, 1024), 765),
        ("gpt-4.1-mini", (1024, 1024), 1659),  # 32-px patches: 1024 × 1.62
        ("gpt-5-nano", (1024, 1024), math.ceil(1024 * 2.46)),
        ("o4-mini", (1800, 2400), math.ceil(1452 * 1.72)),  # the guide's example: 33 × 44 patches
        ("gpt-4.1-mini", (1800, 2400), math.ceil(1452 * 1.62)),
    ],
)
def test_image_tokens_per_model_family(model, size, tokens):
    assert _image_tokens(model, _inline(_png(*size))) == tokens


def test_patch_models_ignore_detail_and_cap_unknown_sizes():
    assert _image_tokens("gpt-4.1-mini", _inline(_png(1024, 1024), detail="low")) == 1659
    assert _image_tokens("gpt-4.1-mini", {"url": "https://example.com/cat.png"}) == math.ceil(1536 * 1.62)


def test_image_estimate_for_other_models():
    assert _image_tokens("claude-sonnet-4-5", _inline(_png(1024, 1024))) == math.ceil(1024 * 1024 / 750)
    assert _image_tokens("claude-sonnet-4-5", _inline(_png(4000, 3000))) == 1600
    assert _image_tokens("gemini-2.5-pro", {"url": "https://example.com/cat.png"}) == 1600


def test_image_given_as_inline_part():
    part = ImagePart(data=base64.b64encode(_png(2048, 4096)).decode(), media_type="image/png", detail="high")
    req = ChatRequest(model="m", messages=[Message(role="user", content=[part])])
    assert count_prompt_tokens(req, "gpt-4o") == 3 + (3 + 1) + 1105
    wrapped = ImagePart(data=base64.encodebytes(_png(2048, 4096)).decode(), media_type="image/png")  # 76 columns
    req = ChatRequest(model="m", messages=[Message(role="user", content=[wrapped])])
    assert count_prompt_tokens(req, "gpt-4o") == 3 + (3 + 1) + 1105


# --- reservations ------------------------------------------------------------------------------


def test_reserve_uses_max_tokens_times_choices():
    req = _chat(COOKBOOK_MESSAGES, max_tokens=100, n=3)
    assert reserve_tokens(req, "gpt-4o", default_max_tokens=4096) == (124, 300)


def test_reserve_reads_max_completion_tokens():
    req = _chat(COOKBOOK_MESSAGES, max_completion_tokens=250)
    assert reserve_tokens(req, "gpt-4", default_max_tokens=4096) == (129, 250)


def test_reserve_falls_back_to_the_default():
    assert reserve_tokens(_chat(COOKBOOK_MESSAGES), "gpt-4o", default_max_tokens=512) == (124, 512)
    assert reserve_tokens(_chat(COOKBOOK_MESSAGES, n=2), "gpt-4o", default_max_tokens=512) == (124, 1024)


def test_reserve_for_other_models_estimates_the_input_only():
    input_tokens, output_tokens = reserve_tokens(_chat(COOKBOOK_MESSAGES, max_tokens=64), "claude-sonnet-4-5", 512)
    assert input_tokens == math.ceil(124 * NON_OPENAI_SAFETY_FACTOR)
    assert output_tokens == 64  # max_tokens is a hard limit, not an estimate


def test_warm_up_loads_both_encodings():
    warm_up()
    assert count_text_tokens("tiktoken is great!", "gpt-4") == 6
    assert count_text_tokens("tiktoken is great!", "gpt-4o") == 6


def test_texts_counted_lately_are_remembered_within_a_bound():
    from sluice.policies import tokens

    text = "A conversation's history, resent with every turn. " * 40
    first = count_text_tokens(text, "gpt-4o")
    key = ("o200k_base", hash(text), len(text))
    assert tokens._recent_counts[key] == first  # remembered, by hash and length (the text is not kept)
    assert count_text_tokens(text, "gpt-4o") == first
    count_text_tokens(text, "gpt-4")
    assert ("cl100k_base", hash(text), len(text)) in tokens._recent_counts  # per encoding
    for i in range(tokens._RECENT_COUNTS + 10):  # bounded: the oldest go first
        count_text_tokens(f"text number {i}", "gpt-4o")
    assert len(tokens._recent_counts) <= tokens._RECENT_COUNTS and key not in tokens._recent_counts
