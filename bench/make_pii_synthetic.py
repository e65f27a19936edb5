"""Generate tests/data/pii_synthetic.jsonl: labelled structured identifiers and hard negatives.

The public PII set (presidio-research) has few structured identifiers (16 SSNs, 21 IBANs, 14 IPs),
so this script makes more, valid by construction (Luhn-valid cards of several networks, mod-97
IBANs of several countries, SSNs outside the SSA's never-issued ranges, phones in many countries'
formats, IPv4/IPv6, API keys), plus rows that must produce nothing: broken checksums, never-issued
SSNs, dates, times, order and invoice numbers, version strings, UUIDs, hashes, ISBNs, prices.

Format (as the shared datasets): {"text": str, "spans": [{"start", "end", "type"}]}. Fixed seed,
so the committed file is reproducible: `python bench/make_pii_synthetic.py`.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Callable

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_synthetic.jsonl"
SEED = 20261126

Row = dict
Piece = "str | tuple[str, str]"  # plain text, or (value, TYPE)


def build_row(*pieces: "str | tuple[str, str]") -> Row:
    """Concatenate pieces; (value, TYPE) pieces become labelled spans."""
    text, spans = "", []
    for piece in pieces:
        if isinstance(piece, tuple):
            value, kind = piece
            spans.append({"start": len(text), "end": len(text) + len(value), "type": kind})
            text += value
        else:
            text += piece
    return {"text": text, "spans": spans}


# ---------------------------------------------------------------- cards


def luhn_check_digit(partial: str) -> str:
    total = 0
    for position, char in enumerate(reversed(partial)):
        value = int(char)
        if position % 2 == 0:  # these will sit at odd positions once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


CARD_BRANDS = [  # (name, prefixes, length)
    ("visa", ["4"], 16), ("visa13", ["4"], 13), ("visa19", ["4"], 19),
    ("mastercard", ["51", "52", "53", "54", "55"], 16), ("mastercard2", ["2221", "2500", "2720"], 16),
    ("amex", ["34", "37"], 15), ("discover", ["6011", "65", "644"], 16), ("jcb", ["3528", "3589"], 16),
    ("diners", ["300", "305", "36", "38"], 14), ("maestro", ["5018", "6304", "6759"], 12),
    ("unionpay", ["62"], 16), ("mir", ["2200", "2204"], 16),
]


def card_number(rng: random.Random, prefix: str, length: int, valid: bool = True) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def format_card(rng: random.Random, digits: str) -> str:
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return digits
    separator = " " if style == "space" else "-"
    if len(digits) == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    elif len(digits) == 14:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return separator.join(groups)


# ---------------------------------------------------------------- IBANs

IBAN_BBANS = {  # country: (total length, BBAN alphabet per position: 'n' digit, 'a' letter, 'c' either)
    "DE": (22, "n" * 18), "GB": (22, "aaaa" + "n" * 14), "FR": (27, "n" * 10 + "c" * 11 + "nn"),
    "ES": (24, "n" * 20), "IT": (27, "a" + "n" * 10 + "c" * 12), "NL": (18, "aaaa" + "n" * 10),
    "BE": (16, "n" * 12), "CH": (21, "n" * 5 + "c" * 12), "NO": (15, "n" * 11),
    "PL": (28, "n" * 24), "SE": (24, "n" * 20), "AT": (20, "n" * 16), "IE": (22, "aaaa" + "n" * 14),
    "PT": (25, "n" * 21), "DK": (18, "n" * 14), "FI": (18, "n" * 14), "SA": (24, "nn" + "c" * 18),
    "BR": (29, "n" * 23 + "ac"), "TR": (26, "n" * 5 + "0" + "c" * 16),
}


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    remainder = int("".join(str(int(char, 36)) for char in rearranged)) % 97
    return f"{98 - remainder:02d}"


def iban(rng: random.Random, country: str, valid: bool = True) -> str:
    _, shape = IBAN_BBANS[country]
    alphabets = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits,
                 "0": "0"}
    bban = "".join(rng.choice(alphabets[kind]) for kind in shape)
    check = iban_check_digits(country, bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 50)) % 97 + 2:02d}"
        if check == iban_check_digits(country, bban):
            check = f"{(int(check) + 1) % 97 + 2:02d}"
    return country + check + bban


def format_iban(rng: random.Random, compact: str) -> str:
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


# ---------------------------------------------------------------- SSNs, IPs


def ssn(rng: random.Random) -> tuple[str, str, str]:
    while True:
        area = f"{rng.randint(1, 899):03d}"
        if area != "666":
            return area, f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def invalid_ssn(rng: random.Random) -> str:
    area, group, serial = ssn(rng)
    broken = rng.choice(["area0", "area666", "area9", "group", "serial"])
    area = {"area0": "000", "area666": "666", "area9": f"9{rng.randint(0, 99):02d}"}.get(broken, area)
    group = "00" if broken == "group" else group
    serial = "0000" if broken == "serial" else serial
    return f"{area}-{group}-{serial}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    style = rng.choice(["full", "compressed", "mapped"])
    if style == "compressed":
        return ":".join(groups[:3]) + "::" + ":".join(groups[6:])
    if style == "mapped":
        return "::ffff:" + ipv4(rng)
    return ":".join(groups)


# ---------------------------------------------------------------- phones


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def nonzero(rng: random.Random) -> str:
    return str(rng.randint(2, 9))


PHONE_FORMATS: list[Callable[[random.Random], str]] = [
    lambda r: f"({nonzero(r)}{digits(r, 2)}) {nonzero(r)}{digits(r, 2)}-{digits(r, 4)}",  # US
    lambda r: f"{nonzero(r)}{digits(r, 2)}-{nonzero(r)}{digits(r, 2)}-{digits(r, 4)}",
    lambda r: f"{nonzero(r)}{digits(r, 2)}.{nonzero(r)}{digits(r, 2)}.{digits(r, 4)}",
    lambda r: f"+1 {nonzero(r)}{digits(r, 2)} {nonzero(r)}{digits(r, 2)} {digits(r, 4)}",
    lambda r: f"1-800-{digits(r, 3)}-{digits(r, 4)}",
    lambda r: f"+44 20 {digits(r, 4)} {digits(r, 4)}",  # UK
    lambda r: f"07{digits(r, 3)} {digits(r, 6)}",
    lambda r: f"+44 7{digits(r, 3)} {digits(r, 6)}",
    lambda r: f"+49 30 {digits(r, 8)}",  # Germany
    lambda r: f"030 {digits(r, 7)}",
    lambda r: f"+49 151 {digits(r, 4)} {digits(r, 4)}",
    lambda r: f"01 {digits(r, 2)} {digits(r, 2)} {digits(r, 2)} {digits(r, 2)}",  # France
    lambda r: f"+33 6 {digits(r, 2)} {digits(r, 2)} {digits(r, 2)} {digits(r, 2)}",
    lambda r: f"06.{digits(r, 2)}.{digits(r, 2)}.{digits(r, 2)}.{digits(r, 2)}",
    lambda r: f"+91 98{digits(r, 3)} {digits(r, 5)}",  # India
    lambda r: f"+81 3-{digits(r, 4)}-{digits(r, 4)}",  # Japan
    lambda r: f"03-{digits(r, 4)}-{digits(r, 4)}",
    lambda r: f"+55 11 9{digits(r, 4)}-{digits(r, 4)}",  # Brazil
    lambda r: f"+61 2 {digits(r, 4)} {digits(r, 4)}",  # Australia
    lambda r: f"(02) {digits(r, 4)} {digits(r, 4)}",
    lambda r: f"+34 6{digits(r, 2)} {digits(r, 3)} {digits(r, 3)}",  # Spain
    lambda r: f"+39 06 {digits(r, 4)} {digits(r, 4)}",  # Italy
    lambda r: f"+86 138 {digits(r, 4)} {digits(r, 4)}",  # China
    lambda r: f"+31 20 {digits(r, 3)} {digits(r, 4)}",  # Netherlands
    lambda r: f"+52 55 {digits(r, 4)} {digits(r, 4)}",  # Mexico
    lambda r: f"+27 82 {digits(r, 3)} {digits(r, 4)}",  # South Africa
    lambda r: f"+353 1 {digits(r, 3)} {digits(r, 4)}",  # Ireland
    lambda r: f"+{digits(r, 0)}4670{digits(r, 7)}",  # E.164 without spaces (Sweden)
]
PHONE_CONTEXTS = [
    ("Call me at ", " tomorrow."), ("My phone number is ", "."), ("Mobile: ", ""), ("Tel. ", " (office)"),
    ("You can reach our support line on ", " any weekday."), ("", " is my cell."), ("Fax ", ""),
    ("Please text ", " when you land."), ("Contact: Jane, ", ", jane's desk"),
]
WEAK_PHONES = [  # only phones because the sentence says so
    ("Phone: ", lambda r: f"{nonzero(r)}{digits(r, 2)} {digits(r, 4)}"),
    ("call me on ", lambda r: f"{nonzero(r)}{digits(r, 9)}"),
    ("Mobile: ", lambda r: f"{digits(r, 2)} {digits(r, 3)} {digits(r, 3)}"),
]


# ---------------------------------------------------------------- secrets


def token(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


ALNUM = string.ascii_letters + string.digits
SECRET_MAKERS: list[Callable[[random.Random], tuple[str, str, str]]] = [
    lambda r: ("Use key ", "AKIA" + token(r, string.ascii_uppercase + string.digits, 16), " for the bucket."),
    lambda r: ("aws_secret_access_key = ", token(r, ALNUM + "/+", 40), "\n"),
    lambda r: ("OPENAI_API_KEY=", "sk-proj-" + token(r, ALNUM + "_-", 48), ""),
    lambda r: ("my key is ", "sk-" + token(r, ALNUM, 48), ", keep it safe"),
    lambda r: ("ANTHROPIC_API_KEY: ", "sk-ant-api03-" + token(r, ALNUM + "_-", 93) + "AA", ""),
    lambda r: ("git remote uses ", "ghp_" + token(r, ALNUM, 36), " as password"),
    lambda r: ("token ", "github_pat_" + token(r, ALNUM, 22) + "_" + token(r, ALNUM, 59), " expired"),
    lambda r: ("SLACK_BOT_TOKEN=", "xoxb-" + token(r, string.digits, 12) + "-" + token(r, string.digits, 13)
               + "-" + token(r, ALNUM, 24), ""),
    lambda r: ("maps key ", "AIza" + token(r, ALNUM + "_-", 35), " in the page"),
    lambda r: ("stripe.api_key = '", "sk_live_" + token(r, ALNUM, 24), "'"),
    lambda r: ("Authorization: Bearer ", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI" + token(r, ALNUM, 20)
               + "In0." + token(r, ALNUM + "_-", 43), ""),
    lambda r: ("here is the key:\n", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + token(r, ALNUM + "+/", 70) + "\n"
               + token(r, ALNUM + "+/", 70) + "\n-----END OPENSSH PRIVATE KEY-----", "\nthanks"),
    lambda r: ("db config: password=", token(r, ALNUM + "!#%", 14), " host=db1"),
    lambda r: ('{"api_key": "', token(r, ALNUM, 32), '"}'),
]


# ---------------------------------------------------------------- hard negatives


def hard_negatives(rng: random.Random) -> list[str]:
    rows = []
    for prefix, length in [("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("3528", 16), ("4", 13)]:
        for _ in range(3):
            rows.append(f"The card {format_card(rng, card_number(rng, prefix, length, valid=False))} was declined.")
    rows += [f"Unknown issuer: {card_number(rng, '7', 16)} (Luhn-valid, no network uses 7)." for _ in range(3)]
    for country in ["DE", "GB", "FR", "NL", "ES", "IT"]:
        for _ in range(2):
            rows.append(f"Transfer to {format_iban(rng, iban(rng, country, valid=False))} failed.")
    rows += [f"Test SSN {invalid_ssn(rng)} is not issued." for _ in range(12)]
    rows += [f"Bare digits {digits(rng, 9)} are not an SSN without context." for _ in range(4)]
    rows += [
        "The meeting is on 2024-01-15 at 10:30:00.", "Due 15/01/2024, paid 16.01.2024.",
        "Timestamps: 2023-05-13 12:20:39 and 2023-05-14 08:01:02.", "Born 03-07-1988 in Lyon.",
        "Invoice INV-20240115-0042 is overdue.", "Order #A-2024-118833 shipped.", "order number 4500012345",
        "Your order 1002938475 has been dispatched.", "Ticket 20231115 is closed.",
        "Tracking 1Z999AA10123456784", "ISBN 978-3-16-148410-0", "Reference: 2024 0001 2345",
        "Upgrade to version 10.0.19041.1 now.", "Released v1.2.3 and v2.0.0-rc.1.",
        "Python 3.11.4 and version 1.2.3.4 are installed.", "Build 4.18.0-305.el8.x86_64",
        "Request id 123e4567-e89b-12d3-a456-426614174000 failed.",
        "Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it.",
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "md5 d41d8cd98f00b204e9800998ecf8427e", "Not an IP: 256.300.1.1 or 1.2.3", "The time is 12:30:45.",
        "MAC 00:1A:2B:3C:4D:5E is on the list.", "Use x[1::2] to slice, or std::vector in C++.",
        "Revenue grew to $1,234,567.89 in 2023.", "The city has 8336817 inhabitants.",
        "Room 1204, floor 12, building 3.", "Population 1 234 567 (2020 census).",
        "Coordinates 48.8566, 2.3522", "Score 98.6 out of 100.", "Set password=${DB_PASSWORD} in the env.",
        "api_key = get_api_key()", "password: ********", "Use sk-short as a placeholder.",
        "The keys are in ~/.ssh/id_rsa.pub", "Order 2024-118833-77 and part 12-3456-7890-12.",
        "Call the function at line 1234567.", "Serial no. 5551234567 is registered.",
        "Account 000123456789 was closed.",
        "Dimensions 1920x1080 at 60 Hz.", "Lottery numbers 4 8 15 16 23 42.",
    ]
    return rows


# ---------------------------------------------------------------- assembly


def positive_rows(rng: random.Random) -> list[Row]:
    rows: list[Row] = []
    for name, prefixes, length in CARD_BRANDS:
        for _ in range(5):
            number = format_card(rng, card_number(rng, rng.choice(prefixes), length))
            rows.append(build_row(rng.choice(["Charge ", "My card is ", "Card: ", "pay with "]), (number, "CREDIT_CARD"),
                                  rng.choice([" please.", "", " exp 12/27", ", thanks"])))
    for country in IBAN_BBANS:
        for _ in range(3):
            value = format_iban(rng, iban(rng, country))
            rows.append(build_row(rng.choice(["IBAN: ", "Send it to ", "Account "]), (value, "IBAN"),
                                  rng.choice([".", " today", ""])))
    for _ in range(20):
        area, group, serial = ssn(rng)
        rows.append(build_row(rng.choice(["SSN ", "My social security number is ", "ssn: "]),
                              (f"{area}-{group}-{serial}", "SSN"), rng.choice([".", "", " (verified)"])))
    for _ in range(5):
        area, group, serial = ssn(rng)
        rows.append(build_row("Social Security No. ", (area + group + serial, "SSN")))
    for _ in range(15):
        rows.append(build_row("Blocked ", (ipv4(rng), "IP_ADDRESS"), " after failed logins."))
        rows.append(build_row("Server at ", (ipv6(rng), "IP_ADDRESS"), " is down."))
    rows.append(build_row("Loopback is ", ("::1", "IP_ADDRESS"), " and ", ("127.0.0.1", "IP_ADDRESS"), "."))
    names = ["john.smith", "maria_garcia", "li.wei+news", "o'connor", "jörg.müller", "a.b-c", "support"]
    domains = ["example.com", "mail.example.co.uk", "uni-hamburg.de", "exämple.org", "startup.io"]
    for _ in range(30):
        rows.append(build_row(rng.choice(["Email ", "Write to ", "cc: ", "Contact <"]),
                              (f"{rng.choice(names)}{rng.randint(1, 99)}@{rng.choice(domains)}", "EMAIL"),
                              rng.choice([".", ">", " asap", ""])))
    for make in PHONE_FORMATS:
        for _ in range(3):
            before, after = rng.choice(PHONE_CONTEXTS)
            rows.append(build_row(before, (make(rng), "PHONE"), after))
        rows.append(build_row("Numbers: ", (make(rng), "PHONE"), "; ask for Sam."))  # no phone word
    for before, make in WEAK_PHONES:
        for _ in range(4):
            rows.append(build_row(before, (make(rng), "PHONE")))
    for make in SECRET_MAKERS:
        for _ in range(3):
            before, value, after = make(rng)
            rows.append(build_row(before, (value, "SECRET"), after))
    return rows


def mixed_rows(rng: random.Random) -> list[Row]:
    """Several identifiers in one message, as a support ticket would have them."""
    rows = []
    for _ in range(20):
        area, group, serial = ssn(rng)
        rows.append(build_row(
            "Hi, I'm writing about invoice INV-", digits(rng, 6), ". Reach me at ",
            (f"{rng.choice(['anna', 'tom', 'ngozi'])}@example.net", "EMAIL"), " or ",
            (PHONE_FORMATS[rng.randrange(len(PHONE_FORMATS))](rng), "PHONE"), ". Card ",
            (format_card(rng, card_number(rng, "4", 16)), "CREDIT_CARD"), " was charged twice on 2024-03-0",
            str(rng.randint(1, 9)), "; SSN ", (f"{area}-{group}-{serial}", "SSN"), ", login from ",
            (ipv4(rng), "IP_ADDRESS"), ". Refund to ", (iban(rng, rng.choice(["DE", "FR", "GB"])), "IBAN"), ".",
        ))
    return rows


def generate() -> list[Row]:
    """The rows, in file order; the same on every run (fixed seed)."""
    rng = random.Random(SEED)
    rows = positive_rows(rng) + mixed_rows(rng) + [build_row(text) for text in hard_negatives(rng)]
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = generate()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
