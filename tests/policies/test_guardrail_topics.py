"""Topic allow and deny lists: keywords as whole words and phrases, and semantic matching with the
real local embedder (paraphrase-MiniLM-L3-v2, offline)."""

from __future__ import annotations

import pytest

from sluice.policies.guardrails.topics import Topic, TopicMatcher, chunks, keyword_pattern
from sluice.routing.local_embedder import LocalOnnxEmbedder

MEDICAL = Topic("medical advice", ["diagnosis", "prescription"], [
    "What medication should I take for my headache?",
    "Is this rash on my arm something serious?",
    "How many pills of ibuprofen can I take a day?",
    "My chest hurts when I breathe, what illness do I have?",
])
BILLING = Topic("billing", ["invoice", "refund", "billing"], [
    "Why was I charged twice this month?",
    "How do I update the credit card on my account?",
    "Can I get my money back for last month's subscription?",
    "When is my next payment due?",
])
SHIPPING = Topic("shipping", ["delivery", "tracking number", "shipping"], [
    "Where is my package?",
    "My order has not arrived yet.",
    "How long does it take to ship to Canada?",
])
# Measured with this embedder: true matches score 0.44-0.60, unrelated texts at most 0.22.
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def embedder():
    emb = LocalOnnxEmbedder()
    yield emb
    emb.close()


class BrokenEmbedder:
    async def embed(self, texts):
        raise ConnectionError("embeddings service down")


# ----------------------------------------------------------------------------------- keywords


@pytest.mark.parametrize("keyword, text, hit", [
    ("refund", "I want a REFUND now", True),
    ("refund", "two refunds please", True),
    ("refund", "refunding is not a word we use", False),
    ("gun", "the show has begun", False),
    ("gun", "guns and roses", True),
    ("policy", "read our policies", True),
    ("policy", "one policy", True),
    ("tax", "taxes are due", True),
    ("class", "two classes", True),
    ("class", "a classic", False),
    ("tracking number", "my tracking\n  numbers are wrong", True),
    ("tracking number", "tracking the number", False),
    ("c++", "I write C++ daily", True),
    ("c++", "I write c daily", False),
    (".net", "built on .NET today", True),
    ("day", "three days", True),  # vowel before y: plain s
])
def test_keywords_match_whole_words_and_plurals(keyword, text, hit):
    assert (keyword_pattern([keyword]).search(text) is not None) is hit


def test_keyword_pattern_of_nothing():
    assert keyword_pattern(["", "  "]) is None


async def test_deny_list_by_keyword():
    matcher = TopicMatcher(None, [MEDICAL, Topic("weapons", ["gun", "rifle"])])
    out = await matcher.check("Where can I buy a rifle?")
    assert out.verdict.check == "topics" and out.verdict.action == "block" and out.verdict.score == 1.0
    assert out.verdict.reasons == ("denied topic 'weapons' (keyword 'rifle')",)
    assert (await matcher.check("The show has begun.")).verdict.action == "allow"
    assert (await matcher.check("")).verdict.action == "allow"


async def test_allow_list_by_keyword():
    matcher = TopicMatcher([BILLING, SHIPPING], [], action="flag", name="scope")
    on = await matcher.check("I need a refund for order 12")
    assert on.verdict.action == "allow" and on.verdict.reasons == ("on topic 'billing' (keyword 'refund')",)
    off = await matcher.check("Write me a poem about the sea")
    assert (off.verdict.check, off.verdict.action, off.verdict.score) == ("scope", "flag", 1.0)
    assert off.verdict.reasons == ("off topic: matches none of the allowed topics (billing, shipping)",)


async def test_deny_wins_over_allow():
    matcher = TopicMatcher([BILLING], [MEDICAL])
    out = await matcher.check("Can I get a refund for my prescription?")
    assert out.verdict.action == "block" and "medical advice" in out.verdict.reasons[0]


def test_deny_keywords_is_a_sync_stream_check():
    matcher = TopicMatcher([BILLING], [MEDICAL])
    assert matcher.deny_keywords("your diagnosis is").reasons == ("denied topic 'medical advice' (keyword 'diagnosis')",)
    assert matcher.deny_keywords("an off-topic text") is None  # allow lists need the whole text


def test_config_errors():
    with pytest.raises(ValueError, match="needs keywords or examples"):
        Topic("empty", [])
    with pytest.raises(ValueError, match="lists of strings"):
        Topic("oops", "refund")
    with pytest.raises(ValueError, match="empty allow list"):
        TopicMatcher([], [MEDICAL])
    with pytest.raises(ValueError, match="unique"):
        TopicMatcher([BILLING], [BILLING])
    with pytest.raises(ValueError, match="'block' or 'flag'"):
        TopicMatcher(None, [MEDICAL], action="redact")
    with pytest.raises(ValueError, match="threshold"):
        TopicMatcher(None, [MEDICAL], threshold=0)


