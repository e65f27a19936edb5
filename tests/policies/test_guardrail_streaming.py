"""Incremental output checks on streams: matches split anywhere across deltas and scans, no partial
words, bounded memory and linear work on long streams, and the every/boundary/finish rules."""

from __future__ import annotations

import random

import pytest

from sluice.policies.guardrails.verdict import Verdict
from sluice.policies.guardrails.pii import detect
from sluice.policies.guardrails.streaming import StreamScanner, regex_check
from sluice.policies.guardrails.topics import Topic, TopicMatcher

SECRET = regex_check("deny", r"(?<!\w)launch codes?(?!\w)", reason="launch codes")


def pii_check(text: str) -> Verdict | None:
    found = detect(text, {"EMAIL", "CREDIT_CARD"})
    return Verdict("pii", "block", 1.0, tuple(sorted({f.type for f in found}))) if found else None


class Counting:
    """Wraps a check and counts the characters it was shown."""

    def __init__(self, check=None) -> None:
        self.check, self.seen, self.calls, self.texts = check, 0, 0, []

    def __call__(self, text: str):
        self.seen += len(text)
        self.calls += 1
        self.texts.append(text)
        return self.check(text) if self.check else None


def words(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    vocab = ["the", "river", "runs", "north", "past", "old", "mills", "and", "quiet", "towns", "while", "rain"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def feed_all(scanner: StreamScanner, deltas) -> Verdict | None:
    for delta in deltas:
        if scanner.feed(delta) is not None:
            return scanner.blocked
    return scanner.finish()


def split_every(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


# ------------------------------------------------------------------------------ straddling


@pytest.mark.parametrize("every, overlap", [(16, 24), (40, 24), (200, 200)])
def test_a_match_is_found_at_every_split_position(every, overlap):
    text = words(30) + " here are the launch codes for tonight " + words(30, seed=2)
    for cut in range(1, len(text)):
        scanner = StreamScanner([SECRET], every=every, overlap=overlap, window=4 * overlap + every)
        verdict = feed_all(scanner, split_every(text, [cut]))
        assert verdict is not None and verdict.reasons == ("launch codes",), cut


def test_a_match_is_found_with_char_by_char_and_random_deltas():
    text = words(400) + " email me at jane.doe@example.com today " + words(400, seed=3)
    one_by_one = StreamScanner([pii_check], every=50, overlap=60)
    assert feed_all(one_by_one, text) == Verdict("pii", "block", 1.0, ("EMAIL",))
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 60)))
        scanner = StreamScanner([pii_check], every=rng.choice([20, 50, 120]), overlap=60)
        assert feed_all(scanner, split_every(text, cuts)) is not None, cuts


def test_every_straddle_of_two_scans_with_a_real_card_number():
    card = "4111 1111 1111 1111"
    prefix = words(12)
    for shift in range(0, 40):
        text = prefix + " x" * shift + f" card {card} expires soon " + words(12, seed=5)
        scanner = StreamScanner([pii_check], every=30, overlap=40)
        assert feed_all(scanner, [text[i:i + 7] for i in range(0, len(text), 7)]) is not None, shift


def test_no_partial_word_is_reported_at_a_scan_end():
    ban = regex_check("ban", r"(?<!\w)ban(?!\w)")
    text = "this is a bananarama " * 50
    for step in (1, 3, 7, 64):
        scanner = StreamScanner([ban], every=10, overlap=20)
        assert feed_all(scanner, [text[i:i + step] for i in range(0, len(text), step)]) is None, step


def test_no_partial_word_at_the_start_of_a_context():
    nana = regex_check("nana", r"(?<!\w)nana(?!\w)")
    text = " a banana split" * 40
    for overlap in range(8, 40):  # contexts start at every offset of the 15-character period
        for every in (7, 13):
            scanner = StreamScanner([nana], every=every, overlap=overlap)
            assert feed_all(scanner, text) is None, (overlap, every)  # char by char


def test_a_word_longer_than_overlap_is_scanned_as_it_is():
    tail = Counting()
    scanner = StreamScanner([tail], every=10, overlap=20)
    scanner.feed("start " + "z" * 100)
    assert any("z" * 21 in t for t in tail.texts)  # not held back for ever


# ------------------------------------------------------------------------- memory and work


def test_bounded_memory_and_linear_work_on_a_long_stream():
    counter = Counting(SECRET)
    scanner = StreamScanner([counter], window=2000, overlap=200, every=200)
    rng = random.Random(11)
    text = words(200_000, seed=4)  # ~1 MB
    at, largest = 0, 0
    while at < len(text):
        size = rng.choice([1, 3, 17, 80, 400, 5000])
        assert scanner.feed(text[at:at + size]) is None
        largest = max(largest, scanner.buffered)
        at += size
    scanner.feed(" and finally the launch code")
    assert scanner.finish() is not None
    assert largest <= 2000
    total = scanner.total_chars
    assert total > 1_000_000
    assert counter.seen <= total * (1 + 5 * 200 / 200)  # the documented bound
    assert counter.seen <= total * 3  # and in practice well inside it
    assert counter.calls >= total / 2000


