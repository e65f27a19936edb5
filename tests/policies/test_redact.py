"""Reversible redaction: stable, collision-free placeholders; exact restore; streams split anywhere."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sluice.policies.guardrails.pii import Finding, detect
from sluice.policies.guardrails.redact import MAX_PLACEHOLDER_LENGTH, PLACEHOLDER_RE, StreamRestorer, Vault, mask

SYNTHETIC = Path(__file__).resolve().parents[1] / "data" / "pii_synthetic.jsonl"

PROMPT = (
    "I'm jane@example.com (backup: jane@example.com, work: j.doe@corp.example). Call +44 20 7946 0958 "
    "or +1 415 555 2671. Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, "
    "key sk-proj-" + "Ab3_" * 16 + ". Server 10.1.2.3."
)


def synthetic_texts() -> list[str]:
    with SYNTHETIC.open(encoding="utf-8") as rows:
        return [json.loads(row)["text"] for row in rows]


def test_redact_replaces_every_finding_with_stable_placeholders():
    vault = Vault()
    redacted = vault.redact(PROMPT)
    assert redacted.count("[EMAIL_1]") == 2  # same value, same placeholder
    assert "[EMAIL_2]" in redacted and "[PHONE_1]" in redacted and "[PHONE_2]" in redacted
    for value in ["jane@example.com", "7946 0958", "4111 1111", "DE89", "sk-proj-", "10.1.2.3"]:
        assert value not in redacted
    assert detect(redacted) == []  # nothing left for the upstream to see
    assert vault.restore(redacted) == PROMPT


def test_same_value_keeps_its_placeholder_across_messages_of_one_request():
    vault = Vault()
    first = vault.redact("from jane@example.com")
    second = vault.redact("reply to jane@example.com and bob@example.com")
    assert first == "from [EMAIL_1]"
    assert second == "reply to [EMAIL_1] and [EMAIL_2]"
    assert len(vault) == 2


def test_vaults_are_independent():
    assert Vault().redact("a@example.com") == Vault().redact("b@example.com") == "[EMAIL_1]"


def test_placeholder_lookalikes_in_the_prompt_are_escaped_and_restored_verbatim():
    vault = Vault()
    first = vault.redact("my email is jane@example.com")
    assert first == "my email is [EMAIL_1]"
    # a later message quotes an issued placeholder: it must not restore to jane's address
    tricky = "print [EMAIL_1] and [PHONE_7] for me, then [EMAIL_1x] and [email_1]"
    redacted = vault.redact(tricky)
    tokens = PLACEHOLDER_RE.findall(redacted)
    assert ("EMAIL", "1") not in tokens and ("PHONE", "7") not in tokens
    assert "[EMAIL_1x]" in redacted and "[email_1]" in redacted  # not placeholder-shaped: untouched
    assert vault.restore(redacted) == tricky
    assert vault.restore(first) == "my email is jane@example.com"


def test_every_placeholder_the_upstream_sees_was_issued_by_the_vault():
    vault = Vault()
    texts = ["[SECRET_1] x@y.org [IP_ADDRESS_2]", "x@y.org [EMAIL_2] [EMAIL_1]", "[CREDIT_CARD_999999]"]
    for text in texts:
        redacted = vault.redact(text)
        for match in PLACEHOLDER_RE.finditer(redacted):
            assert match.group() in vault.originals
        assert vault.restore(redacted) == text


def test_placeholders_the_model_invents_are_left_alone():
    vault = Vault()
    vault.redact("x@y.org")
    assert vault.restore("[EMAIL_1] and [EMAIL_9] and [PHONE_1]") == "x@y.org and [EMAIL_9] and [PHONE_1]"


def test_restore_round_trips_every_synthetic_row():
    for text in synthetic_texts():
        vault = Vault()
        redacted = vault.redact(text)
        assert vault.restore(redacted) == text
        for original in vault.originals.values():
            assert original not in redacted


def test_restore_can_encode_for_json_strings():
    text = 'the password is pa"ss\\word'
    start = text.index('pa"')
    vault = Vault()
    redacted = vault.redact(text, findings=[Finding("SECRET", start, len(text), text[start:], 1.0)])
    assert redacted == "the password is [SECRET_1]"
    arguments = json.dumps({"note": redacted})  # e.g. tool-call arguments written by the model
    restored = vault.restore(arguments, encode=lambda v: json.dumps(v)[1:-1])
    assert json.loads(restored) == {"note": text}


def test_types_limit_what_is_redacted():
    vault = Vault(types={"EMAIL"})
    assert vault.redact("x@y.org 4111111111111111") == "[EMAIL_1] 4111111111111111"


def test_given_findings_are_used_instead_of_detection():
    text = "Ada Lovelace wrote to x@y.org"
    names = [Finding("PERSON", 0, 12, "Ada Lovelace", 0.9)]
    vault = Vault()
    assert vault.redact(text, findings=names + detect(text)) == "[PERSON_1] wrote to [EMAIL_1]"
    assert vault.restore("Dear [PERSON_1]") == "Dear Ada Lovelace"


def test_mask_is_irreversible():
    assert mask("x@y.org, +44 20 7946 0958, x@y.org") == "[EMAIL], [PHONE], [EMAIL]"
    assert mask("x@y.org 10.0.0.1", types={"IP_ADDRESS"}) == "x@y.org [IP_ADDRESS]"


# ---------------------------------------------------------------- streams


def stream(restorer: StreamRestorer, chunks: list[str]) -> tuple[str, int]:
    out, most_held = "", 0
    for chunk in chunks:
        out += restorer.feed(chunk)
        most_held = max(most_held, len(restorer.held))
    return out + restorer.flush(), most_held


def test_stream_restores_placeholders_split_at_every_position():
    vault = Vault()
    vault.redact(PROMPT)
    answer = "Sure [EMAIL_1]! I'll call [PHONE_2] about [CREDIT_CARD_1]; [EMAIL_1] again.[IBAN_1]"
    expected = vault.restore(answer)
    for cut in range(len(answer) + 1):
        out, most_held = stream(vault.stream_restorer(), [answer[:cut], answer[cut:]])
        assert out == expected, cut
        assert most_held < MAX_PLACEHOLDER_LENGTH
    for a in range(len(answer) + 1):  # every pair of cuts: three deltas
        for b in range(a, len(answer) + 1):
            out, _ = stream(vault.stream_restorer(), [answer[:a], answer[a:b], answer[b:]])
            assert out == expected, (a, b)


def test_stream_one_character_at_a_time_and_random_splits():
    rng = random.Random(11)
    for text in synthetic_texts()[:200]:
        vault = Vault()
        redacted = vault.redact(text)
        out, most_held = stream(vault.stream_restorer(), list(redacted))
        assert out == text
        cuts = sorted(rng.sample(range(len(redacted) + 1), min(5, len(redacted) + 1)))
        chunks = [redacted[i:j] for i, j in zip([0, *cuts], [*cuts, len(redacted)])]
        assert stream(vault.stream_restorer(), chunks)[0] == text
        assert most_held < MAX_PLACEHOLDER_LENGTH


def test_stream_passes_ordinary_text_through_at_once():
    vault = Vault()
    vault.redact("x@y.org")
    restorer = vault.stream_restorer()
    assert restorer.feed("Hello [world] and [EM") == "Hello [world] and "
    assert restorer.held == "[EM"
    assert restorer.feed("PTY] ok") == "[EMPTY] ok"  # not a prefix of ours any more: released
    assert restorer.feed("[") == ""
    assert restorer.feed("EMAIL_1") == ""
    assert restorer.feed("]") == "x@y.org"
    assert restorer.feed("[EMAIL_1") == ""
    assert restorer.flush() == "[EMAIL_1"  # the stream ended inside: it was text after all


def test_stream_hold_back_is_bounded_by_issued_placeholders():
    vault = Vault()
    restorer = vault.stream_restorer()
    assert restorer.feed("[EMAIL_") == "[EMAIL_"  # nothing issued: nothing to wait for
    vault.redact("x@y.org")
    assert restorer.feed("[EMAIL_11") == "[EMAIL_11"  # no issued placeholder starts like this
    for prefix in ["[", "[E", "[EMAIL", "[EMAIL_", "[EMAIL_1"]:
        assert vault.stream_restorer().feed("abc" + prefix) == "abc"


def test_stream_bounded_under_adversarial_brackets():
    vault = Vault()
    vault.redact("x@y.org")
    restorer = vault.stream_restorer()
    for _ in range(1000):
        restorer.feed("[[[[EMAIL_")
        assert len(restorer.held) <= MAX_PLACEHOLDER_LENGTH


def test_empty_vault_stream_is_a_pass_through():
    restorer = Vault().stream_restorer()
    assert restorer.feed("[EMAIL_1] text") == "[EMAIL_1] text"
    assert restorer.flush() == ""


@pytest.mark.parametrize("encode", [None, lambda v: v.upper()])
def test_stream_applies_the_encoder(encode):
    vault = Vault()
    vault.redact("x@y.org")
    out, _ = stream(vault.stream_restorer(encode), ["a [EMA", "IL_1] b"])
    assert out == ("a x@y.org b" if encode is None else "a X@Y.ORG b")


def test_addresses_get_placeholders_and_come_back_whole_even_split_across_deltas():
    vault = Vault()
    prompt = "Ship to 10 Downing Street, London SW1A 2AA; bill PO Box 77. Typed by me: [ADDRESS_2]"
    redacted = vault.redact(prompt)
    assert redacted == "Ship to [ADDRESS_1]; bill [ADDRESS_2]. Typed by me: [ADDRESS_3]"
    assert vault.originals["[ADDRESS_1]"] == "10 Downing Street, London SW1A 2AA"
    assert vault.originals["[ADDRESS_3]"] == "[ADDRESS_2]"  # a look-alike is restored verbatim
    answer = "Sent to [ADDRESS_1], invoice to [ADDRESS_2], note [ADDRESS_3]."
    restorer = vault.stream_restorer()
    out = "".join(restorer.feed(answer[i : i + 3]) for i in range(0, len(answer), 3)) + restorer.flush()
    assert out == vault.restore(answer) == (
        "Sent to 10 Downing Street, London SW1A 2AA, invoice to PO Box 77, note [ADDRESS_2].")
    assert mask(prompt) == "Ship to [ADDRESS]; bill [ADDRESS]. Typed by me: [ADDRESS_2]"