# --------------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("text", ["Which painkiller is best for a migraine?",
                                  "Should I see a doctor about this fever?"])
async def test_deny_by_meaning_without_keywords(embedder, text):
    matcher = TopicMatcher(None, [MEDICAL], embedder, THRESHOLD)
    out = await matcher.check(text)
    assert out.verdict.action == "block", out
    assert out.verdict.reasons[0].startswith("denied topic 'medical advice' (similarity 0.")
    assert THRESHOLD <= out.verdict.score < 1.0


@pytest.mark.parametrize("text, topic", [("I was billed two times for the same plan", "billing"),
                                         ("Can you change my payment method?", "billing"),
                                         ("My parcel is late, where is it?", "shipping")])
async def test_allow_by_meaning(embedder, text, topic):
    matcher = TopicMatcher([BILLING, SHIPPING], [MEDICAL], embedder, THRESHOLD)
    out = await matcher.check(text)
    assert out.verdict.action == "allow" and out.verdict.reasons[0].startswith(f"on topic '{topic}' (similarity")


@pytest.mark.parametrize("text", ["Write me a poem about the sea", "What is the capital of France?",
                                  "Explain quantum computing", "How do I cook pasta?"])
async def test_off_topic_by_meaning(embedder, text):
    matcher = TopicMatcher([BILLING, SHIPPING], [MEDICAL], embedder, THRESHOLD)
    out = await matcher.check(text)
    assert out.verdict.action == "block" and out.verdict.reasons[0].startswith("off topic")
    assert out.verdict.score > 1.0 - THRESHOLD


async def test_a_long_text_is_embedded_in_pieces(embedder):
    garden = ("We spent the weekend in the garden. The new fence is finally up and painted green. "
              "The neighbours' dog kept digging under it, so we laid a row of stones along the bottom. "
              "Next spring we want to plant tomatoes, beans and a few rows of lettuce by the shed. ") * 3
    health = ("Since Friday my chest hurts when I climb the stairs and I have had a fever. "
              "Which medicine should I take, and how many pills a day are safe?")
    text = garden + "\n" + health
    assert len(garden) > 700
    whole = TopicMatcher(None, [MEDICAL], embedder, THRESHOLD, chunk_chars=5000)
    assert (await whole.check(text)).verdict.action == "allow"  # one vector: the model reads the garden only
    pieces = TopicMatcher(None, [MEDICAL], embedder, THRESHOLD)  # pieces of 500 characters
    out = await pieces.check(text)
    assert out.verdict.action == "block", out
    assert (await pieces.check(garden)).verdict.action == "allow"


async def test_topics_without_examples_use_keywords_only(embedder):
    matcher = TopicMatcher(None, [Topic("weapons", ["rifle"])], embedder, THRESHOLD)
    assert (await matcher.check("a hunting rifle")).verdict.action == "block"
    assert (await matcher.check("Which painkiller is best for a migraine?")).verdict.action == "allow"


async def test_embedder_failure_fails_open_on_keywords_alone():
    matcher = TopicMatcher([BILLING], [MEDICAL], BrokenEmbedder(), THRESHOLD)
    keyword = await matcher.check("where is my invoice")
    assert keyword.verdict.action == "allow" and "ConnectionError" in keyword.error
    denied = await matcher.check("my diagnosis")
    assert denied.verdict.action == "block" and denied.error is not None
    # no keyword decides, and the allow list cannot be judged without the embedder: open means allow
    undecided = await matcher.check("Write me a poem")
    assert undecided.verdict.action == "allow" and undecided.error is not None
    assert undecided.verdict.reasons[0].startswith("allow list not judged: embedder unavailable")
    # an allow list of keywords only does not need the embedder: off topic is still off topic
    keywords_only = TopicMatcher([Topic("billing", ["invoice"])], [MEDICAL], BrokenEmbedder(), THRESHOLD)
    off = await keywords_only.check("Write me a poem")
    assert off.verdict.action == "block" and off.verdict.reasons[0].startswith("off topic")


async def test_embedder_failure_fails_closed():
    matcher = TopicMatcher(None, [MEDICAL], BrokenEmbedder(), THRESHOLD, fail="closed")
    out = await matcher.check("hello")
    assert out.verdict.action == "block" and "fails closed" in out.verdict.reasons[0]
    assert out.error == "embedder unavailable: ConnectionError: embeddings service down"


def test_chunks_cut_at_spaces_and_stop_at_the_limit():
    text = " ".join(f"word{i}" for i in range(200))
    pieces = chunks(text, 50, 3)
    assert len(pieces) == 3 and all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces) == text[: len(" ".join(pieces))]  # cut between words, nothing lost
    assert chunks("   ", 50, 3) == []
    prose = "First sentence is here. Second one follows it! A third? " * 4
    assert all(p.endswith((".", "!", "?")) for p in chunks(prose, 60, 10)[:-1])
    assert chunks("one paragraph\nanother paragraph that is longer", 24, 5)[0] == "one paragraph"
