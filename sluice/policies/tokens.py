"""Offline token counts for limit reservations: how many tokens a request will use, before the call.

A tokens-per-minute limit is charged *before* the call (the prompt's tokens plus what the
reply may use) and settled afterwards to the usage the provider reports, so these counts
only have to be right enough for the reservation; they should err slightly high, never wildly.

* **OpenAI models** are counted exactly with their own encoding (``o200k_base`` or
  ``cl100k_base``, from the ``bpe-openai`` package: tiktoken-compatible, the vocabularies ship
  in the wheel, no network) and OpenAI's documented chat framing (the cookbook "How to count
  tokens with tiktoken"): 3 tokens per message, the role, +1 for a ``name``, 3 to prime the
  reply. Tool definitions follow the cookbook's documented approximation; images follow
  OpenAI's per-model image rules (tiles or patches, see ``_image_tokens``).
* **Every other model** (Claude, Gemini, Llama, Mistral…, and Azure deployment names, which do
  not say which model they serve) is *estimated*: counted the same way with ``o200k_base``,
  then multiplied by ``NON_OPENAI_SAFETY_FACTOR``.

Encodings are loaded lazily, once per process (``warm_up`` loads them ahead of the first
request: about 0.5 s and ~175 MB for both, mostly the Rust tokenizer's tables).
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterator, Union

from sluice.schema import ChatRequest, ImagePart, TextPart, Tool

if TYPE_CHECKING:
    from bpe_openai import Encoding

O200K = "o200k_base"
CL100K = "cl100k_base"

# Non-OpenAI tokenizers are not available offline, so their counts are o200k counts scaled up.
# 1.3 because Claude's tokenizer (the largest of the common ones) yields about 16% more tokens
# than GPT-4o's on English prose, ~21% on maths and ~30% on source code (published side-by-side
# counts of Claude 3.5 Sonnet and GPT-4o); Gemini's 256k SentencePiece vocabulary and Llama 3 /
# Mistral's 128k BPE vocabularies yield about as many as o200k or fewer. So the factor covers
# the worst common case and over-reserves the others by at most ~30%, which settling returns.
NON_OPENAI_SAFETY_FACTOR = 1.3

# OpenAI's chat framing (cookbook): <|start|>{role}<|message|>{content}<|end|> costs 3 tokens
# besides the role and content; a name costs its tokens plus 1; every reply is primed with
# <|start|>assistant<|message|>, 3 more. The same for gpt-3.5-turbo-0125, gpt-4 and gpt-4o.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
# An assistant message's tool call is rendered as a recipient ("functions.<name>") and a JSON
# body; OpenAI does not document its framing, so this per-call allowance is an approximation.
_TOKENS_PER_TOOL_CALL = 8

_O200K_MODELS = re.compile(r"(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o[134](?:-|$))")
_CL100K_MODELS = re.compile(r"(?:gpt-4(?:-|$)|gpt-3\.5|gpt-35|text-embedding-3-|text-embedding-ada-002$)")


def _base_model_name(model: str) -> str:
    """``openai/gpt-4o`` → ``gpt-4o``; a fine-tune ``ft:gpt-4o-mini-2024-07-18:org::id`` → its base."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name


def encoding_name_for(model: str | None) -> str | None:
    """The tiktoken encoding an OpenAI model uses, or None when the model is not a known OpenAI one.

    Provider prefixes are ignored (``openai/gpt-4o``, ``azure/gpt-4o``); an Azure deployment
    name says nothing about its model, so it gives None like any non-OpenAI model.
    """
    if not model:
        return None
    name = _base_model_name(model)
    if _O200K_MODELS.match(name):
        return O200K
    if _CL100K_MODELS.match(name):
        return CL100K
    return None


# --- encodings: loaded once, lazily --------------------------------------------------------

_encodings: dict[str, "Encoding"] = {}
_load_lock = threading.Lock()


