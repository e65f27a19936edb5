"""The semantic cache index: scopes, threshold, guard, TTL, LRU, removal, ANN, and sharing via Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sluice.policies.semantic_cache import (
    RedisSemanticIndex,
    SemanticIndex,
    SemanticMatch,
    prompt_signature,
    signatures_compatible,
)

DIM = 32
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def at_cosine(base: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector whose cosine with ``base`` is exactly ``cosine``."""
    other = unit(seed, len(base))
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    return cosine * base + np.sqrt(1 - cosine**2) * other


# --- the in-process index ---------------------------------------------------------------------


def test_hit_in_same_scope_and_never_across_scopes():
    index = SemanticIndex(threshold=0.9)
    v = unit(1)
    index.add("gpt|team-a|sys1", v, "entry-a", ttl=60)
    match = index.nearest("gpt|team-a|sys1", v)
    assert match == SemanticMatch("entry-a", pytest.approx(1.0, abs=1e-5))
    assert index.nearest("gpt|team-b|sys1", v) is None  # another tenant
    assert index.nearest("gpt|team-a|sys2", v) is None  # another system prompt
    index.add("gpt|team-b|sys1", v, "entry-b", ttl=60)
    assert index.nearest("gpt|team-b|sys1", v).entry_key == "entry-b"
    assert index.nearest("gpt|team-a|sys1", v).entry_key == "entry-a"


def test_threshold_decides_hit_or_miss():
    index = SemanticIndex(threshold=0.9)
    base = unit(2)
    index.add("s", base, "k", ttl=60)
    assert index.nearest("s", at_cosine(base, 0.85)) is None
    hit = index.nearest("s", at_cosine(base, 0.93))
    assert hit is not None and hit.similarity == pytest.approx(0.93, abs=1e-4)
    assert index.nearest("s", at_cosine(base, 0.85), threshold=0.8).entry_key == "k"
    assert index.nearest("s", at_cosine(base, 0.93), threshold=0.95) is None


def test_nearest_returns_the_most_similar_entry():
    index = SemanticIndex(threshold=0.5)
    base = unit(3)
    index.add("s", at_cosine(base, 0.7, seed=10), "far", ttl=60)
    index.add("s", at_cosine(base, 0.95, seed=11), "near", ttl=60)
    index.add("s", at_cosine(base, 0.8, seed=12), "middle", ttl=60)
    assert index.nearest("s", base).entry_key == "near"


def test_vectors_are_normalised_so_scale_does_not_matter():
    index = SemanticIndex(threshold=0.99)
    v = unit(4)
    index.add("s", v * 7.5, "k", ttl=60)
    assert index.nearest("s", (v * 0.01).tolist()).similarity == pytest.approx(1.0, abs=1e-5)


def test_entries_expire_after_their_ttl():
    clock = FakeClock()
    index = SemanticIndex(threshold=0.9, clock=clock)
    v = unit(5)
    index.add("s", v, "short", ttl=10)
    index.add("s", at_cosine(v, 0.95), "long", ttl=100)
    assert index.nearest("s", v).entry_key == "short"
    clock.now += 10.5
    assert index.nearest("s", v).entry_key == "long"  # the expired best one is skipped
    assert "short" not in index  # and dropped on the way
    clock.now += 100
    assert index.nearest("s", v) is None
    assert len(index) == 0


def test_purge_expired_drops_only_expired_entries():
    clock = FakeClock()
    index = SemanticIndex(clock=clock)
    for i in range(5):
        index.add("s", unit(i), f"k{i}", ttl=10 + i * 10)
    clock.now += 25
    assert index.purge_expired() == 2
    assert sorted(k for k, _, _ in index.entries()) == ["k2", "k3", "k4"]


