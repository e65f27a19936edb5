"""Unit tests of semantic routing with a scripted embedder, and of the local ONNX embedder."""

from __future__ import annotations

import asyncio
import math
import socket
import statistics
import time

import numpy as np
import pytest

from sluice.routing.local_embedder import LocalOnnxEmbedder, default_model_path
from sluice.routing.semantic import (
    CallableEmbedder,
    RouteDecision,
    SemanticRoute,
    SemanticRouter,
    routing_text,
)
from sluice.schema import ChatRequest, EmbeddingResponse, Message, TextPart

UNKNOWN = [0.0, 0.0, 1.0, 0.0]
VECTORS = {
    "fix my python": [1.0, 0.0, 0.0, 0.0],
    "regex fails": [1.0, 0.0, 0.0, 0.0],
    "other code thing": [0.0, 0.0, 0.0, 1.0],
    "solve for x": [0.0, 1.0, 0.0, 0.0],
    "q-code": [0.8, 0.6, 0.0, 0.0],
    "q-math": [0.6, 0.8, 0.0, 0.0],
    "q-far": [0.1, 0.1, 0.99, 0.0],
}


class ScriptedEmbedder:
    """Vectors from a table; records every call so tests can count model invocations."""

    def __init__(self, table: dict[str, list[float]] | None = None, scale: float = 1.0) -> None:
        self.table = VECTORS if table is None else table
        self.scale = scale
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[x * self.scale for x in self.table.get(t, UNKNOWN)] for t in texts]


def _routes(code_examples=("fix my python", "regex fails"), math_threshold=None) -> list[SemanticRoute]:
    return [
        SemanticRoute("code", "coder-model", list(code_examples)),
        SemanticRoute("math", "math-model", ["solve for x"], threshold=math_threshold),
    ]


async def test_nearest_route_wins():
    router = SemanticRouter(_routes(), ScriptedEmbedder(), default_alias="general", threshold=0.5)
    assert await router.route("q-code") == RouteDecision("coder-model", "code", pytest.approx(0.8), "matched")
    decision = await router.route("q-math")
    assert (decision.alias, decision.route_name, decision.reason) == ("math-model", "math", "matched")
    assert decision.score == pytest.approx(0.8)


async def test_below_threshold_goes_to_default_with_its_score():
    router = SemanticRouter(_routes(), ScriptedEmbedder(), default_alias="general", threshold=0.5)
    decision = await router.route("q-far")
    assert decision.alias == "general" and decision.route_name is None
    assert decision.reason == "below_threshold"
    assert decision.score == pytest.approx(0.1 / math.sqrt(0.01 + 0.01 + 0.99**2), abs=1e-6)


async def test_route_threshold_overrides_router_threshold():
    router = SemanticRouter(_routes(math_threshold=0.9), ScriptedEmbedder(), "general", threshold=0.5)
    assert (await router.route("q-code")).alias == "coder-model"  # 0.8 ≥ 0.5
    # nearest is math at 0.8 < 0.9: default, not the runner-up code route
    decision = await router.route("q-math")
    assert (decision.alias, decision.reason) == ("general", "below_threshold")


async def test_no_default_alias_means_keep_requested_model():
    router = SemanticRouter(_routes(), ScriptedEmbedder(), default_alias=None, threshold=0.5)
    assert (await router.route("q-far")).alias is None


@pytest.mark.parametrize("text", ["", "   \n\t"])
async def test_empty_text_goes_to_default_without_embedding(text):
    embedder = ScriptedEmbedder()
    router = SemanticRouter(_routes(), embedder, default_alias="general", threshold=0.5)
    assert await router.route(text) == RouteDecision("general", None, 0.0, "empty")
    assert embedder.calls == []