def _encoding(name: str) -> "Encoding":
    encoding = _encodings.get(name)
    if encoding is None:
        with _load_lock:  # two threads (or a thread and the loop) must not both pay the load
            encoding = _encodings.get(name)
            if encoding is None:
                # Imported here, not at module load: the import alone costs ~0.4 s and ~70 MB,
                # which processes that never count tokens (the CLI) should not pay.
                import bpe_openai

                encoding = bpe_openai.get_encoding(name)
                _encodings[name] = encoding
    return encoding


def encoding_ready(model: str | None) -> bool:
    """Whether counting for ``model`` would not have to load an encoding first."""
    return (encoding_name_for(model) or O200K) in _encodings


def warm_up_for(model: str | None) -> None:
    """Load the one encoding ``model`` needs (blocking; run it in a thread from async code)."""
    _encoding(encoding_name_for(model) or O200K)


def warm_up(encodings: tuple[str, ...] = (O200K, CL100K)) -> None:
    """Load the encodings now (blocking, ~0.5 s) so the first request does not pay for it."""
    for name in encodings:
        _encoding(name)


# bpe-openai refuses a text of 1,000,000 characters or more, or one of more than 200,000
# tokens, so longer texts are counted in pieces. A piece of 40,000 characters is at most
# 160,000 tokens (a character is at most 4 UTF-8 bytes, each byte at worst one token).
_PIECE_CHARS = 40_000
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _cut_position(text: str, low: int, high: int) -> int:
    """A position in (low, high] where a piece can end without changing the total count.

    Both encodings' pre-tokenizers end a token at a letter followed by a space (no pattern
    matches a letter and then whitespace), and BPE never merges across pre-tokens, so cutting
    just before such a space keeps the sum of the pieces' counts equal to the whole's. Without
    one (a 20,000-character word, text without spaces) the cut is blind and the count may be off
    by a token or two at that seam, which a reservation tolerates.
    """
    position = text.rfind(" ", low, high)
    while position > low:
        if text[position - 1] in _ASCII_LETTERS:
            return position
        position = text.rfind(" ", low, position)
    return high