def test_least_recently_used_entry_is_evicted_at_the_size_bound():
    index = SemanticIndex(threshold=0.99, max_entries=3)
    vectors = {f"k{i}": unit(20 + i) for i in range(4)}
    for name in ("k0", "k1", "k2"):
        index.add("s", vectors[name], name, ttl=60)
    assert index.nearest("s", vectors["k0"]).entry_key == "k0"  # k0 is now the most recent
    index.add("other-scope", vectors["k3"], "k3", ttl=60)  # the bound is over all scopes
    assert len(index) == 3 and index.evictions == 1
    assert "k1" not in index
    assert index.nearest("s", vectors["k1"]) is None
    assert {"k0", "k2", "k3"} <= {k for k, _, _ in index.entries()}


def test_expired_entries_go_before_live_ones_at_the_bound():
    clock = FakeClock()
    index = SemanticIndex(max_entries=2, clock=clock)
    index.add("s", unit(30), "old-but-live", ttl=100)
    index.add("s", unit(31), "newer-but-expired", ttl=1)
    clock.now += 2
    index.add("s", unit(32), "new", ttl=100)
    assert {k for k, _, _ in index.entries()} == {"old-but-live", "new"}
    assert index.evictions == 0


def test_remove_and_replace():
    index = SemanticIndex(threshold=0.9)
    v = unit(40)
    index.add("s", v, "k", ttl=60)
    assert index.remove("k") is True
    assert index.remove("k") is False
    assert index.nearest("s", v) is None and index.scope_size("s") == 0
    index.add("s", v, "k", ttl=60)
    index.add("s2", unit(41), "k", ttl=60)  # the same key again replaces the entry
    assert len(index) == 1 and index.nearest("s", v) is None
    assert index.nearest("s2", unit(41)).entry_key == "k"


def test_many_adds_and_removes_keep_every_vector_findable():
    """Growth by doubling and swap-removal must never mix up rows and keys."""
    rng = np.random.default_rng(7)
    index = SemanticIndex(threshold=0.999, max_entries=100_000)
    live: dict[str, np.ndarray] = {}
    for step in range(3000):
        if live and rng.random() < 0.35:
            victim = list(live)[int(rng.integers(len(live)))]
            assert index.remove(victim)
            del live[victim]
        else:
            name = f"k{step}"
            live[name] = unit(1000 + step)
            index.add("s", live[name], name, ttl=600)
    assert index.scope_size("s") == len(live) == len(index)
    for name, vector in live.items():
        assert index.nearest("s", vector).entry_key == name


def test_signature_guard_skips_an_incompatible_nearer_entry():
    index = SemanticIndex(threshold=0.8)
    base = unit(50)
    index.add("s", at_cosine(base, 0.99, seed=51), "km-to-miles",
              ttl=60, signature=prompt_signature("Convert 10 kilometers to miles."))
    index.add("s", at_cosine(base, 0.9, seed=52), "miles-to-km-reworded",
              ttl=60, signature=prompt_signature("Please convert 10 miles into kilometers"))
    query = prompt_signature("Convert 10 miles to kilometers.")
    assert index.nearest("s", base, query).entry_key == "miles-to-km-reworded"
    assert index.nearest("s", base).entry_key == "km-to-miles"  # no signature: cosine alone


def test_wrong_inputs_are_refused():
    index = SemanticIndex()
    index.add("s", unit(60), "k", ttl=60)
    with pytest.raises(ValueError):
        index.add("s", unit(61, dim=DIM + 1), "k2", ttl=60)
    with pytest.raises(ValueError):
        index.nearest("s", unit(62, dim=DIM - 1))
    with pytest.raises(ValueError):
        index.add("s", np.zeros(DIM), "k3", ttl=60)
    with pytest.raises(ValueError):
        index.add("s", unit(63), "k4", ttl=0)
    with pytest.raises(ValueError):
        SemanticIndex(max_entries=0)


