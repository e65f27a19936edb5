"""Street addresses, offline: patterns anchored on a house number, optionally helped by NER places.

Every number in the text that could be a house number is looked at from both sides:
- after it, an English street name and type ("10 Downing Street", "1668 Glyn St.", "500 W 5th St") or
  a street type written first ("25 Rue de Rivoli", "31 Rue Al Imam Al Bakri");
- before it, a street whose word carries its type ("Friedrichstraße 123", "Kiannonkatu 98",
  "Augsburger Strasse 36", "Váci utca 12.") or starts with one ("Via delle Coste 41",
  "ul. Narewska 94", "Πλατεία Συντάγματος 204");
- before it, a bare capitalised name ("Pagari 18"): an address only next to other parts of one
  (a unit, a town with its postal code) or right after an address cue ("my address is", "lives at").
P.O. boxes and US military mail (PSC / Unit … Box, APO / FPO / DPO) are found by their keywords.
A street found is then grown over its building number and unit (Apt, Suite, Unit, Flat, #), and the
place lines that follow: ", City, ST 12345", "London SW1A 2AA", "10117 Berlin", one line per part
in address blocks. Counts and titles are not streets ("the 3 Musketeers Way", "9 Supreme Court
justices", "Chapter 3 Main Street Blues", "Gate 23", "version 2 Way", "Route 66").

With NER places (`address_spans(text, places)`, which `pii.detect` passes when PERSON is asked for
too, so the text is parsed once): a bare name inside a facility is confirmed, a facility named like a
street without a number ("Berg Hills Street", score 0.5) is reported, and an address takes the town
and country the engine names after it. The engine costs ~200 ms per 8,000 characters, so ADDRESS
never runs it by itself.

Measured (bench/eval_pii.py, presidio-research synth v2, 598 ADDRESS spans, overlap scoring): designed
on rows with index % 3 != 0 (dev: precision 1.000, recall 0.971), then scored once on the rows held
out (index % 3 == 0: precision 0.980, recall 0.911; unchanged by the later fixes); all rows 0.994 /
0.953; with NER places 0.994 / 0.958. No finding in 1,286 prompts of the injection set, the 479
number-dense synthetic rows or 23 M characters of Python source; in 2.3 M characters of package
READMEs and licences only the four real addresses in them. Precision is above 0.95, so ADDRESS is
one of `pii.DEFAULT_TYPES`. Cost: ~0.2 ms per 8,000 characters of prose, ~1 ms when dense with
addresses or numbers.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

Span = tuple[int, int, float]  # start, end, score
Place = tuple[int, int, str]  # start, end and NER label (GPE, LOC or FAC) of a named place

_STRONG, _WEAK, _NAMED_STREET = 0.85, 0.6, 0.5

# ---------------------------------------------------------------- words

# Upper-case letters of the scripts read here (Latin, Greek, Cyrillic): Python's `re` has no \p{Lu}.
_UPPER = "".join(
    chr(code) for first, last in ((0x41, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF))
    for code in range(first, last + 1) if chr(code).isupper() and chr(code).isalpha()
)
_CAP = f"[{re.escape(_UPPER)}]"
_LETTERS = r"[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w])"  # O'Connell, Saint-Denis; "M78", "SW1A" are no names
# Unit words begin the next part of an address; they are never part of a street's name.
_UNIT_WORDS = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building)"
_NOT_UNIT = rf"(?!(?i:{_UNIT_WORDS})(?![^\W\d_]))"
_ELISION = r"(?:[dlDL]['’])?"  # Avenue d'Ouchy, Rue l'Abbé
_CAP_WORD = rf"{_NOT_UNIT}{_ELISION}(?={_CAP}){_LETTERS}\.?"  # Main, MAIN, St., Λεωφόρος
_ANY_WORD = rf"{_NOT_UNIT}{_LETTERS}\.?"  # in text without capitals
_ORDINAL = r"[0-9]{1,3}(?:st|nd|rd|th|ST|ND|RD|TH)(?![\w])"  # 5th Avenue

# House numbers: 10, 10A, 10-12, 10/2; not part of a longer token, a decimal or a percentage.
_NUMBER = r"[0-9]{1,6}(?:[A-Za-z](?![\w]))?(?:[-/][0-9]{1,4}[A-Za-z]?)?"
_NUMBER_END = r"(?![\w]|[.,:/][0-9]|[ ]?%)"
# The character before a house number is part of the match, not a lookbehind: a pattern that starts
# with a character class lets `re` skip ahead, one with a lookbehind tries every position.
_HOUSE_NUMBER_RE = re.compile(rf"[^\w.,:/#$€£%+-]({_NUMBER}){_NUMBER_END}")
_FIRST_HOUSE_NUMBER_RE = re.compile(rf"({_NUMBER}){_NUMBER_END}")  # at the very start of the text


def _house_numbers(text: str) -> Iterator[tuple[int, int]]:
    """12 · 12B · 12-14 · 12/3; not 12.5, 12%, $12, ID12 or a 7-digit number."""
    first = _FIRST_HOUSE_NUMBER_RE.match(text)
    if first:
        yield first.span(1)
    for number in _HOUSE_NUMBER_RE.finditer(text):
        yield number.span(1)

# English street types after the name: "10 Downing Street", "1668 Glyn St".
_SUFFIXES = (
    "Street", "Avenue", "Road", "Boulevard", "Lane", "Drive", "Court", "Way", "Place", "Terrace",
    "Parkway", "Square", "Circle", "Highway", "Crescent", "Close", "Grove", "Mews", "Row", "Alley",
    "Trail", "Expressway", "Freeway", "Turnpike", "Plaza",
)
_SHORT_SUFFIXES = (
    "St", "Ave", "Av", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Ter", "Terr", "Pkwy", "Sq", "Cir", "Hwy",
    "Cres", "Str", "Aly", "Trl", "Expy", "Fwy", "Tpke",
)
# Street types before the name: "Rue de Virton 38", "ul. Narewska 94", "31 Rue Al Imam Al Bakri".
_PREFIXES = (
    "Rue", "Rua", "Rúa", "Via", "Viale", "Vicolo", "Piazza", "Piazzale", "Piazzetta", "Corso", "Largo",
    "Strada", "Calle", "Avenida", "Avda.", "Av.", "Av", "Avenue", "Boulevard", "Bd", "Paseo", "Plaza",
    "Praça", "Travessa", "Travesía", "Camino", "Carrer", "Carretera", "Estrada", "Chemin", "Allée",
    "Impasse", "Quai", "Place", "Route", "Ul.", "Ulica", "Aleja", "C/", "Λεωφόρος", "Λ.", "Οδός",
    "Πλατεία", "Улица", "Ул.", "Проспект",
)
_PREFIX_FORMS = frozenset(_PREFIXES) | {p.upper() for p in _PREFIXES} | {"ul."}  # Polish "ul." is lower case
_PREFIX_FORMS_ANY_CASE = frozenset(p.lower() for p in _PREFIXES)
# Small words inside names: "Rue de la Gare", "Via delle Coste", "Jiřího z Poděbrad".
_CONNECTORS = frozenset(
    "de del della delle dei degli di da das do dos du des la le les el al e y i van von der den ten ter "
    "het z u v na nad pod an am im auf of the d' l'".split()
)
_CONNECTOR = rf"(?:{'|'.join(sorted(map(re.escape, _CONNECTORS), key=len, reverse=True))})(?![\w])"
# Street types that end the word before the number: "Friedhofstrasse 33", "Kiannonkatu 98",
# "Augsburger Strasse 36", "Populierenstraat 374", "Rákóczi út 13.".
_ENDINGS = (
    "strasse", "straße", "str.", "gasse", "allee", "platz", "damm", "ufer", "steig", "pfad", "straat",
    "laan", "dreef", "gracht", "kade", "plein", "steeg", "singel", "veien", "vegen", "vägen", "väg",
    "gade", "gata", "gatan", "gränd", "stræti", "straeti", "vegur", "braut", "stígur", "katu", "kuja",
    "polku", "kaari", "rinne", "tanhua", "utca", "útja", "körút", "ulica", "ulice", "cesta", "puiestee",
    "iela", "gatve", "sokak", "sokağı", "caddesi", "terrasse", "stræde", "plads", "torg",
)
_SHORT_ENDINGS = ("tie", "vej", "weg")  # glued to three letters or more: "Puruntie", "Schachterlweg"
# Lower-case words after a name, never glued to it: "Trenerys gate 232", "Kálmán Imre u. 12."
# ("Gate 23", "Committee 5" and "Processor 2" are something else).
_LOWER_TYPE_WORDS = frozenset({
    "u.", "gate", "tee", "wei", "sor", "köz", "kapu", "cd.", "sk.", "rkp.", "tér", "út", "põik", "tänav",
})
# English words with a street ending: "Brigade 3" is not Danish.
_NOT_STREET_WORDS = frozenset({
    "blockade", "brigade", "renegade", "auntie", "bertie", "christie", "necktie", "bowtie", "sweetie",
    "untie", "hogtie",
})

_UNIT = rf"(?:(?i:{_UNIT_WORDS})\.?[ ]?#?[ ]?|#[ ]?)[0-9]{{1,6}}[A-Za-z]?(?![\w])"  # Apt. 5, Suite 300, #12
_UNIT_RE = re.compile(_UNIT)
_UNIT_WORD_RE = re.compile(_UNIT_WORDS + r"\.?", re.IGNORECASE)


def _alternation(words: Sequence[str], lower: bool = False) -> str:
    forms = {word.lower() for word in words} if lower else set(words) | {word.upper() for word in words}
    return "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))


_SUFFIX = {
    any_case: rf"(?:{_alternation(_SUFFIXES, any_case)}|(?:{_alternation(_SHORT_SUFFIXES, any_case)})\.?)(?![\w-])"
    for any_case in (False, True)  # not "5 Star Drive-In" either
}

# ---------------------------------------------------------------- what a number is not

# Words before a number that make it a count or a position: "the 3 Musketeers Way", "we have 9
# Supreme Court justices", "Chapter 3 Main Street Blues".
_COUNT_BEFORE_RE = re.compile(
    r"(?i)(?<![\w])(?:the|a|an|these|those|all|my|our|your|his|her|their|its|some|any|every|top|first|"
    r"last|next|only|about|approximately|around|nearly|almost|over|under|than|another|have|has|had|won|"
    r"scored|bought|sold|chapter|section|page|step|figure|fig\.|table|part|episode|season|volume|vol\.|"
    r"level|version|release|round|game|day|week|year)[ \t]+$"
)
# A plural noun right after the street makes it a modifier: "20 Main Street projects".
_PLURAL_AFTER_RE = re.compile(
    r"[ ]+(?!(?:was|has|does|goes|is|its|this|his|hers|ours|yours|theirs|always|perhaps|towards|unless|"
    r"besides|whereas|yes|as|us|plus|thus|across|less|address|business)(?![\w]))[a-z]{2,}(?<![su])s(?![\w])"
)
# Names that make "Word 12" something else: a version, a chapter, a product, a date, a gate.
_NOT_BARE = frozenset(
    "version v release build chapter section page pages figure fig table step level part item issue volume "
    "vol episode season day days week weeks year years hour hours minute minutes room apt suite unit box "
    "no nr number windows iphone android python java ios macos ubuntu series model type class grade phase "
    "stage round game match top rule article act psalm the a an and or of in on at to for with by from is "
    "are was were be since until till under over about after before than only all just every each some "
    "these those this that january february march april may june july august september october november "
    "december jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday "
    "saturday sunday mon tue tues wed thu thur thurs fri sat sun copyright covid gpt llama claude gemini "
    "mistral qwen phi plus minus area route highway interstate exit gate terminal platform track bus "
    "flight train line team group squad sector block zone stand booth hall bay pier dock lot seat desk "
    "player ward bed lab tower wing".split()
)
# Text just before a bare street that says an address follows (searched in the 48 characters before).
_CUE_RE = re.compile(
    r"(?i)(?:\baddress(?:es)?\b|\baddr\b|\blive[sd]?\b|\bliving\b|\breside[sd]?\b|\blocated\b|\bmoved\b|"
    r"\bsen[dt]\b|\bship(?:ped)?\b|\bdeliver(?:ed)?\b|\bmail(?:ed)?\b|\breturn(?:ed)?(?:[ ]+\w+)?[ ]+to\b|"
    r"\bforward(?:ed)?\b|\bmeet\b|\bdrop(?:s|ped)?\b.{0,12}\boff\b|\bstation\b|\bstop\b|"
    r"\bcorner\b|\boffices?\b|\bheadquarter(?:s|ed)?\b|\bbilling\b|\bshipping\b|\bdelivery\b|"
    r"\btaxi\b|\bcab\b|\benter\b|\barrived\b|\bside of\b)"
    r"[^.!?\n]{0,40}$|\baddress\b[^\n]{0,12}:[ \t]*\n?[ \t]*$"
)
# After a bare street the clause ends, or says what it was ("Via Tasso 129 street").
_CLAUSE_END_RE = re.compile(r"[ \t]*(?:$|[\r\n.,;:!?)\]\"'”]|(?i:street|st\.?|road|avenue)(?![\w]))")

# ---------------------------------------------------------------- streets around a house number


def _number_first_patterns(any_case: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """What may follow a house number: English name + type, or a prefix type + name."""
    name = _ANY_WORD if any_case else _CAP_WORD
    name_or_ordinal = rf"(?:{_ORDINAL}|{name})"
    flags = re.IGNORECASE if any_case else 0
    suffixed = re.compile(  # 10 Downing Street · 03262 2437 Main St · 1819 St. John Street
        rf"(?:[ ]+{_NUMBER}{_NUMBER_END})?[ ]+(?:{name_or_ordinal}[ ]+){{0,3}}{name_or_ordinal}[ ]+{_SUFFIX[any_case]}",
        flags)
    prefixed = re.compile(  # 31 Rue Al Imam Al Bakri · 33 avenue de Provence · 9448 175 Iroon Polytechniou Avenue
        rf"[ ]+(?i:{_alternation(_PREFIXES, lower=True)})(?![\w])[ ]+(?:(?:{_CONNECTOR}|{name})[ ]+){{0,4}}{name}",
        flags)
    return suffixed, prefixed


_NUMBER_FIRST = {any_case: _number_first_patterns(any_case) for any_case in (False, True)}
_TOKEN_RE = re.compile(rf"C/|{_LETTERS}\.?")
_MAX_WORDS = 7


def _words_before(text: str, number_start: int) -> list[tuple[int, str]]:
    """Up to seven words right before a house number, on its clause, with their offsets."""
    space = number_start - 1
    if space < 1 or text[space] != " ":
        return []
    chunk_start = max(0, space - 100)
    chunk = text[chunk_start:space]
    cut = chunk.rfind("\n")
    words = chunk[cut + 1 :].split(" ")  # a word holding other breaks (",", ":") is no token: it ends the walk
    if cut < 0 and chunk_start > 0:
        words = words[1:]  # the first one may be cut
    found: list[tuple[int, str]] = []
    position = space
    for word in reversed(words):
        if len(found) == _MAX_WORDS or not _TOKEN_RE.fullmatch(word):
            break
        position -= len(word)
        found.append((position, word))
        position -= 1
    found.reverse()
    return found


def _is_name(word: str, any_case: bool) -> bool:
    if word.endswith(".") and len(word) > 5:
        return False  # a sentence's last word, not an abbreviation such as "St."
    if _UNIT_WORD_RE.fullmatch(word):
        return False
    if word[1:2] in ("'", "’") and word[0] in "dlDL":
        word = word[2:] or word  # d'Ouchy
    return any_case or word[0].isupper()


def _is_street_type(word: str, after_a_name: bool) -> bool:
    lowered = word.lower()
    if lowered in _NOT_STREET_WORDS:
        return False
    if word in _LOWER_TYPE_WORDS:
        return after_a_name
    if lowered.endswith(_ENDINGS):
        return after_a_name or lowered not in _ENDINGS  # "Strasse 5" alone is no street
    return any(lowered.endswith(ending) and len(lowered) >= len(ending) + 3 for ending in _SHORT_ENDINGS)


def _name_start(words: list[tuple[int, str]], any_case: bool, most: int) -> int | None:
    """Index of the first of the trailing words that form a name (at most ``most`` names)."""
    first, names = None, 0
    for index in range(len(words) - 1, -1, -1):
        word = words[index][1]
        if _is_name(word, any_case) and word.lower() not in _CONNECTORS:
            if names == most:
                break
            first, names = index, names + 1
        elif word not in _CONNECTORS or first is None:
            break
    return first


def _street_before(text: str, number_start: int, any_case: bool) -> tuple[int, str] | None:
    """The street named before a house number: (start, kind), kind "typed", "bare" or "bare upper"."""
    words = _words_before(text, number_start)
    if not words:
        return None
    head = _name_start(words[:-1], any_case, 2)
    if _is_street_type(words[-1][1], head is not None):  # Friedhofstrasse 33 · Augsburger Strasse 36
        return words[head if head is not None else -1][0], "typed"
    prefixes = _PREFIX_FORMS_ANY_CASE if any_case else _PREFIX_FORMS
    for index in range(len(words) - 2, -1, -1):  # Rue de Virton 38 · Via delle Coste 41
        word = words[index][1]
        if word in prefixes and _is_name(words[-1][1], any_case):
            return words[index][0], "typed"
        if not (_is_name(word, any_case) or word in _CONNECTORS):
            break
    head = _name_start(words, any_case, 3)
    if head is None:
        return None
    names = [word.rstrip(".").lower() for _, word in words[head:]]
    if any(name in _NOT_BARE for name in names):
        return None  # "Version 2", "Gate 23", "Since 1954"
    if all(word.isupper() for _, word in words[head:]):
        if max(map(len, names)) <= 4:
            return None  # product codes: "RAYX 2", "GPT 4"
        return words[head][0], "bare upper"  # "WHERE 1" in SQL; "PAGARI 18" on a label
    return words[head][0], "bare"


# ---------------------------------------------------------------- post boxes

# Both run on the lower-cased text: literal first letters let `re` skip ahead, (?i) would not.
_PO_BOX = (
    r"(?:p\.?[ ]?o\.?[ ]?box|pob|post[ ]?office[ ]+box|postbox|postbus|postboks|postfach|apartado|caixa[ ]postal|"
    r"boîte[ ]postale)[ ]?#?[ ]?[0-9]{1,7}(?![\w])"
)
# US military mail: "PSC 1437, Box 3833 / APO AA 66791", "Unit 5477 Box 8244 / DPO AP 15730",
# "USNS Bergman / FPO AP 93757". Found by the last line, then grown back over the first.
_MILITARY = r"[afd]po[ ]+a[aep][ ]+[0-9]{5}(?![\w])"
_MILITARY_FIRST_LINE = (
    r"(?<![\w])(?:(?:psc|cmr|unit)[ ]+[0-9]{3,5},?[ ]+box[ ]+[0-9]{3,5}|(?:usns|uss|uscgc|usnv)[ ]+"
    r"[^\W\d_][\w'’-]*)[ \t]*(?:,[ \t]*|\r?\n[ \t]*)?$"
)
_POST_BOX_RE = {
    flags: (re.compile(_PO_BOX, flags), re.compile(_MILITARY, flags), re.compile(_MILITARY_FIRST_LINE, flags))
    for flags in (0, re.IGNORECASE)
}


def _post_boxes(text: str) -> Iterator[tuple[int, int]]:
    lowered = text.lower()
    if not any(word in lowered for word in ("box", "postbus", "postboks", "apartado", "postfach", "caixa", "boîte", "po a")):
        return  # substring tests cost next to nothing; most prompts stop here
    same_offsets = len(lowered) == len(text)  # a few characters (İ) grow when lower-cased
    haystack = lowered if same_offsets else text
    po_box, military, first_line = _POST_BOX_RE[0 if same_offsets else re.IGNORECASE]
    for match in po_box.finditer(haystack):
        if match.start() == 0 or not text[match.start() - 1].isalnum():  # no lookbehind: it is slow
            yield match.span()
    for match in military.finditer(haystack):
        if match.start() and text[match.start() - 1].isalnum():
            continue
        head = first_line.search(haystack, max(0, match.start() - 40), match.start())
        yield (head.start() if head else match.start()), match.end()


# ---------------------------------------------------------------- the rest of an address

# A new line of the same block, perhaps after a blank line. Lines may start with e-mail quoting
# ("> ") or a bullet, also one whose encoding was lost on the way ("??? ").
_LINE_BREAK = r"[ \t]*(?:\r?\n[ \t]*){1,2}(?:(?:>|\?{1,3}|[•*·-])[ \t]*)?"
_SEPARATOR = rf"(?:[ \t]*,(?:{_LINE_BREAK}|[ \t]*)|{_LINE_BREAK}|[ \t]+)"
_POSTAL = (
    r"(?:[0-9]{4}-[0-9]{3}|[0-9]{2}-[0-9]{3}"  # PT, PL
    r"|[0-9]{5}(?:-[0-9]{4})?|[0-9]{3}[ ][0-9]{2}|[0-9]{4}(?:[ ]?[A-Z]{2}(?![\w]))?|[0-9]{6}"  # US, SE, NL…
    r"|[A-Z]{1,2}[0-9][A-Z0-9]?[ ][0-9][A-Z]{2}|[A-Z][0-9][A-Z][ ]?[0-9][A-Z][0-9]"  # UK, Canada
    r"|[A-Z]{1,2}-[0-9]{4,5})(?![\w])"  # D-10115
)
_STATE = r"[A-Z]{2,3}(?![\w])"
# Not the greeting, sign-off or label on the line after an address.
_NOT_PLACE = (
    r"(?!(?:Thanks|Thank|Regards|Best|Cheers|Sincerely|Yours|Hi|Hello|Dear|Kind|Please|Phone|Tel|Email|E-mail|"
    r"Mobile|Cell|Fax|Website|Name|Note|PS|The|Then|This|That|There|It|I|We|You|He|She|They|My|Our|Your|"
    r"His|Her|Their|And|But|So|If|When)(?![\w]))"
)
_PLACE_WORD = rf"{_NOT_PLACE}(?={_CAP}){_LETTERS}\.?"
_PLACE_WORDS = rf"{_PLACE_WORD}(?:[ ](?:{_CONNECTOR}[ ])?{_PLACE_WORD}){{0,4}}(?:[ ]\([^()\n]{{1,30}}\))?"
_PLACE_WORDS_ANY_CASE = rf"{_LETTERS}(?:[ ]{_LETTERS}){{0,3}}"
# One more piece after the street: a unit, a postal code, or a place name (with ", ST 12345").
_TAIL_STEP_RE = {
    any_case: re.compile(
        rf"(?P<separator>{_SEPARATOR})(?:(?P<unit>{_UNIT})|(?P<postal>{_POSTAL})"
        rf"|(?P<place>(?:{_CONNECTOR}[ ])?{_PLACE_WORDS_ANY_CASE if any_case else _PLACE_WORDS})"
        rf"(?:[ \t]*,?[ \t]*(?:\r?\n[ \t]*,?[ \t]*)?{_STATE})?(?:[ \t]*(?:\r?\n[ \t]*)?(?P<place_postal>{_POSTAL}))?)",
        re.IGNORECASE if any_case else 0)
    for any_case in (False, True)
}
_ENDS_LINE_RE = re.compile(r"[ \t]*(?:$|\r?\n|[,.;!?)])")
_CORNER_BEFORE_RE = re.compile(r"(?i)\bcorner of[ ]+$")
_CORNER_AND_RE = re.compile(
    rf"\.?(?:[ ]+{_SUFFIX[False]})?[ ]+and[ ]+(?:{_NUMBER}[ ]+)?(?:(?:{_CONNECTOR}|{_CAP_WORD})[ ]+){{0,3}}{_CAP_WORD}")
_BEFORE_RE = re.compile(rf"(?:^|(?<=[\s>]))(?:(?:{_UNIT}),?[ ]+)?(?:{_NUMBER}[ ]+)?$")  # Flat 3, 12 High St
_MAX_TAIL_STEPS = 8


def _extend(text: str, start: int, end: int, any_case: bool) -> tuple[int, int, set[str]]:
    """Grow a street over its building number and unit before, and units, places, postal code after.

    Returns the new bounds and the kinds of piece taken ("unit", "postal", "place", "place_postal").
    """
    parts: set[str] = set()
    before = _BEFORE_RE.search(text, max(0, start - 24), start)
    if before and before.start() < start:
        start = before.start()
        if _UNIT_RE.match(text, start):
            parts.add("unit")
    if _CORNER_BEFORE_RE.search(text, max(0, start - 12), start):
        corner = _CORNER_AND_RE.match(text, end)  # the corner of X and Y
        end = corner.end() if corner else end
    step_re = _TAIL_STEP_RE[any_case]
    if text.startswith(".", end) and text[end - 1].isdigit():
        after_dot = step_re.match(text, end + 1)  # "Kálmán Imre u. 12.": Hungarian numbers end with a dot
        separator = after_dot.group("separator") if after_dot else ""
        if after_dot and (after_dot.group("unit") or after_dot.group("postal") or "," in separator or "\n" in separator):
            end += 1  # but "PO Box 77. Typed by me" ends a sentence
    for _ in range(_MAX_TAIL_STEPS):
        step = step_re.match(text, end)
        if not step:
            break
        separator = step.group("separator")
        if "\n" in separator and not _fills_its_line(text, step.end("separator"), step.end()):
            break  # the next line is a sentence, not a line of the address
        if any_case and step.group("place") and not (
                ("," in separator or "\n" in separator) and _fills_its_line(text, step.end("separator"), step.end())):
            break  # without capitals, only a field or line of its own is a place: "…street, london"
        parts.update(kind for kind in ("unit", "postal", "place", "place_postal") if step.group(kind))
        end = step.end()
    return start, end, parts


def _fills_its_line(text: str, start: int, end: int) -> bool:
    """Whether the piece from ``start`` is all of its line (it may go on to a state or postal line)."""
    line_break = text.find("\n", start, end)
    return bool(_ENDS_LINE_RE.match(text, end if line_break < 0 else line_break))


def _weak_confirmed(text: str, start: int, ends: tuple[int, int], parts: set[str], cue_suffices: bool) -> bool:
    """A bare "Name 12" is an address next to other parts of one (a unit; a place with its postal
    code), or after an address cue ("lives at", "Address:") when the clause ends with it."""
    if "unit" in parts or "place_postal" in parts:
        return True
    if not cue_suffices or not _CUE_RE.search(text, max(0, start - 48), start):
        return False
    return any(_CLAUSE_END_RE.match(text, end) for end in ends)


# ---------------------------------------------------------------- named places from NER


def _inside_place(places: Sequence[Place], start: int, end: int) -> bool:
    """Inside a facility or location; not a town ("Paris 75001" is a town and its postal code)."""
    return any(p_start < end and start < p_end for p_start, p_end, label in places if label != "GPE")


# A street's name: its type word last ("Berg Hills Street", "Storgatan") or first ("Via Roma"),
# written as a name is ("the Atari ST" is a computer).
_NAMED_STREET_RE = re.compile(
    rf"(?:.*[ ])?(?:{'|'.join(map(re.escape, _SUFFIXES + _SHORT_SUFFIXES))})\.?"
    rf"|(?={_CAP})[^\W\d_]*(?:{_alternation(_ENDINGS, lower=True)})"
    rf"|(?:{'|'.join(map(re.escape, _PREFIXES))})[ ].+",
    re.DOTALL,
)


def _street_facilities(text: str, places: Sequence[Place]) -> Iterator[Span]:
    """Facilities and locations named like streets, with no house number: "Berg Hills Street"."""
    for start, end, label in places:
        if label in ("FAC", "LOC") and _NAMED_STREET_RE.fullmatch(text, start, end):
            yield start, end, _NAMED_STREET


_PLACE_GAP_RE = re.compile(r"[ \t]*,?[ \t]*(?:\r?\n[ \t]*,?[ \t]*)?")
_POSTAL_AFTER_RE = re.compile(rf"[ \t]*,?[ \t]*{_POSTAL}")


def _extend_over_places(text: str, end: int, places: Sequence[Place]) -> int:
    """Take the towns, regions and countries named right after an address (and a postal code)."""
    starts = {start: place_end for start, place_end, label in places if label in ("GPE", "LOC")}
    for _ in range(3):
        gap = _PLACE_GAP_RE.match(text, end)
        place_end = starts.get(gap.end()) if gap else None
        if place_end is None:
            break
        end = place_end
        postal = _POSTAL_AFTER_RE.match(text, end)
        end = postal.end() if postal else end
    return end


# ---------------------------------------------------------------- API


def address_spans(text: str, places: Sequence[Place] = ()) -> list[Span]:
    """Street-address spans in ``text``: (start, end, score), sorted, never overlapping.

    ``places`` are named places an NER engine found in the same text (optional): a bare
    "Name 12" inside a facility or location is confirmed, a facility named like a street
    ("Berg Hills Street") is an address, and an address takes the town or country after it.
    """
    any_case = text.islower()  # no capitals anywhere: case tells nothing about names
    spans: list[Span] = []
    for start, end in _post_boxes(text):
        spans.append((*_extend(text, start, end, any_case)[:2], _STRONG))
    for start, end in _house_numbers(text):
        after = _word_may_follow(text, end, any_case)
        if after or _street_may_precede(text, start, any_case):
            spans.extend(_streets_at(text, start, end, after, any_case, places))
    if places:
        spans.extend(_street_facilities(text, places))
        spans = [(start, _extend_over_places(text, end, places), score) for start, end, score in spans]
    return _union(text, spans)


def _streets_at(
    text: str, start: int, end: int, word_after: bool, any_case: bool, places: Sequence[Place]
) -> Iterator[Span]:
    """The streets the house number at ``start:end`` belongs to: after it ("10 Downing Street"),
    before it ("Rue de Virton 38"), or a bare name before it if the context confirms it ("Pagari 18")."""
    if word_after:
        for pattern in _NUMBER_FIRST[any_case]:
            street = pattern.match(text, end)
            if street and not _PLURAL_AFTER_RE.match(text, street.end()) and not _COUNT_BEFORE_RE.search(
                    text, max(0, start - 16), start):
                yield (*_extend(text, start, street.end(), any_case)[:2], _STRONG)
    before = _street_before(text, start, any_case) if _street_may_precede(text, start, any_case) else None
    if before is None or _PLURAL_AFTER_RE.match(text, end):
        return
    street_start, kind = before
    new_start, new_end, parts = _extend(text, street_start, end, any_case)
    if kind == "typed":
        yield new_start, new_end, _STRONG
    elif _weak_confirmed(text, new_start, (end, new_end), parts, cue_suffices=kind == "bare") or _inside_place(
            places, street_start, end):
        yield new_start, new_end, _WEAK


# Cheap tests first (`address_spans` runs them before `_streets_at`): most numbers in a prompt
# (amounts, dates, card groups, versions) have no capitalised word or street word next to them.


def _word_may_follow(text: str, end: int, any_case: bool) -> bool:
    if text[end : end + 1] != " ":
        return False
    char = text[end + 1 : end + 2]
    if char.isdigit():  # "03262 2437 Main St": a capitalised word after the second number
        after = end + 2
        while text[after : after + 1].isdigit():
            after += 1
        char = text[after + 1 : after + 2] if text[after : after + 1] == " " else ""
        return char.isupper() or (any_case and char.isalpha())
    if char.isupper() or (any_case and char.isalpha()):
        return True
    return char.isalpha() and text[end + 1 : end + 12].split(" ", 1)[0] in _PREFIX_FORMS_ANY_CASE  # 33 avenue de…


def _street_may_precede(text: str, start: int, any_case: bool) -> bool:
    if start < 2 or text[start - 1] != " " or not (text[start - 2].isalpha() or text[start - 2] == "."):
        return False
    window = max(0, start - 40)
    word = text[max(text.rfind(" ", window, start - 1), text.rfind("\n", window, start - 1)) + 1 : start - 1]
    if any_case or word[:1].isupper() or word in _LOWER_TYPE_WORDS or word[1:2] in ("'", "’"):
        return True
    return word.lower().endswith(_ENDINGS + _SHORT_ENDINGS)


def _union(text: str, spans: Sequence[Span]) -> list[Span]:
    merged: list[list] = []
    for start, end, score in sorted(spans):
        while end > start and text[end - 1] in " \t\r\n,":
            end -= 1
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = max(merged[-1][2], score)
        else:
            merged.append([start, end, score])
    return [(start, _trim_full_stop(text, start, end), score) for start, end, score in merged]


def _trim_full_stop(text: str, start: int, end: int) -> int:
    """Keep the dot of "St." and "u.", drop a full stop after "Street" or "12"."""
    if end - start > 1 and text[end - 1] == ".":
        word = text[start : end - 1].rsplit(None, 1)[-1]
        if len(word) > 3 or word.isdigit():
            return end - 1
    return end