async def test_centroid_and_max_scoring_differ_as_designed():
    examples = ("fix my python", "other code thing")  # code centroid lies between two axes
    centroid = SemanticRouter(_routes(examples), ScriptedEmbedder(), "general", 0.3)
    nearest = SemanticRouter(_routes(examples), ScriptedEmbedder(), "general", 0.3, scoring="max")
    c, m = await centroid.route("q-code"), await nearest.route("q-code")
    assert (c.route_name, c.score) == ("math", pytest.approx(0.6))  # code centroid: 0.8/√2 ≈ 0.566
    assert (m.route_name, m.score) == ("code", pytest.approx(0.8))


async def test_unnormalised_vectors_are_scored_as_cosines():
    router = SemanticRouter(_routes(), ScriptedEmbedder(scale=7.5), "general", threshold=0.5)
    assert (await router.route("q-code")).score == pytest.approx(0.8)


async def test_examples_embedded_once_in_one_batch_even_under_concurrency():
    embedder = ScriptedEmbedder()
    router = SemanticRouter(_routes(), embedder, "general", threshold=0.5)
    await asyncio.gather(*(router.route(t) for t in ["q-code", "q-math", "q-far"]))
    await router.start()
    example_calls = [c for c in embedder.calls if len(c) > 1]
    assert example_calls == [["fix my python", "regex fails", "solve for x"]]


async def test_identical_texts_are_embedded_once():
    embedder = ScriptedEmbedder()
    router = SemanticRouter(_routes(), embedder, "general", threshold=0.5)
    first = await router.route("q-code")
    second = await router.route("  q-code ")  # surrounding whitespace is not part of the key
    assert first == second
    assert embedder.calls.count(["q-code"]) == 1
    assert (router.cache.hits, router.cache.misses) == (1, 1)


async def test_cache_is_a_bounded_lru():
    embedder = ScriptedEmbedder()
    router = SemanticRouter(_routes(), embedder, "general", threshold=0.5, cache_size=2)
    for text in ["q-code", "q-math", "q-code", "q-far"]:  # q-far evicts q-math, the least recent
        await router.route(text)
    assert len(router.cache) == 2
    await router.route("q-code")
    await router.route("q-math")
    assert embedder.calls.count(["q-code"]) == 1
    assert embedder.calls.count(["q-math"]) == 2


async def test_long_text_is_cut_before_embedding():
    embedder = ScriptedEmbedder()
    router = SemanticRouter(_routes(), embedder, "general", threshold=0.5, max_chars=10)
    await router.route("x" * 50)
    assert embedder.calls[-1] == ["x" * 10]


async def test_embedder_failure_fails_open_to_default():
    class Broken:
        def __init__(self) -> None:
            self.ready = False

        async def embed(self, texts):
            if self.ready:
                raise ConnectionError("embedding deployment down")
            self.ready = True
            return [VECTORS[t] for t in texts]

    router = SemanticRouter(_routes(), Broken(), "general", threshold=0.5)
    assert await router.route("q-code") == RouteDecision("general", None, 0.0, "embedder_error")
    assert len(router.cache) == 0


async def test_start_rejects_a_wrong_number_of_vectors():
    class Short:
        async def embed(self, texts):
            return [[1.0, 0.0]]

    router = SemanticRouter(_routes(), Short(), "general", threshold=0.5)
    with pytest.raises(ValueError, match="1 vectors for 3 examples"):
        await router.start()


@pytest.mark.parametrize(
    ("routes", "threshold", "message"),
    [
        ([], 0.5, "at least one route"),
        ([SemanticRoute("a", "x", ["hi"]), SemanticRoute("a", "y", ["yo"])], 0.5, "defined twice"),
        ([SemanticRoute("a", "x", ["  "])], 0.5, "no examples"),
        ([SemanticRoute("a", "x", ["hi"])], 1.5, "in \\[-1, 1\\]"),
        ([SemanticRoute("a", "x", ["hi"], threshold=float("nan"))], 0.5, "in \\[-1, 1\\]"),
    ],
)
def test_invalid_configuration_is_rejected(routes, threshold, message):
    with pytest.raises(ValueError, match=message):
        SemanticRouter(routes, ScriptedEmbedder(), "general", threshold)