def _pieces(text: str) -> Iterator[str]:
    start = 0
    while len(text) - start > _PIECE_CHARS:
        cut = _cut_position(text, start + _PIECE_CHARS // 2, start + _PIECE_CHARS)
        yield text[start:cut]
        start = cut
    yield text[start:]


# Counts of texts seen lately: a chat client resends the conversation so far and its system
# prompt with every turn, so most of a prompt was counted before. Keyed by the text's hash and
# length (Python's string hash is seeded per process), so no text is kept alive; a collision
# could only misjudge a reservation, which settling corrects.
_recent_counts: dict[tuple[str, int, int], int] = {}
_RECENT_COUNTS = 4096


def _count(encoding_name: str, text: str) -> int:
    """Exact token count of ``text`` in the encoding (no special tokens: user text is text)."""
    if not text:
        return 0
    key = (encoding_name, hash(text), len(text))
    tokens = _recent_counts.get(key)
    if tokens is not None:
        return tokens
    encoding = _encoding(encoding_name)
    if len(text) <= _PIECE_CHARS:
        tokens = len(encoding.encode_ordinary(text))
    else:
        tokens = sum(len(encoding.encode_ordinary(piece)) for piece in _pieces(text))
    if len(_recent_counts) >= _RECENT_COUNTS:
        _recent_counts.pop(next(iter(_recent_counts)))  # the oldest entry
    _recent_counts[key] = tokens
    return tokens


# --- per-model counting rules --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tiles:
    """Image cost in 512-px tiles: ``base`` + ``per_tile`` × tiles (detail low: ``base`` only)."""

    base: int
    per_tile: int


@dataclass(frozen=True, slots=True)
class _Patches:
    """Image cost in 32-px patches (at most 1536) × ``multiplier``; ``detail`` is ignored."""

    multiplier: float


_ImageRule = Union[_Tiles, _Patches, None]  # None: not an OpenAI model, estimated

# OpenAI's vision guide, per model family: the first entry whose name is the model's, or a
# prefix of it followed by "-" (a snapshot or variant), applies. Every other OpenAI model
# (gpt-4o, gpt-4.1, gpt-4.5, gpt-4-turbo…) costs 85 + 170 per tile.
_IMAGE_RULES: tuple[tuple[str, _Tiles | _Patches], ...] = (
    ("gpt-4.1-mini", _Patches(1.62)),
    ("gpt-4.1-nano", _Patches(2.46)),
    ("gpt-5-mini", _Patches(1.62)),
    ("gpt-5-nano", _Patches(2.46)),
    ("o4-mini", _Patches(1.72)),
    ("gpt-4o-mini", _Tiles(2833, 5667)),
    ("o1", _Tiles(75, 150)),
    ("o3", _Tiles(75, 150)),
    ("gpt-5", _Tiles(70, 140)),  # gpt-5, its snapshots and gpt-5-chat; not gpt-5.x (85/170)
)
_DEFAULT_TILES = _Tiles(85, 170)


@dataclass(frozen=True, slots=True)
class _Profile:
    encoding: str
    exact: bool  # False: an estimate, scaled by NON_OPENAI_SAFETY_FACTOR
    function_start: int  # cookbook's per-function tokens: 7 on o200k models, 10 on cl100k ones
    image: _ImageRule


def _image_rule(name: str) -> _Tiles | _Patches:
    for prefix, rule in _IMAGE_RULES:
        if name == prefix or name.startswith(prefix + "-"):
            return rule
    return _DEFAULT_TILES


@lru_cache(maxsize=1024)
def _profile(model: str | None) -> _Profile:
    encoding = encoding_name_for(model)
    if encoding is None:
        return _Profile(O200K, False, 7, None)
    assert model is not None
    return _Profile(encoding, True, 7 if encoding == O200K else 10, _image_rule(_base_model_name(model)))


def _scaled(tokens: int, profile: _Profile) -> int:
    return tokens if profile.exact else math.ceil(tokens * NON_OPENAI_SAFETY_FACTOR)


# --- public counts -------------------------------------------------------------------------


def count_text_tokens(text: str, model: str | None) -> int:
    """Tokens of a bare text: exact for OpenAI models, the scaled o200k estimate for others."""
    profile = _profile(model)
    return _scaled(_count(profile.encoding, text), profile)


def count_embedding_tokens(inputs: list[str], model: str | None) -> int:
    """Tokens of an embeddings call: the inputs' tokens, no framing (text-embedding-3-*, ada-002)."""
    profile = _profile(model)
    return _scaled(sum(_count(profile.encoding, text) for text in inputs), profile)


def count_prompt_tokens(req: ChatRequest, model: str | None) -> int:
    """The prompt tokens ``req`` will be charged for by ``model``.

    OpenAI models: messages are exact (OpenAI's documented framing); tool definitions follow
    the cookbook's approximation (exact for flat parameter schemas; nested schemas add the
    tokens of their JSON, erring high); a ``json_schema`` response format adds its schema's
    JSON tokens; an assistant's tool calls add name, arguments and a small allowance.

    Images, per OpenAI's vision rules for the model: tiles (``detail: low`` costs the base,
    85 for gpt-4o; high or auto: fit in 2048×2048, shortest side down to 768, then base + per
    tile for each 512-px tile: 170 for gpt-4o) or 32-px patches × a multiplier (gpt-4.1-mini/nano,
    gpt-5-mini/nano, o4-mini). The size is read from inline (base64) PNG, JPEG, GIF and WebP
    data. **When the size is unknown** (an image URL, or unreadable data) the worst case is
    assumed: 8 tiles (the most an image can take after the resize; 1445 tokens on gpt-4o,
    against 765 for a typical 1024×1024) or 1536 patches. Over-reserving is returned by settling.

    Other models: the same count made with o200k_base, × ``NON_OPENAI_SAFETY_FACTOR``;
    images are estimated with Claude's rule (width × height / 750, at most 1600 tokens; 1600
    when the size is unknown), the largest per-image cost among common providers for images up
    to ~1500 px (Gemini charges 258 per 768-px tile).
    """
    profile = _profile(model)
    encoding = profile.encoding
    text_tokens = _REPLY_PRIMING
    image_tokens = 0
    for message in req.messages:  # every limited call counts its prompt: one pass, no call per message
        key = (encoding, message.role)
        role = _role_tokens.get(key)
        if role is None:
            role = _role_tokens[key] = _count(encoding, message.role)
        text_tokens += _TOKENS_PER_MESSAGE + role
        for part in message.content:
            if type(part) is TextPart:
                text_tokens += _count(encoding, part.text)
            else:  # images are counted apart, since they are not scaled
                image_tokens += _image_tokens(part, profile.image)  # type: ignore[arg-type]
        if message.name:
            text_tokens += _count(encoding, message.name) + _TOKENS_PER_NAME
        for call in message.tool_calls or ():
            text_tokens += _count(encoding, call.name) + _count(encoding, call.arguments) + _TOKENS_PER_TOOL_CALL
    if req.tools:
        text_tokens += _tools_tokens(req.tools, profile)
    response_format = req.response_format
    if response_format is not None and response_format.schema:
        text_tokens += _count(profile.encoding, (response_format.name or "") + _compact_json(response_format.schema))
    return _scaled(text_tokens, profile) + image_tokens


def reserve_tokens(req: ChatRequest, model: str | None, default_max_tokens: int) -> tuple[int, int]:
    """What to reserve before the call: (input tokens, output tokens).

    Output is the request's ``max_tokens`` (an OpenAI client's ``max_completion_tokens`` lands
    there too), else ``default_max_tokens``, times the ``n`` choices asked for: each choice may
    use the whole budget. The prompt is billed once whatever ``n``.
    """
    choices = max(1, req.n or 1)
    per_choice = req.max_tokens if req.max_tokens is not None else default_max_tokens
    return count_prompt_tokens(req, model), max(0, per_choice) * choices


# --- messages and tools --------------------------------------------------------------------

_role_tokens: dict[tuple[str, str], int] = {}


# The cookbook's "Counting tokens for chat completions with tool calls" constants: per property
# 3, 3 more when a function has properties, an enum costs -3 plus 3 per item, and 12 to close
# the list of functions. Verified there against the API (gpt-4o: 101 tokens, gpt-4: 105).
_PROPERTIES_START = 3
_TOKENS_PER_PROPERTY = 3
_ENUM_START = -3
_TOKENS_PER_ENUM_ITEM = 3
_FUNCTIONS_END = 12
# Schema keys the cookbook's formula prices; any other key (items, properties of a nested
# object, anyOf, format, default…) adds the tokens of its JSON: more than OpenAI's compact
# rendering of it, so the count errs high.
_PRICED_PROPERTY_KEYS = frozenset({"type", "description", "enum"})
_PRICED_SCHEMA_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _without_final_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _tools_tokens(tools: list[Tool], profile: _Profile) -> int:
    encoding = profile.encoding
    tokens = _FUNCTIONS_END
    for tool in tools:
        tokens += profile.function_start
        tokens += _count(encoding, f"{tool.name}:{_without_final_period(tool.description or '')}")
        schema = tool.parameters or {}
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            tokens += _PROPERTIES_START
            for key, spec in properties.items():
                tokens += _property_tokens(str(key), spec, encoding)
        extra = {k: v for k, v in schema.items() if k not in _PRICED_SCHEMA_KEYS}
        if extra:
            tokens += _count(encoding, _compact_json(extra))
    return tokens


def _property_tokens(key: str, spec: Any, encoding: str) -> int:
    if not isinstance(spec, dict):
        return _TOKENS_PER_PROPERTY + _count(encoding, f"{key}:{_compact_json(spec)}")
    tokens = _TOKENS_PER_PROPERTY
    enum = spec.get("enum")
    if isinstance(enum, list):
        tokens += _ENUM_START
        for item in enum:
            tokens += _TOKENS_PER_ENUM_ITEM + _count(encoding, item if isinstance(item, str) else _compact_json(item))
    kind = spec.get("type", "")
    kind = "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)
    description = _without_final_period(str(spec.get("description") or ""))
    tokens += _count(encoding, f"{key}:{kind}:{description}")
    extra = {k: v for k, v in spec.items() if k not in _PRICED_PROPERTY_KEYS}
    if extra:
        tokens += _count(encoding, _compact_json(extra))
    return tokens


# --- images --------------------------------------------------------------------------------

_MAX_TILES = 8  # after fitting 2048×2048 and a 768-px shortest side: at most 4 × 2 tiles
_MAX_PATCHES = 1536
_ESTIMATED_IMAGE_CAP = 1600  # Claude resizes larger images down to about this many tokens
_EPSILON = 1e-9  # keeps 1536.0000000002 / 512 from counting a 4th tile


def _image_tokens(part: ImagePart, rule: _ImageRule) -> int:
    size = _image_size(part)
    if isinstance(rule, _Patches):
        patches = _MAX_PATCHES if size is None else _patch_count(*size)
        return math.ceil(patches * rule.multiplier)
    if isinstance(rule, _Tiles):
        if part.detail == "low":
            return rule.base
        tiles = _MAX_TILES if size is None else _tile_count(*size)
        return rule.base + rule.per_tile * tiles
    if size is None:
        return _ESTIMATED_IMAGE_CAP
    width, height = size
    return min(_ESTIMATED_IMAGE_CAP, math.ceil(width * height / 750))


def _tile_count(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:  # first fit within 2048 × 2048
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:  # then bring the shortest side down to 768 (never up)
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512 - _EPSILON) * math.ceil(h / 512 - _EPSILON)


def _patch_count(width: int, height: int) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches <= _MAX_PATCHES:
        return patches
    # Too many: shrink to about 1536 patches' area, then a little more so that whole patches
    # along the tighter side fit (OpenAI's documented procedure; 1800×2400 → 33 × 44 = 1452).
    shrink = math.sqrt(32 * 32 * _MAX_PATCHES / (width * height))
    w, h = width * shrink / 32, height * shrink / 32  # in patches
    fit = min(math.floor(w) / w, math.floor(h) / h)
    return min(_MAX_PATCHES, math.ceil(w * fit - _EPSILON) * math.ceil(h * fit - _EPSILON))


def _image_size(part: ImagePart) -> tuple[int, int] | None:
    """(width, height) of an inline image, or None when it is a URL or not a format read here."""
    data = part.data
    if data is None and part.url is not None and part.url.startswith("data:"):
        data = part.url.partition(",")[2]
    if not data:
        return None
    head = _decode_base64(data[:_HEAD_CHARS])
    size = _header_size(head)
    if size is None and head.startswith(b"\xff\xd8") and len(data) > _HEAD_CHARS:
        # A JPEG's size follows its metadata segments, which may be longer than the head.
        size = _jpeg_size(_decode_base64(data))
    return size


_HEAD_CHARS = 65_536  # base64 characters decoded first: 48 KiB, enough for most JPEG headers


def _decode_base64(text: str) -> bytes:
    if "\n" in text:  # MIME-style base64 wrapped at 76 columns
        text = "".join(text.split())
    usable = len(text) - len(text) % 4
    try:
        return base64.b64decode(text[:usable])
    except ValueError:
        return b""


def _header_size(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:  # extended: 24-bit canvas width-1, height-1
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:  # lossless: 14-bit fields
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":  # lossy
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


# Start-of-frame markers carry the size; C4 (Huffman tables), C8 and CC (arithmetic coding) don't.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker in _JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None