# --- the guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [
    ("What is 15% of 80?", "What is 15% of 60?"),
    ("Write a 4-line poem about rain.", "Write a four-line poem about the snow."),
    ("How do I turn on notifications?", "How do I turn off notifications?"),
    ("Why is my code working?", "Why isn't my code working?"),
    ("Convert 10 miles to kilometers.", "Convert 10 kilometers to miles."),
    ("Does the dog chase the cat?", "Does the cat chase the dog?"),
    ("Move money from PayPal to my bank account", "Move money from my bank account to PayPal"),
    ("How do I install Docker on Ubuntu?", "How do I uninstall Docker on Ubuntu?"),
    ("How do I import a CSV into Excel?", "How do I export a CSV into Excel?"),
    ("Translate 'good night' into Spanish.", "Translate 'good night' into German."),
    ("Who was president before Lincoln?", "Who was president after Lincoln?"),
])
def test_guard_refuses_pairs_an_embedding_blurs(a, b):
    assert not signatures_compatible(prompt_signature(a), prompt_signature(b))
    assert not signatures_compatible(prompt_signature(b), prompt_signature(a))


@pytest.mark.parametrize("a, b", [
    ("What's the weather like on Mars?", "What is the weather like on Mars?"),
    ("I don't understand closures", "I do not understand closures"),
    ("Why can't I connect?", "Why cannot I connect?"),
    ("how do i instal numpy", "How do I install numpy?"),
    ("explain quantum entanglment simply", "Explain quantum entanglement simply."),
    ("In Python, how do I read a CSV file?", "How do I read a CSV file in Python?"),
    ("Plan a three-day trip", "Plan a 3-day trip"),
    ("Please summarize the plot of Hamlet.", "Summarize the plot of Hamlet."),
    ("What is the population of Canada, 2024?", "Population of Canada in 2024?"),
])
def test_guard_accepts_rewordings(a, b):
    assert signatures_compatible(prompt_signature(a), prompt_signature(b))


