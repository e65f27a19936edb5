"""What a call cost: the price table shipped in prices.json, or a deployment's own prices.

Matching an upstream model name to the table, first hit wins:

1. normalise: trim, lower-case, keep what follows the last "/" ("models/gemini-2.5-pro",
   "openai/gpt-4o" → the bare id);
2. the exact name, then the table's ``aliases``;
3. drop one trailing snapshot suffix and try 2 again, at most twice. A snapshot suffix is
   ``-latest``, a date (``-2024-08-06``, ``-20250929``) or a 3-4 digit version (``-2411``, ``-001``).
   So ``gpt-4o-2024-08-06`` → ``gpt-4o``, ``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``,
   ``mistral-large-2411`` → ``mistral-large``, ``gemini-2.0-flash-001`` → ``gemini-2.0-flash``.
   A snapshot priced differently from its family gets its own exact entry (``gpt-4o-2024-05-13``).

Never a prefix match: ``gpt-4o-mini`` must not be priced as ``gpt-4o``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Protocol

import orjson

PRICES_FILE = Path(__file__).resolve().parent / "prices.json"
_SNAPSHOT = re.compile(r"-(?:latest|\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4})$")
_MTOK = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cached_input`` None: cache hits cost the input rate."""

    input: float
    output: float
    cached_input: float | None = None


class PriceOverride(Protocol):
    """The shape of ``sluice.config.PricingConfig`` (observability may not import config)."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None


class PricedCall(Protocol):
    """The fields of a usage event that pricing reads."""

    deployment: str | None
    upstream_model: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class PriceTable:
    models: Mapping[str, Price]
    aliases: Mapping[str, str]

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> "PriceTable":
        raw = orjson.loads(path.read_bytes())
        models = {name.lower(): Price(**spec) for name, spec in raw["models"].items()}
        aliases = {alias.lower(): target.lower() for alias, target in raw.get("aliases", {}).items()}
        unknown_targets = set(aliases.values()) - set(models)
        if unknown_targets:
            raise ValueError(f"{path}: aliases point at unknown models {sorted(unknown_targets)}")
        return cls(models, aliases)

    def lookup(self, upstream_model: str) -> Price | None:
        name = upstream_model.strip().lower().rsplit("/", 1)[-1]
        for _ in range(3):
            price = self.models.get(name) or self.models.get(self.aliases.get(name, ""))
            if price is not None:
                return price
            shorter = _SNAPSHOT.sub("", name)
            if shorter == name:
                return None
            name = shorter
        return None


@lru_cache(maxsize=1)
def default_table() -> PriceTable:
    return PriceTable.load()


@lru_cache(maxsize=4096)
def _table_price(upstream_model: str) -> Price | None:
    return default_table().lookup(upstream_model)


def _cost(price: Price, usage_in: int, usage_out: int, cached: int) -> float:
    # Canonical input_tokens include the cached ones: bill those at the cached rate, the rest in full.
    cached = max(0, min(cached, usage_in))
    cached_rate = price.input if price.cached_input is None else price.cached_input
    return ((usage_in - cached) * price.input + cached * cached_rate + usage_out * price.output) / _MTOK


def price_call(upstream_model: str | None, usage_in: int, usage_out: int, cached: int = 0,
               override: PriceOverride | None = None) -> tuple[float, bool]:
    """(cost in USD, unknown). Unknown models cost 0.0 and are flagged.

    A call that used no tokens (blocked, failed before the upstream answered) or never reached
    an upstream model (``upstream_model`` None, e.g. a cache hit) costs nothing and is not flagged.
    """
    if override is not None:
        price = Price(override.input_per_mtok, override.output_per_mtok, override.cached_input_per_mtok)
        return _cost(price, usage_in, usage_out, cached), False
    if not upstream_model or (usage_in <= 0 and usage_out <= 0):
        return 0.0, False
    price = _table_price(upstream_model)
    if price is None:
        return 0.0, True
    return _cost(price, usage_in, usage_out, cached), False


def make_pricer(overrides: Mapping[str, PriceOverride] | None = None) -> Callable[[PricedCall], tuple[float, bool]]:
    """A pricing function for the Ledger: deployment name → its override, else the shipped table."""
    overrides = dict(overrides or {})

    def price(event: PricedCall) -> tuple[float, bool]:
        override = overrides.get(event.deployment) if event.deployment else None
        return price_call(event.upstream_model, event.input_tokens, event.output_tokens,
                          event.cached_tokens, override)

    return price


__all__ = ["Price", "PriceOverride", "PriceTable", "PRICES_FILE", "default_table", "make_pricer", "price_call"]
