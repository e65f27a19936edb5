"""The shipped price table and the cost of a call: matching rules, cached-token billing, overrides."""

from __future__ import annotations

import math

import orjson
import pytest

from sluice.config import PricingConfig
from sluice.observability.pricing import PRICES_FILE, Price, default_table, make_pricer, price_call

REQUIRED = [
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small", "text-embedding-3-large",
    "claude-3-5-haiku", "claude-3-7-sonnet", "claude-sonnet-4", "claude-sonnet-4-5", "claude-opus-4",
    "claude-opus-4-1", "claude-haiku-4-5",
    "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-embedding-001",
    "mistral-large", "mistral-small", "codestral",
]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_table_covers_the_common_models_and_cites_its_source():
    raw = orjson.loads(PRICES_FILE.read_bytes())
    assert "Checked 20" in raw["comment"] and "https://" in raw["comment"]
    table = default_table()
    missing = [m for m in REQUIRED if m not in table.models]
    assert not missing
    for name, price in table.models.items():
        assert price.input >= 0 and price.output >= 0, name
        if price.cached_input is not None:
            assert price.cached_input <= price.input, name


@pytest.mark.parametrize("name,expected", [
    ("gpt-4o", Price(2.5, 10.0, 1.25)),
    ("gpt-4o-2024-08-06", Price(2.5, 10.0, 1.25)),  # dated snapshot → family
    ("gpt-4o-2024-05-13", Price(5.0, 15.0, None)),  # a snapshot with its own price wins
    ("gpt-4o-mini-2024-07-18", Price(0.15, 0.6, 0.075)),  # never the gpt-4o prefix
    ("claude-sonnet-4-5-20250929", Price(3.0, 15.0, 0.3)),
    ("claude-3-5-haiku-latest", Price(0.8, 4.0, 0.08)),
    ("claude-opus-4-1-20250805", Price(15.0, 75.0, 1.5)),
    ("claude-opus-4-0", Price(15.0, 75.0, 1.5)),  # alias
    ("claude-haiku-4-5-20251001", Price(1.0, 5.0, 0.1)),
    ("mistral-large-2411", Price(2.0, 6.0, None)),
    ("gemini-2.0-flash-001", Price(0.1, 0.4, 0.025)),
    ("models/gemini-2.5-pro", Price(1.25, 10.0, 0.125)),  # Gemini's resource name
    ("GPT-5-2025-08-07", Price(1.25, 10.0, 0.125)),
    ("o3-mini-2025-01-31", Price(1.1, 4.4, 0.55)),
])
def test_lookup_rules(name, expected):
    assert default_table().lookup(name) == expected


@pytest.mark.parametrize("name", ["llama3.1:8b", "gpt-4o-mini-tts-x", "claude", "my-finetune-2024"])
def test_unknown_models_are_not_guessed(name):
    assert default_table().lookup(name) is None
    assert price_call(name, 1000, 1000, 0) == (0.0, True)


def test_cached_input_is_billed_at_the_cached_rate():
    # 1000 input of which 400 cached, 500 output on gpt-4o: 600×2.5 + 400×1.25 + 500×10 per million.
    cost, unknown = price_call("gpt-4o-2024-08-06", 1000, 500, 400)
    assert not unknown and close(cost, 0.007)
    # Anthropic: 10k input (8k read from cache), 1k output on Sonnet 4.5.
    cost, _ = price_call("claude-sonnet-4-5", 10_000, 1_000, 8_000)
    assert close(cost, (2_000 * 3 + 8_000 * 0.3 + 1_000 * 15) / 1e6)


def test_no_cached_rate_means_input_rate_and_cached_is_clamped():
    cost, _ = price_call("mistral-large-latest", 1000, 0, 500)
    assert close(cost, 1000 * 2.0 / 1e6)
    cost, _ = price_call("gpt-4o-mini", 100, 0, 10_000)  # more cached than input: a bad report
    assert close(cost, 100 * 0.075 / 1e6)


def test_embeddings_and_calls_without_upstream_cost():
    cost, unknown = price_call("text-embedding-3-small", 1_000_000, 0, 0)
    assert (round(cost, 9), unknown) == (0.02, False)
    assert price_call(None, 500, 20, 0) == (0.0, False)  # cache hit / never reached an upstream
    assert price_call("unknown-model", 0, 0, 0) == (0.0, False)  # blocked before any tokens


def test_override_replaces_the_table():
    override = PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5)
    cost, unknown = price_call("gpt-4o", 1000, 1000, 200, override)
    assert not unknown and close(cost, (800 * 1.0 + 200 * 0.5 + 1000 * 2.0) / 1e6)
    cost, unknown = price_call("self-hosted-llama", 1000, 1000, 200,
                               PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0))
    assert not unknown and close(cost, (1000 * 1.0 + 1000 * 2.0) / 1e6)


def test_make_pricer_uses_the_deployments_override():
    class Event:
        def __init__(self, deployment, model):
            self.deployment, self.upstream_model = deployment, model
            self.input_tokens, self.output_tokens, self.cached_tokens = 2_000_000, 1_000_000, 0

    pricer = make_pricer({"local/llama": PricingConfig(input_per_mtok=0.1, output_per_mtok=0.2)})
    cost, unknown = pricer(Event("local/llama", "llama3"))
    assert not unknown and close(cost, 0.4)
    cost, unknown = pricer(Event("openai/gpt-4o-mini", "gpt-4o-mini"))
    assert not unknown and close(cost, 2 * 0.15 + 0.6)
    assert pricer(Event("other/llama", "llama3")) == (0.0, True)