def test_signature_is_normalised_and_bounded():
    assert prompt_signature("It's $300,000 — can't be TWO!") == "it 300000 can not be 2"
    letters = ["".join(chr(97 + (i // 26**p) % 26) for p in range(3)) for i in range(1000)]
    words = prompt_signature(" ".join(letters)).split()
    assert len(words) == 256 and words[:192] == letters[:192] and words[192:] == letters[-64:]


# --- the ANN accelerator ------------------------------------------------------------------------


def test_large_scope_switches_to_ann_and_stays_correct():
    pytest.importorskip("voyager")
    index = SemanticIndex(threshold=0.9, ann_threshold=300, max_entries=10_000)
    vectors = {f"k{i}": unit(5000 + i) for i in range(600)}
    for name, vector in list(vectors.items())[:400]:
        index.add("big", vector, name, ttl=600)
    index.add("small", unit(1), "tiny", ttl=600)
    # changes made while the HNSW index is being built must be in it once it is installed
    for name in ("k0", "k1", "k2"):
        index.remove(name)
        del vectors[name]
    for name, vector in list(vectors.items())[397:]:
        index.add("big", vector, name, ttl=600)
    index.wait_for_ann_builds(timeout=60)
    assert index.uses_ann("big") and not index.uses_ann("small")
    found = sum(index.nearest("big", at_cosine(v, 0.97, seed=i)).entry_key == name
                for i, (name, v) in enumerate(vectors.items()))
    assert found >= 0.98 * len(vectors)
    assert all(index.nearest("big", unit(5000 + i)) is None for i in range(3))  # removed stay removed
    for name in list(vectors)[:450]:
        index.remove(name)
    index.nearest("big", unit(5999))
    assert not index.uses_ann("big")  # shrank below half the threshold: exact search again
    index.close()


# --- shared through Redis -----------------------------------------------------------------------


async def _eventually(check, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.02)


@pytest.fixture
async def shared(redis_url, redis_prefix, request):
    prefix = f"{redis_prefix}:{request.node.name}"
    opened: list[RedisSemanticIndex] = []

    async def make(**options) -> RedisSemanticIndex:
        index = RedisSemanticIndex(redis_url, prefix, **{"threshold": 0.9, **options})
        await index.start()
        opened.append(index)
        return index

    make.prefix = prefix
    yield make
    for index in opened:
        await index.close()
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:  # the keys start with a Cluster hash tag, "{<prefix>:semcache}", not with the prefix
        async for name in client.scan_iter(match="{%s:semcache}*" % prefix, count=500):
            await client.delete(name)
    finally:
        await client.aclose()


async def test_two_instances_share_adds_and_removes(shared):
    a, b = await shared(), await shared()
    v = unit(70)
    await a.add("scope", v, "e1", ttl=60, signature=prompt_signature("What is 2 + 2?"))
    assert await _eventually(lambda: b.nearest("scope", v) is not None)
    match = b.nearest("scope", v, prompt_signature("what's 2+2"))
    assert match.entry_key == "e1" and match.similarity == pytest.approx(1.0, abs=1e-5)
    assert b.nearest("scope", v, prompt_signature("What is 2 + 3?")) is None  # the signature travelled too
    assert b.nearest("other-scope", v) is None
    await b.remove("e1")
    assert await _eventually(lambda: a.nearest("scope", v) is None)
    assert "e1" not in a.local and "e1" not in b.local


async def test_shared_entries_expire_everywhere(shared, redis_url):
    import redis.asyncio as aioredis

    a, b = await shared(), await shared()
    v = unit(71)
    await a.add("scope", v, "brief", ttl=0.4)
    assert await _eventually(lambda: b.nearest("scope", v) is not None)
    await asyncio.sleep(0.5)
    assert a.nearest("scope", v) is None and b.nearest("scope", v) is None
    client = aioredis.from_url(redis_url)
    try:
        assert await client.exists("{%s:semcache}:e:brief" % shared.prefix) == 0
    finally:
        await client.aclose()
    late = await shared()
    assert "brief" not in late.local


async def test_an_instance_started_later_loads_existing_entries(shared):
    a = await shared()
    vectors = {f"e{i}": unit(100 + i) for i in range(20)}
    for name, vector in vectors.items():
        await a.add(f"scope-{int(name[1:]) % 2}", vector, name, ttl=60)
    late = await shared()
    assert len(late.local) == 20
    for name, vector in vectors.items():
        assert late.nearest(f"scope-{int(name[1:]) % 2}", vector).entry_key == name
        assert late.nearest(f"scope-{1 - int(name[1:]) % 2}", vector) is None


async def test_a_stalled_instance_that_missed_trimmed_changes_reloads(shared, redis_url):
    """The log keeps 20 changes; 60 happen while this instance's event loop is blocked."""
    follower = await shared(log_maxlen=20)
    writer_code = textwrap.dedent(f"""
        import asyncio, numpy as np
        from sluice.policies.semantic_cache import RedisSemanticIndex
        async def main():
            index = RedisSemanticIndex({redis_url!r}, {shared.prefix!r}, log_maxlen=20)
            for i in range(60):
                v = np.random.default_rng(300 + i).standard_normal({DIM}).astype(np.float32)
                await index.add("scope", v, f"w{{i}}", ttl=60)
            await index.close()
        asyncio.run(main())
    """)
    resyncs = follower.resyncs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", writer_code], check=True, cwd=ROOT, env=env, timeout=60)  # blocks the loop
    assert await _eventually(lambda: len(follower.local) == 60, timeout=5)
    assert follower.resyncs > resyncs
    v = np.random.default_rng(300 + 59).standard_normal(DIM).astype(np.float32)
    assert follower.nearest("scope", v).entry_key == "w59"


async def test_redis_down_leaves_the_local_index_working():
    index = RedisSemanticIndex("redis://127.0.0.1:1/0", "sluice-unreachable", threshold=0.9)
    await index.start()  # logs and retries in the background instead of failing start-up
    v = unit(80)
    await index.add("scope", v, "local-only", ttl=60)  # the Redis write fails quietly
    assert index.nearest("scope", v).entry_key == "local-only"
    await index.remove("local-only")
    assert index.nearest("scope", v) is None
    await index.close()