def test_one_huge_delta_is_scanned_in_window_sized_pieces():
    counter = Counting()
    scanner = StreamScanner([counter], window=1000, overlap=100, every=100)
    scanner.feed(words(20_000))
    assert scanner.buffered <= 1000 and max(len(t) for t in counter.texts) <= 1000
    assert scanner.scanned_chars > scanner.total_chars - 1000


# ------------------------------------------------------------------ every, boundaries, finish


def test_scans_every_n_characters_and_at_finish():
    counter = Counting()
    scanner = StreamScanner([counter], every=200, overlap=50)
    scanner.feed("a" * 199)
    assert counter.calls == 0
    scanner.feed("a")
    assert counter.calls == 1
    scanner.feed(" tail words")
    assert counter.calls == 1
    assert scanner.finish() is None and counter.calls == 2
    assert counter.texts[-1].endswith(" tail words")
    assert scanner.finish() is None and counter.calls == 2  # idempotent
    with pytest.raises(RuntimeError):
        scanner.feed("more")


def test_sentence_and_line_ends_scan_early():
    counter = Counting()
    scanner = StreamScanner([counter], every=200, overlap=50)
    scanner.feed("Short. ")
    assert counter.calls == 0  # fewer than every // 2 new characters
    scanner.feed("x" * 100 + " and then the sentence ends.")
    assert counter.calls == 1
    scanner.feed("y" * 120 + "\n")
    assert counter.calls == 2


def test_finish_catches_a_match_in_the_last_characters():
    scanner = StreamScanner([SECRET], every=200)
    assert scanner.feed("no problem so far, here are the launch cod") is None
    assert scanner.feed("es") is None
    assert scanner.finish().reasons == ("launch codes",)


def test_the_first_block_sticks_and_checks_stop():
    counter = Counting(SECRET)
    scanner = StreamScanner([counter], every=20, overlap=20)
    verdict = feed_all(scanner, ["all fine here, ", "the launch code is 1234 ", "and more text " * 5])
    assert verdict is not None
    calls = counter.calls
    assert scanner.feed("even more words " * 30) is verdict and counter.calls == calls
    assert scanner.finish() is verdict


def test_flags_are_kept_once_and_scanning_goes_on():
    flag = regex_check("tone", r"\bdamn\b", action="flag")
    scanner = StreamScanner([flag, SECRET], every=20, overlap=20)
    assert feed_all(scanner, ["damn it, ", "damn again " * 10, "and the launch code"]) is not None
    assert [v.check for v in scanner.verdicts] == ["tone"]


def test_max_chars():
    scanner = StreamScanner([], max_chars=100)
    assert scanner.feed("a" * 100) is None
    verdict = scanner.feed("b")
    assert verdict == Verdict("max_length", "block", 1.0, ("the answer is longer than 100 characters",))
    assert scanner.finish() is verdict


def test_cleared_never_passes_text_a_later_scan_reads():
    counter = Counting()
    scanner = StreamScanner([counter], every=30, overlap=40)
    text = words(300)
    released = 0
    for i in range(0, len(text), 9):
        seen_before = len(counter.texts)
        scanner.feed(text[i:i + 9])
        if len(counter.texts) > seen_before:  # the first scan of this feed starts where cleared was
            assert text.startswith(counter.texts[seen_before], released)
        assert released <= scanner.cleared <= scanner.scanned_chars <= scanner.total_chars
        released = scanner.cleared
    assert scanner.cleared < len(text)
    scanner.finish()
    assert text.startswith(counter.texts[-1], released)
    assert scanner.cleared == len(text)


def test_topic_deny_keywords_as_a_stream_check():
    topics = TopicMatcher(None, [Topic("weapons", ["rifle", "handgun"])])
    text = words(50) + " you can buy rifles at " + words(50)
    for cut in range(1, len(text), 5):
        scanner = StreamScanner([topics.deny_keywords], every=32, overlap=32)
        verdict = feed_all(scanner, split_every(text, [cut]))
        assert verdict is not None and verdict.reasons == ("denied topic 'weapons' (keyword 'rifles')",)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="window > 3"):
        StreamScanner([], window=600, overlap=200)
    with pytest.raises(ValueError):
        StreamScanner([], every=0)
    with pytest.raises(ValueError):
        StreamScanner([], max_chars=-1)