# -- CallableEmbedder ---------------------------------------------------------------------------


async def test_callable_embedder_wraps_sync_and_async_functions():
    def sync_fn(texts):
        return [VECTORS[t] for t in texts]

    async def async_fn(texts):
        await asyncio.sleep(0)
        return [VECTORS[t] for t in texts]

    for fn in (sync_fn, async_fn):
        router = SemanticRouter(_routes(), CallableEmbedder(fn), "general", threshold=0.5)
        assert (await router.route("q-code")).route_name == "code"


async def test_callable_embedder_accepts_an_embedding_response():
    seen: list[list[str]] = []

    async def gateway_embed(texts):
        seen.append(texts)
        return EmbeddingResponse(model="text-embedding-3-small", vectors=[VECTORS[t] for t in texts])

    router = SemanticRouter(_routes(), CallableEmbedder(gateway_embed), "general", threshold=0.5)
    assert (await router.route("q-math")).alias == "math-model"
    assert seen == [["fix my python", "regex fails", "solve for x"], ["q-math"]]


async def test_callable_embedder_rejects_a_wrong_count():
    embedder = CallableEmbedder(lambda texts: [[1.0, 0.0]] * (len(texts) + 1))
    with pytest.raises(ValueError, match="2 vectors for 1 texts"):
        await embedder.embed(["a"])


# -- routing_text -------------------------------------------------------------------------------


def _request(*messages: tuple[str, str]) -> ChatRequest:
    return ChatRequest(
        model="auto",
        messages=[Message(role=role, content=[TextPart(text=text)]) for role, text in messages],
    )


def test_routing_text_is_the_last_user_message():
    req = _request(("system", "You are a helpful bot."), ("user", "first"), ("assistant", "ok"), ("user", "last"))
    assert routing_text(req) == "last"
    assert routing_text(req, include_system=True) == "You are a helpful bot.\n\nlast"
    assert routing_text(_request(("system", "only system"))) == ""
    assert routing_text(_request(("system", "only system")), include_system=True) == "only system"


# -- the local ONNX embedder --------------------------------------------------------------------


@pytest.fixture(scope="module")
def local():
    emb = LocalOnnxEmbedder()
    yield emb
    emb.close()


def test_local_model_ships_in_its_package():
    path = default_model_path()
    assert path.name == "paraphrase-MiniLM-L3-v2.onnx"
    assert path.stat().st_size > 60_000_000


def test_local_tokenizer_matches_bert_uncased(local):
    # [CLS] hello world [SEP], lower-cased, WordPiece ids of BERT's uncased vocabulary
    assert local._tokenizer.encode("Hello World").ids == [101, 7592, 2088, 102]
    assert len(local._tokenizer.encode("x " * 500).ids) == 128  # truncated to the model's window


async def test_local_embedder_runs_offline(local, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the local embedder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = LocalOnnxEmbedder()  # loading, too, must not touch the network
    try:
        vecs = np.asarray(await fresh.embed(["fix this python function", "write a poem about rain", "hi"]))
    finally:
        fresh.close()
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert await fresh.embed([]) == []


def test_local_embedder_ranks_meaning(local):
    vecs = local.embed_sync(
        ["my python script throws a KeyError", "debug this python exception", "a poem about the sea"]
    )
    related, unrelated = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert related > 0.35 and abs(unrelated) < 0.1  # measured 0.41 and -0.01
    # batching pads; padding must not change a text's vector
    alone = local.embed_sync(["a poem about the sea"])[0]
    assert np.allclose(alone, vecs[2], atol=1e-5)


def test_local_embedder_is_fast_on_a_short_prompt(local):
    for _ in range(5):
        local.embed_sync(["warm up"])
    samples = []
    for _ in range(40):
        t0 = time.perf_counter()
        local.embed_sync(["why does my regex not match newlines"])
        samples.append(time.perf_counter() - t0)
    # ~1.5 ms measured on the 2-core CI machine; the bound leaves room for a busy machine
    assert statistics.median(samples) < 0.015
